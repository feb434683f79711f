"""Writing what the consumer accepted: one transaction per group of messages.

    births, statuses, batches, dead letters --write()--> one commit --> then the MQTT acks

Batches are deduplicated by `(gateway, boot, seq)` (a repeat writes nothing) and samples
by `(series, ts)` (a sample already stored is dropped), so a message delivered twice, or
redelivered after a crash before its ack, changes nothing. Samples are COPYed straight
into `samples`; when one is already stored, the group goes through a session-temporary
table and one INSERT .. ON CONFLICT DO NOTHING instead; the rows that were really new
drive the derived data (state intervals, counter deltas) and, on plain PostgreSQL, the
hourly rollups.

Contract v2 batches are the ledger (migration 0007): their row in `batches` keeps prev,
digest, signature and the number of samples signed, and every one of their samples is
either in `samples` (with batch_id, batch_pos) or in `samples_aside` with the reason it is
not (1: its (series, ts) was stored already, by another batch or earlier in this one;
2: set aside for its time), so the signed digest can be recomputed from stored rows. A
v2 batch repeated with another digest than the stored one is dead-lettered.

A v2 status that declares batches its outbox dropped keeps its signed payload
(`gateway_declarations`) and the ranges (`declared_gaps`) when it declares something new.

The result lists, per gateway, the batches the database now holds and the ones
dead-lettered for their content, for the consumer's acks (sent after the commit).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from edge_agent.contract import topics
from edge_agent.contract.topics import Origin
from ingest_server.derive.intervals import (
    COUNTER_DELTAS_SQL,
    COUNTER_ROLE_NAMES,
    device_series,
    refresh_intervals,
)
from ingest_server.ingest.check import DataItem, DeadLetter, Group
from ingest_server.ingest.copybin import COLUMNS, SIGNATURE, TRAILER, Rollup, encode, encode_v2
from ingest_server.ingest.gateway_keys import Gateway, lookup_gateway
from ingest_server.ingest.payload import Birth, Status
from ingest_server.ingest.payload_v2 import BatchV2, StatusV2

log = logging.getLogger(__name__)

DEAD_LETTER_PAYLOAD_MAX = 64 * 1024
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SESSION_SQL = (
    """
    CREATE TEMP TABLE IF NOT EXISTS incoming (LIKE samples INCLUDING DEFAULTS)
        ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS fresh (
        series_id integer, ts timestamptz, value double precision, quality smallint,
        batch_id bigint, batch_pos integer)
        ON COMMIT DELETE ROWS
    """,
    """
    CREATE TEMP TABLE IF NOT EXISTS touched_counters (
        series_id integer PRIMARY KEY, a timestamptz, b timestamptz) ON COMMIT DELETE ROWS
    """,
    *COUNTER_DELTAS_SQL[:1],
)

_MS = "'epoch'::timestamptz + {} * interval '1 millisecond'"
# the fallback when a sample of the group is already stored: only the new rows count
_INSERT_FRESH = f"""
    WITH new AS (
        INSERT INTO samples ({COLUMNS}) SELECT {COLUMNS} FROM incoming
        ON CONFLICT DO NOTHING
        RETURNING series_id, ts, value, quality, batch_id, batch_pos)
    INSERT INTO fresh SELECT * FROM new
"""
# the samples of v2 batches that did not go in (reason 1): kept beside, with their place
_ASIDE_REPEATS = """
    INSERT INTO samples_aside
        (batch_id, batch_pos, series_id, ts, value, text, quality, status, reason)
    SELECT i.batch_id, i.batch_pos, i.series_id, i.ts, i.value, i.text, i.quality, i.status, 1
    FROM incoming i
    WHERE i.batch_id IS NOT NULL AND NOT EXISTS (
        SELECT FROM fresh f WHERE f.batch_id = i.batch_id AND f.batch_pos = i.batch_pos)
"""
_QUALITY = {None: 0, "uncertain": 1, "bad": 2}

_ROLLUP_FROM_FRESH = """
    SELECT series_id, date_trunc('hour', ts, 'UTC'), count(*), count(*) FILTER (WHERE quality = 0),
           sum(value), min(value), max(value),
           min(ts), (array_agg(value ORDER BY ts))[1],
           max(ts), (array_agg(value ORDER BY ts DESC))[1]
    FROM fresh GROUP BY 1, 2
"""
_MS_COL = "'epoch'::timestamptz + {} * interval '1 millisecond'"
_ROLLUP_FROM_ARRAYS = f"""
    SELECT sid, {_MS_COL.format("hour")}, n, n_good, v_sum, v_min, v_max,
           {_MS_COL.format("first_ts")}, first_v, {_MS_COL.format("last_ts")}, last_v
    FROM unnest(%b::int[], %b::bigint[], %b::bigint[], %b::bigint[], %b::float8[], %b::float8[],
                %b::float8[], %b::bigint[], %b::float8[], %b::bigint[], %b::float8[])
         AS u(sid, hour, n, n_good, v_sum, v_min, v_max, first_ts, first_v, last_ts, last_v)
"""
_ROLLUP_MERGE = """
    ON CONFLICT (series_id, bucket) DO UPDATE SET
        n = h.n + excluded.n,
        n_good = h.n_good + excluded.n_good,
        v_sum = CASE WHEN h.v_sum IS NULL THEN excluded.v_sum
                     WHEN excluded.v_sum IS NULL THEN h.v_sum
                     ELSE h.v_sum + excluded.v_sum END,
        v_min = least(h.v_min, excluded.v_min),
        v_max = greatest(h.v_max, excluded.v_max),
        first_value = CASE WHEN excluded.first_ts < h.first_ts
                           THEN excluded.first_value ELSE h.first_value END,
        first_ts = least(h.first_ts, excluded.first_ts),
        last_value = CASE WHEN excluded.last_ts > h.last_ts
                          THEN excluded.last_value ELSE h.last_value END,
        last_ts = greatest(h.last_ts, excluded.last_ts)
"""
_ROLLUP_INSERT = "INSERT INTO samples_hourly AS h "


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _hex(digest: bytes | None) -> str:
    return "none: a v1 batch" if digest is None else digest.hex()[:16] + "..."


def _prefix(origin: Origin) -> str:
    return topics.prefix(origin.enterprise, origin.site, origin.gateway)


@dataclass
class WriteResult:
    batches_new: int = 0
    batches_repeated: int = 0
    batches_v2: int = 0  # of the new ones
    samples_new: int = 0
    samples_repeated: int = 0
    dead_letters: int = 0
    intervals: int = 0
    # the time span of the samples written (for refreshing continuous aggregates)
    first: datetime | None = None
    last: datetime | None = None
    # for the acks: batches the database holds (new or repeated), and batches
    # dead-lettered for their content, with the reason
    stored: list[tuple[Origin, int, int]] = field(default_factory=list)
    dead: list[tuple[Origin, int, int, str]] = field(default_factory=list)

    def merge(self, other: WriteResult) -> None:
        """Add another transaction's result to this one."""
        self.batches_new += other.batches_new
        self.batches_repeated += other.batches_repeated
        self.batches_v2 += other.batches_v2
        self.samples_new += other.samples_new
        self.samples_repeated += other.samples_repeated
        self.dead_letters += other.dead_letters
        self.intervals += other.intervals
        self.stored += other.stored
        self.dead += other.dead
        if other.first is not None and other.last is not None:
            self.first = min(other.first, self.first or other.first)
            self.last = max(other.last, self.last or other.last)


class Store:
    """The server's writes and the lookups they need. One connection per Store."""

    def __init__(self, conn: psycopg.Connection, mode: str) -> None:
        self.conn = conn
        self.mode = mode
        self._series: dict[int, dict[tuple[str, str], int]] = {}
        self._gateways: dict[tuple[str, str, str], Gateway] = {}
        for statement in _SESSION_SQL:
            conn.execute(statement)
        conn.commit()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- lookups --------------------------------------------------------------------

    def gateway(self, origin: Origin) -> Gateway | None:
        key = (origin.enterprise, origin.site, origin.gateway)
        found = self._gateways.get(key)
        if found is None:
            found = lookup_gateway(self.conn, origin)
            if found is not None:
                self._gateways[key] = found
        return found

    def _resolve_series(self, gid: int, keys: Iterable[tuple[str, str]]) -> None:
        """Fill the series cache of a gateway for every (device, tag) in `keys`."""
        cache = self._series.setdefault(gid, {})
        missing = sorted(set(keys) - cache.keys())
        if not missing:
            return
        devices = [m[0] for m in missing]
        tags = [m[1] for m in missing]
        # a tag the birth did not announce gets the role `generic` until a birth says
        # otherwise (devices/tags from a birth the other server has not committed yet)
        self.conn.execute(
            "INSERT INTO series (gid, device, tag, role) "
            "SELECT %s, d, t, CASE WHEN t = '_status' THEN 'device_status' ELSE 'generic' END "
            "FROM unnest(%s::text[], %s::text[]) AS u(d, t) ON CONFLICT DO NOTHING",
            (gid, devices, tags),
        )
        rows = self.conn.execute(
            "SELECT device, tag, series_id FROM series WHERE gid = %s "
            "AND (device, tag) IN (SELECT * FROM unnest(%s::text[], %s::text[]))",
            (gid, devices, tags),
        ).fetchall()
        for device, tag, sid in rows:
            cache[device, tag] = sid

    # --- the transaction -------------------------------------------------------------

    def write(self, group: Group) -> WriteResult:
        """Write a group in one transaction and commit; on error roll back and raise."""
        try:
            result = self._write(group)
            self.conn.commit()
        except BaseException:
            self._series.clear()  # ids created in the rolled-back transaction are gone
            with contextlib.suppress(psycopg.Error):
                self.conn.rollback()
            raise
        return result

    def _write(self, group: Group) -> WriteResult:
        result = WriteResult()
        now = datetime.now(UTC)
        recompute: dict[int, tuple[datetime, datetime]] = {}
        for origin, birth in group.births:
            recompute.update(self._birth(origin, birth, now))
        for origin, status in group.statuses:
            self._status(origin, status, now, group.raw.get(id(status), ("", b""))[1])

        new_batches: list[tuple[DataItem, int]] = []  # with batches.id
        dead = list(group.dead)
        if group.data:
            new_batches = self._batches(group, now, result, dead)

        spans: dict[int, tuple[datetime, datetime]] = {}
        if new_batches:
            rollup = Rollup()
            buf = bytearray(SIGNATURE)
            n = 0
            for item, batch_id in new_batches:
                gid = self._gid(item.origin)
                if isinstance(item.batch, BatchV2):
                    buf += self._encode_v2(gid, item.batch, item.good_pos, batch_id, rollup)
                else:
                    buf += encode(
                        item.good,
                        self._series.setdefault(gid, {}),
                        rollup,
                        functools.partial(self._resolve_series, gid),
                    )
                n += item.n_good
                if item.aside:
                    self._set_aside(gid, batch_id, item)
            buf += TRAILER
            result.samples_new, spans = self._copy_samples(buf, n, rollup)
            result.samples_repeated = n - result.samples_new
            if spans:
                result.first = min(a for a, _ in spans.values())
                result.last = max(b for _, b in spans.values())
        for sid, (a, b) in recompute.items():
            old = spans.get(sid)
            spans[sid] = (min(a, old[0]), max(b, old[1])) if old else (a, b)
        if spans:
            result.intervals = self._derive(spans)
        dead += [i.set_aside for i, _ in new_batches if i.set_aside is not None]
        if dead:
            self._dead_letters(dead)
            result.dead_letters = len(dead)
            result.dead += [(*d.ack, d.reason) for d in dead if d.ack is not None]
        return result

    def _batches(
        self, group: Group, now: datetime, result: WriteResult, dead: list[DeadLetter]
    ) -> list[tuple[DataItem, int]]:
        """Insert the group's batches; returns the new ones with their id. A repeat (of a
        stored batch, or twice in the group) is stored already; a v2 repeat whose digest
        differs from the stored one is dead-lettered instead (added to `dead`)."""
        data = group.data
        keys = [(self._gid(item.origin), item.batch.boot, item.batch.seq) for item in data]
        # a batch delivered twice in this very group is written once
        unique: dict[tuple[int, int, int], DataItem] = {}
        for k, item in zip(keys, data, strict=True):
            unique.setdefault(k, item)
        items = list(unique.values())
        v2 = [i.batch if isinstance(i.batch, BatchV2) else None for i in items]
        inserted = self.conn.execute(
            "INSERT INTO batches (gid, boot, seq, sent, received_at, samples, rejected, "
            "contract, prev, digest, signature, n_total) "
            f"SELECT g, b, s, {_MS.format('sent')}, %s, n, r, c, p, d, sig, nt "
            "FROM unnest(%s::int[], %s::int[], %s::bigint[], %s::bigint[], %s::int[], "
            "%s::int[], %s::smallint[], %s::bytea[], %s::bytea[], %s::bytea[], %s::int[]) "
            "AS u(g, b, s, sent, n, r, c, p, d, sig, nt) ON CONFLICT DO NOTHING "
            "RETURNING gid, boot, seq, id",
            (
                now,
                [k[0] for k in unique],
                [k[1] for k in unique],
                [k[2] for k in unique],
                [i.batch.sent for i in items],
                [i.n_good for i in items],
                [i.rejected for i in items],
                [1 if b is None else 2 for b in v2],
                [None if b is None else b.prev for b in v2],
                [None if b is None else b.digest for b in v2],
                [None if b is None else b.signature for b in v2],
                [None if b is None else len(b) for b in v2],
            ),
        ).fetchall()
        ids = {(g, b, s): i for g, b, s, i in inserted}
        new = [(item, ids[k]) for k, item in unique.items() if k in ids]
        repeats = [
            (k, item) for k, item in zip(keys, data, strict=True)
            if k not in ids or unique[k] is not item
        ]  # fmt: skip
        stored_digest: dict[tuple[int, int, int], bytes | None] = {}
        if any(isinstance(item.batch, BatchV2) for _, item in repeats):
            rows = self.conn.execute(
                "SELECT gid, boot, seq, digest FROM batches WHERE (gid, boot, seq) IN "
                "(SELECT * FROM unnest(%s::int[], %s::int[], %s::bigint[]))",
                ([k[0] for k, _ in repeats], [k[1] for k, _ in repeats],
                 [k[2] for k, _ in repeats]),
            ).fetchall()  # fmt: skip
            stored_digest = {(g, b, s): None if d is None else bytes(d) for g, b, s, d in rows}
        for item, _ in new:
            result.stored.append((item.origin, item.batch.boot, item.batch.seq))
        for k, item in repeats:
            b = item.batch
            if isinstance(b, BatchV2) and stored_digest.get(k) != b.digest:
                topic, payload = group.raw.get(
                    id(item.batch), (f"{_prefix(item.origin)}/data", b"")
                )
                reason = (
                    f"batch {b.boot}/{b.seq} was stored with another digest "
                    f"({_hex(stored_digest.get(k))}, this one {_hex(b.digest)}): the gateway "
                    "signed two different batches under one key (boot, seq); the stored "
                    "one is kept"
                )
                acked = (item.origin, b.boot, b.seq)
                dead.append(DeadLetter(topic, payload, reason, k[0], acked, code="digest_conflict"))
                continue
            result.batches_repeated += 1
            result.stored.append((item.origin, b.boot, b.seq))
        result.batches_new = len(new)
        result.batches_v2 = sum(1 for item, _ in new if isinstance(item.batch, BatchV2))
        return new

    def _encode_v2(
        self, gid: int, batch: BatchV2, positions: list[int] | None, batch_id: int, rollup: Rollup
    ) -> bytearray:
        """COPY rows of a v2 batch from its columns: one series lookup per series."""
        cols = batch.columns
        cache = self._series.setdefault(gid, {})
        try:
            sids = list(map(cache.__getitem__, cols.series))
        except KeyError:
            self._resolve_series(gid, cols.series)
            sids = list(map(cache.__getitem__, cols.series))
        return encode_v2(cols, sids, rollup, batch_id, positions)

    def _set_aside(self, gid: int, batch_id: int, item: DataItem) -> None:
        """A v2 batch's samples set aside for their time (reason 2), in `samples_aside`."""
        samples = [x for _, x in item.aside]
        self._resolve_series(gid, [(x.d, x.t) for x in samples])
        series = self._series[gid]
        self.conn.execute(
            "INSERT INTO samples_aside (batch_id, batch_pos, series_id, ts, value, text, "
            f"quality, status, reason) SELECT %s, pos, sid, {_MS.format('ts')}, v, t, q, st, 2 "
            "FROM unnest(%s::int[], %s::int[], %s::bigint[], %s::float8[], %s::text[], "
            "%s::smallint[], %s::text[]) AS u(pos, sid, ts, v, t, q, st)",
            (
                batch_id,
                [p for p, _ in item.aside],
                [series[x.d, x.t] for x in samples],
                [x.ts for x in samples],
                [None if x.v is None or isinstance(x.v, str) else float(x.v) for x in samples],
                [x.v if isinstance(x.v, str) else None for x in samples],
                [_QUALITY[x.q] for x in samples],
                [x.s for x in samples],
            ),
        )

    def _copy_samples(
        self, buf: bytearray, n: int, rollup: Rollup
    ) -> tuple[int, dict[int, tuple[datetime, datetime]]]:
        """COPY straight into `samples`; returns (rows stored, span per series).

        Samples of a new batch are new unless a gateway sent the same sample in two
        batches, which contract v1 does not do: the fast path assumes it, and if the
        unique key says otherwise, the group goes through a staging table and only the
        rows that were new are rolled up and derived from.
        """
        conn = self.conn
        conn.execute("SAVEPOINT copy_samples")
        try:
            with conn.cursor().copy(f"COPY samples ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(buf)
        except psycopg.errors.UniqueViolation:
            conn.execute("ROLLBACK TO SAVEPOINT copy_samples")
            with conn.cursor().copy(f"COPY incoming ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(buf)
            stored = conn.execute(_INSERT_FRESH).rowcount
            conn.execute(_ASIDE_REPEATS)
            if self.mode == "plain":
                conn.execute(_ROLLUP_INSERT + _ROLLUP_FROM_FRESH + _ROLLUP_MERGE)
            rows = conn.execute(
                "SELECT series_id, min(ts), max(ts) FROM fresh GROUP BY series_id"
            ).fetchall()
            return stored, {sid: (a, b) for sid, a, b in rows}
        conn.execute("RELEASE SAVEPOINT copy_samples")
        if self.mode == "plain" and rollup.buckets:  # none when every sample was set aside
            columns = [list(c) for c in zip(*rollup.rows(), strict=True)]
            conn.execute(_ROLLUP_INSERT + _ROLLUP_FROM_ARRAYS + _ROLLUP_MERGE, columns)
        spans = {sid: (_from_ms(a), _from_ms(b)) for sid, (a, b) in rollup.spans().items()}
        return n, spans

    def _gid(self, origin: Origin) -> int:
        gw = self.gateway(origin)
        if gw is None:  # the consumer checked it; a revocation in between is possible
            raise LookupError(f"gateway {origin} is no longer registered")
        return gw.gid

    def _derive(self, spans: dict[int, tuple[datetime, datetime]]) -> int:
        """Counter deltas and state intervals for the series that got new samples."""
        conn = self.conn
        roles = conn.execute(
            "SELECT series_id, gid, device, role FROM series "
            "WHERE series_id = ANY(%s) AND role = ANY(%s)",
            (list(spans), [*COUNTER_ROLE_NAMES, "machine_state", "device_status"]),
        ).fetchall()
        counters = [(sid, *spans[sid]) for sid, _, _, role in roles if role in COUNTER_ROLE_NAMES]
        if counters:
            counters.sort()
            # another server may be writing samples of the same series: the deltas are
            # computed after its commit (seeing its samples), one series at a time;
            # counters before devices, each in order, so two servers cannot deadlock
            conn.execute(
                "SELECT pg_advisory_xact_lock(-1, sid) FROM unnest(%s::int[]) AS u(sid)",
                ([c[0] for c in counters],),
            )
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO touched_counters VALUES (%s, %s, %s)", counters)
            for statement in COUNTER_DELTAS_SQL[1:]:
                conn.execute(statement)
        state_devices = {
            (gid, device)
            for _, gid, device, role in roles
            if role in ("machine_state", "device_status")
        }
        written = 0
        # serialise derived-data updates per device across servers; sorted: no deadlock
        for dev in sorted(device_series(conn, state_devices), key=lambda d: (d.gid, d.device)):
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (dev.gid, dev.device))
            written += refresh_intervals(conn, dev, spans)
        return written

    def _birth(
        self, origin: Origin, birth: Birth, now: datetime
    ) -> dict[int, tuple[datetime, datetime]]:
        """Register devices and tags; returns the series whose role changed (their derived
        data is recomputed in full)."""
        conn = self.conn
        gid = self._gid(origin)
        conn.execute(
            "UPDATE gateways SET agent = %s, boot = greatest(boot, %s), birth_at = %s "
            "WHERE gid = %s",
            (json.dumps(birth.agent), birth.boot, now, gid),
        )
        changed: dict[int, tuple[datetime, datetime]] = {}
        for dev in birth.devices:
            conn.execute(
                "INSERT INTO devices (gid, device, protocol, metadata, first_seen, birth_at) "
                "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (gid, device) DO UPDATE SET "
                "protocol = excluded.protocol, metadata = excluded.metadata, "
                "birth_at = excluded.birth_at",
                (gid, dev.id, dev.protocol, json.dumps(dev.metadata), now, now),
            )
            tags = [*dev.tags]
            rows = conn.execute(
                """
                WITH t AS (
                    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[],
                        %s::float8[], %s::float8[], %s::float8[])
                        AS u(tag, role, unit, data_type, scale, "offset", wrap)
                    UNION ALL SELECT '_status', 'device_status', NULL, NULL, NULL, NULL, NULL),
                old AS (SELECT series_id, tag, role FROM series WHERE gid = %s AND device = %s)
                INSERT INTO series AS s
                    (gid, device, tag, role, unit, data_type, scale, "offset", wrap)
                SELECT %s, %s, t.* FROM t
                ON CONFLICT (gid, device, tag) DO UPDATE SET
                    role = excluded.role, unit = excluded.unit, data_type = excluded.data_type,
                    scale = excluded.scale, "offset" = excluded."offset", wrap = excluded.wrap
                RETURNING s.series_id,
                    (SELECT old.role FROM old WHERE old.tag = s.tag) IS DISTINCT FROM s.role
                """,
                (
                    [t.t for t in tags],
                    [t.role for t in tags],
                    [t.unit for t in tags],
                    [t.type for t in tags],
                    [t.scale for t in tags],
                    [t.offset for t in tags],
                    [t.wrap for t in tags],
                    gid,
                    dev.id,
                    gid,
                    dev.id,
                ),
            ).fetchall()
            role_changed = [sid for sid, differs in rows if differs]
            if role_changed:
                for sid, a, b in conn.execute(
                    "SELECT series_id, min(ts), max(ts) FROM samples "
                    "WHERE series_id = ANY(%s) GROUP BY series_id",
                    (role_changed,),
                ).fetchall():
                    changed[sid] = (a, b)
        return changed

    def _status(self, origin: Origin, status: Status, now: datetime, payload: bytes) -> None:
        gid = self._gid(origin)
        if isinstance(status, StatusV2) and status.dropped and payload:
            self._declared(gid, status, now, payload)
        ts = None if status.ts is None else datetime.fromtimestamp(status.ts / 1000, UTC)
        self.conn.execute(
            "INSERT INTO gateway_status (gid, received_at, ts, boot, state) "
            "VALUES (%s, %s, %s, %s, %s)",
            (gid, now, ts, status.boot, status.state),
        )
        # a Will from an older boot must not mark a newer connection offline
        self.conn.execute(
            "UPDATE gateways SET online = %s, status_at = %s, boot = greatest(boot, %s) "
            "WHERE gid = %s AND (boot IS NULL OR boot <= %s)",
            (status.state == "online", now, status.boot, gid, status.boot),
        )

    def _declared(self, gid: int, status: StatusV2, now: datetime, payload: bytes) -> None:
        """Keep a status's declared drops: each range once (a longer range from the same
        first seq replaces it), and the signed payload when it declares something new, so
        that `ledger check` can verify what the gateway said (migration 0007)."""
        assert status.dropped is not None
        row = self.conn.execute(
            "INSERT INTO gateway_declarations (gid, received_at, payload) VALUES (%s, %s, %s) "
            "RETURNING id",
            (gid, now, payload),
        ).fetchone()
        assert row is not None
        declared_at = now if status.ts is None else _from_ms(status.ts)
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO declared_gaps AS d (gid, boot, first_seq, last_seq, reason, "
                "dropped_at, declared_at, declaration_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (gid, boot, first_seq) DO UPDATE SET last_seq = excluded.last_seq, "
                "reason = excluded.reason, dropped_at = excluded.dropped_at, "
                "declared_at = excluded.declared_at, declaration_id = excluded.declaration_id "
                "WHERE excluded.last_seq > d.last_seq",
                [
                    (gid, boot, first, last, reason, _from_ms(ts), declared_at, row[0])
                    for boot, first, last, reason, ts in status.dropped
                ],
            )
        # nothing new declared (the same ranges, at each connection): the payload goes
        self.conn.execute(
            "DELETE FROM gateway_declarations g WHERE id = %s AND NOT EXISTS "
            "(SELECT 1 FROM declared_gaps d WHERE d.declaration_id = g.id)",
            (row[0],),
        )

    def _dead_letters(self, dead: Sequence[DeadLetter]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (topic, gid, reason, code, payload, payload_bytes) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                [
                    (
                        d.topic,
                        d.gid,
                        d.reason,
                        d.code,
                        d.payload[:DEAD_LETTER_PAYLOAD_MAX],
                        len(d.payload),
                    )
                    for d in dead
                ],
            )
