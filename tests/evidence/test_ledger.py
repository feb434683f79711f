"""`ingest-server ledger check` and the ledger in `status`, against a real PostgreSQL.

The batches are sealed as a v2 gateway seals them (batch_digest, a FileSigner's Ed25519
signature, each prev the digest of the batch before) and written into the ledger tables
with SQL exactly as docs/mqtt.md and the spec of schema 7 say the ingest path writes them
(`World.seal`): a batch row, every sample in `samples` with (batch_id, batch_pos), a
repeated (series, ts) in `samples_aside`. Then the stored rows are tampered with as an
insider could, and the check must name the batch. A gateway's declaration of the batches
its outbox dropped is a signed v2 status, parsed and written by the ingest path itself
(`World.declare`: parse_message_v2, Store.write).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.contract.digest import ZERO, SampleRow, batch_digest, sign_batch
from edge_agent.contract.identity import FileSigner, fingerprint
from edge_agent.contract.topics import parse_stored, prefix, topic
from edge_agent.contract.wire import encode_message_v2
from ingest_server.cli.main import main
from ingest_server.evidence import ledger
from ingest_server.ingest import store as ingest_store
from ingest_server.ingest.check import Group
from ingest_server.ingest.payload import RejectedError
from ingest_server.ingest.payload_v2 import parse_message_v2
from ingest_server.repo.gateways import enroll_public_key, revoke_gateway
from tests.harness.ingest import ENT, SITE, open_store, prepare

DAY = dt.date(2026, 3, 10)  # the period checked: one local day
ENROLLED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def signer() -> FileSigner:
    """A gateway key as `edge-agent keys init` makes it, kept in memory."""
    return FileSigner(Ed25519PrivateKey.generate())


# a sealed batch's samples added to the hourly rollups with the Store's own statement
# (its FROM a batch's stored samples instead of the group's fresh ones)
_BATCH_ROLLUP = (
    ingest_store._ROLLUP_INSERT
    + ingest_store._ROLLUP_FROM_FRESH.replace("FROM fresh", "FROM samples WHERE batch_id = %s")
    + ingest_store._ROLLUP_MERGE
)


class World:
    """A registry with gateways gw-01 and gw-02, each with an enrolled key, and the
    ledger rows written as the ingest path writes them."""

    def __init__(self, db: str) -> None:
        self.db = db
        prepare(db, gateways=("gw-01", "gw-02"))
        self.conn = psycopg.connect(db, autocommit=True)
        (tz,) = self.conn.execute(
            "SELECT timezone FROM sites WHERE enterprise_id = %s AND id = %s", (ENT, SITE)
        ).fetchone() or ("UTC",)
        from zoneinfo import ZoneInfo  # noqa: PLC0415

        self.noon = dt.datetime.combine(DAY, dt.time(12), tzinfo=ZoneInfo(tz)).astimezone(dt.UTC)
        self.keys = {gw: signer() for gw in ("gw-01", "gw-02")}
        self.last: dict[str, bytes] = {}
        for gw, key in self.keys.items():
            enroll_public_key(
                self.conn, enterprise=ENT, site=SITE, gateway=gw, public_key=key.public_key()
            )
        # enrolled before the period (the real enrolment ran now(), after it)
        self.conn.execute("UPDATE gateway_public_keys SET enrolled_at = %s", (ENROLLED,))

    @property
    def plain_rollups(self) -> bool:
        """samples_hourly is a table the writer keeps (plain PostgreSQL), not TimescaleDB's
        continuous aggregate."""
        row = self.conn.execute(
            "SELECT relkind FROM pg_class WHERE oid = 'samples_hourly'::regclass"
        ).fetchone()
        return row is not None and row[0] == "r"

    def gid(self, gw: str) -> int:
        row = self.conn.execute("SELECT gid FROM gateways WHERE id = %s", (gw,)).fetchone()
        assert row is not None
        return int(row[0])

    def series(self, gw: str, device: str, tag: str) -> int:
        row = self.conn.execute(
            "INSERT INTO series (gid, device, tag) VALUES (%s, %s, %s) "
            "ON CONFLICT (gid, device, tag) DO UPDATE SET device = excluded.device "
            "RETURNING series_id",
            (self.gid(gw), device, tag),
        ).fetchone()
        assert row is not None
        return int(row[0])

    def seal(
        self,
        gw: str,
        seq: int,
        samples: Sequence[SampleRow],
        *,
        boot: int = 1,
        minutes: float = 0,
        key: FileSigner | None = None,
        prev: bytes | None = None,
        stored: bool = True,
    ) -> int:
        """Seal a batch as the gateway does and store it as the server does; its id.
        Not `stored`: sealed (the chain moves on) but never reaches the server (0)."""
        prev = self.last.get(gw, ZERO) if prev is None else prev
        digest = batch_digest(gw=gw, boot=boot, seq=seq, prev=prev, samples=samples)
        signature = sign_batch(key or self.keys[gw], digest)
        self.last[gw] = digest
        if not stored:
            return 0
        sent = self.noon + dt.timedelta(minutes=minutes)
        row = self.conn.execute(
            "INSERT INTO batches (gid, boot, seq, sent, received_at, samples, rejected, "
            "contract, prev, digest, signature, n_total) "
            "VALUES (%s, %s, %s, %s, %s, %s, 0, 2, %s, %s, %s, %s) RETURNING id",
            (self.gid(gw), boot, seq, sent, sent + dt.timedelta(seconds=2), len(samples),
             prev, digest, signature, len(samples)),
        ).fetchone()  # fmt: skip
        assert row is not None
        batch_id = int(row[0])
        for pos, (device, tag, ts_ms, value, quality, status) in enumerate(samples):
            sid = self.series(gw, device, tag)
            ts = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ts_ms)
            number = None if value is None or isinstance(value, str) else float(value)
            text = value if isinstance(value, str) else None
            stored = self.conn.execute(
                "INSERT INTO samples (series_id, ts, value, text, quality, status, batch_id, "
                "batch_pos) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (sid, ts, number, text, quality, status, batch_id, pos),
            ).rowcount
            if not stored:  # a repeat of a stored (series, ts): set aside, reason 1
                self.conn.execute(
                    "INSERT INTO samples_aside (batch_id, batch_pos, series_id, ts, value, "
                    "text, quality, status, reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 1)",
                    (batch_id, pos, sid, ts, number, text, quality, status),
                )
        if self.plain_rollups:  # as the Store keeps them (TimescaleDB: the aggregate does)
            self.conn.execute(_BATCH_ROLLUP, (batch_id,))
        return batch_id

    def declare(self, gw: str, dropped: list[list[Any]], *, boot: int = 1) -> bytes:
        """The gateway's signed online status declaring `dropped` ranges, through the
        ingest path (parsed as the consumer does, written by the Store); its payload."""
        body = {"gw": gw, "boot": boot, "state": "online", "ts": self.ms(30), "dropped": dropped}
        payload = encode_message_v2(body, self.keys[gw])
        name = topic(prefix(ENT, SITE, gw), "status")
        origin = parse_stored(name)
        assert origin is not None
        status = parse_message_v2(origin, payload, self.keys[gw].public_key())
        group = Group(statuses=[(origin, status)], raw={id(status): (name, payload)})
        with open_store(self.db) as store:
            store.write(group)
        return payload

    def v1_batch(self, gw: str, seq: int, *, boot: int = 9) -> None:
        sent = self.noon + dt.timedelta(minutes=30)
        self.conn.execute(
            "INSERT INTO batches (gid, boot, seq, sent, received_at, samples, rejected) "
            "VALUES (%s, %s, %s, %s, %s, 0, 0)",
            (self.gid(gw), boot, seq, sent, sent),
        )

    def ms(self, minutes: float) -> int:
        return int((self.noon + dt.timedelta(minutes=minutes)).timestamp() * 1000)

    def samples(self, minutes: float, n: int = 3) -> list[SampleRow]:
        """n samples read before the batch is sealed: a number, a state, a bad null."""
        t = self.ms(minutes - 1)
        kinds: list[SampleRow] = [
            ("cnc-01", "spindle", t, 1500.5 + minutes, 0, None),
            ("cnc-01", "state", t, "RUNNING", 0, None),
            ("cnc-01", "temp", t, None, 2, "sensor open"),
        ]
        return [(*kinds[i % 3][:2], t + i // 3, *kinds[i % 3][3:]) for i in range(n)]  # type: ignore[misc]

    def chain(self, gw: str, n: int, *, boot: int = 1, start: float = 0) -> list[int]:
        return [
            self.seal(gw, seq, self.samples(start + seq), boot=boot, minutes=start + seq)
            for seq in range(1, n + 1)
        ]

    def check(self, *extra: str) -> tuple[int, dict[str, Any]]:
        return run("ledger", "check", "--enterprise", ENT, "--from", str(DAY), "--to",
                   str(DAY), "--json", "--dsn", self.db, *extra)  # fmt: skip


def run(*argv: str) -> tuple[int, Any]:
    """The CLI in-process; its exit code and its stdout (as JSON when it is)."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    text = out.getvalue()
    try:
        return code, json.loads(text)
    except ValueError:
        return code, text + err.getvalue()


def kinds(report: dict[str, Any]) -> list[tuple[str, int | None, int | None, str]]:
    return [(f["gateway"].rsplit("/")[-1], f["boot"], f["seq"], f["kind"])
            for f in report["findings"]]  # fmt: skip


@pytest.fixture
def world(db: str) -> World:
    w = World(db)
    yield w  # type: ignore[misc]
    w.conn.close()


def test_an_untouched_period_passes(world: World) -> None:
    world.seal("gw-01", 7, world.samples(-24 * 60), minutes=-24 * 60)  # the day before
    world.chain("gw-01", 4, boot=2)  # a new boot: its first batch links to boot 1 seq 7
    # a repeat of gw-01's first sample in the period: stored aside, still digested
    world.seal("gw-01", 5, world.samples(1)[:1] + world.samples(5), boot=2, minutes=5)
    world.seal("gw-01", 6, world.samples(24 * 60), boot=2, minutes=24 * 60)  # the day after
    world.chain("gw-02", 2)
    # a backfilled sample, 30 days older than its batch: found outside the narrow window
    world.seal("gw-02", 3, [("cnc-01", "spindle", world.ms(-30 * 24 * 60), 7.0, 0, None)],
               minutes=3)  # fmt: skip
    world.v1_batch("gw-02", 1)
    aside = world.conn.execute("SELECT count(*) FROM samples_aside").fetchone()
    assert aside == (1,)
    code, report = world.check()
    assert code == 0, report
    assert report["ok"] is True
    assert report["findings"] == []
    assert (report["batches_checked"], report["samples_recomputed"]) == (8, 23)
    assert (report["gaps"], report["v1_batches"]) == (0, 1)
    # gw-02's first batch is the start of its chain: noted, not an error
    assert [(n["gateway"], n["seq"]) for n in report["notes"]] == [("hf/p1/gw-02", 1)]
    code, text = run("ledger", "check", "--enterprise", ENT, "--from", str(DAY), "--to",
                     str(DAY), "--dsn", world.db)  # fmt: skip
    assert code == 0
    assert (
        "hf 2026-03-10..2026-03-10: 8 batch(es) checked, 23 sample(s) recomputed, 0 gap(s)" in text
    )
    assert "1 v1 batch(es) in the period: not gateway-signed, not checked" in text
    assert text.splitlines()[-1] == "LEDGER OK"


def test_a_changed_sample_value_names_its_batch(world: World) -> None:
    ids = world.chain("gw-01", 4)
    world.conn.execute(
        "UPDATE samples SET value = value + 1 WHERE batch_id = %s AND batch_pos = 0", (ids[2],)
    )
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [("gw-01", 1, 3, "changed")]
    assert report["findings"][0]["message"].startswith(
        "a stored sample of this batch differs from what the gateway signed"
    )
    # a state text changed, a quality raised: the same
    world.conn.execute(
        "UPDATE samples SET text = 'IDLE' WHERE batch_id = %s AND batch_pos = 1", (ids[0],)
    )
    world.conn.execute(
        "UPDATE samples SET quality = 0 WHERE batch_id = %s AND batch_pos = 2", (ids[3],)
    )
    code, report = world.check()
    assert kinds(report) == [("gw-01", 1, s, "changed") for s in (1, 3, 4)]
    code, text = run("ledger", "check", "--enterprise", ENT, "--from", str(DAY), "--to",
                     str(DAY), "--dsn", world.db)  # fmt: skip
    assert code == 3
    assert text.splitlines()[0].startswith(
        "changed         hf/p1/gw-01 boot 1 seq 1: a stored sample of this batch differs"
    )
    assert text.splitlines()[-1] == "LEDGER NOT OK: 3 finding(s)"


def test_a_deleted_ledger_row_is_a_gap_with_orphans(world: World) -> None:
    ids = world.chain("gw-01", 5)
    world.conn.execute("DELETE FROM batches WHERE id = %s", (ids[2],))
    world.conn.execute(
        "DELETE FROM samples WHERE batch_id = %s AND batch_pos = 0", (ids[3],)
    )  # and a sample of seq 4
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [
        ("gw-01", None, None, "orphan_samples"),
        ("gw-01", 1, 4, "positions"),
        ("gw-01", 1, 4, "changed"),
        ("gw-01", 1, 4, "gap"),
    ]
    by_kind = {f["kind"]: f["message"] for f in report["findings"]}
    assert by_kind["gap"] == (
        "batch boot 1 seq 3 not stored: never received, or deleted on the server"
    )
    assert by_kind["orphan_samples"].startswith("3 sample(s) from ")
    assert f"name batch id {ids[2]}, which is not stored" in by_kind["orphan_samples"]
    assert (
        by_kind["positions"]
        == "2 sample(s) stored for 3 signed; missing: position(s) 0 (n_total 3)"
    )
    assert (report["gaps"], report["batches_missing"]) == (1, 1)
    # the last batch of the period deleted: the next day's batch still names it
    world.seal("gw-01", 6, world.samples(24 * 60), minutes=24 * 60)
    world.conn.execute("DELETE FROM batches WHERE id = %s", (ids[4],))
    code, report = world.check()
    assert ("gw-01", 1, 6, "gap") in kinds(report)
    # `status`: the chain's holes, the oldest first
    code, status = run("status", "--json", "--dsn", world.db)
    assert code == 0
    gw = {g["gateway"]: g for g in status["gateways"]}["hf/p1/gw-01"]
    assert gw["contract"] == 2
    assert (gw["newest_batch"]["boot"], gw["newest_batch"]["seq"]) == (1, 6)
    assert gw["missing_batches"] == 2
    assert gw["oldest_missing"] == {"boot": 1, "seq": 3}
    code, text = run("status", "--dsn", world.db)
    assert "2 batch(es) missing in its chain, oldest boot 1 seq 3: not stored, not acked" in text


def hole(world: World, gw: str, lost: Sequence[int] = (3, 4, 5), n: int = 7) -> None:
    """A chain of n batches whose `lost` ones the gateway sealed but the server never got."""
    for seq in range(1, n + 1):
        world.seal(gw, seq, world.samples(seq), minutes=seq, stored=seq not in lost)


def declared_in(world: World, message: str, head: str) -> dt.datetime:
    """The status time a declared-loss note names after `head`."""
    assert message.startswith(head), message
    return dt.datetime.fromisoformat(message.removeprefix(head))


def test_a_declared_drop_is_a_note_the_same_hole_undeclared_a_finding(world: World) -> None:
    hole(world, "gw-01")
    hole(world, "gw-02")
    dropped = [[1, 3, 5, "full", world.ms(6)]]
    world.declare("gw-01", dropped)
    world.declare("gw-01", dropped)  # again at the next connection: nothing new is kept
    rows = world.conn.execute(
        "SELECT d.boot, d.first_seq, d.last_seq, d.reason, count(DISTINCT g.id) "
        "FROM declared_gaps d, gateway_declarations g GROUP BY 1, 2, 3, 4"
    ).fetchall()
    assert rows == [(1, 3, 5, "full", 1)]
    code, report = world.check()
    assert code == 3, report
    assert kinds(report) == [("gw-02", 1, 6, "gap")]
    assert report["findings"][0]["message"] == (
        "batches boot 1 seq 3..5 not stored: never received, or deleted on the server"
    )
    (note,) = [n for n in report["notes"] if n["gateway"] == "hf/p1/gw-01" and n["seq"] == 6]
    head = (
        "batches boot 1 seq 3..5 lost: dropped by the gateway's outbox: full, declared in its "
        "signed status of "
    )
    assert declared_in(world, note["message"], head) == world.noon + dt.timedelta(minutes=30)
    assert (report["gaps"], report["batches_missing"]) == (1, 3)
    assert (report["gaps_declared"], report["batches_lost"]) == (1, 3)
    # gw-02 declares its loss too: nothing is wrong, the report still says what was lost
    world.declare("gw-02", [[1, 3, 5, "expired", world.ms(6)]])
    code, text = run("ledger", "check", "--enterprise", ENT, "--from", str(DAY), "--to",
                     str(DAY), "--dsn", world.db)  # fmt: skip
    assert code == 0, text
    assert (
        "note            hf/p1/gw-02 boot 1 seq 6: batches boot 1 seq 3..5 lost: dropped by "
        "the gateway's outbox: expired, declared in its signed status of " in text
    )
    assert "2 loss(es) declared by the gateways, 6 batch(es) known lost" in text
    assert text.splitlines()[-1] == "LEDGER OK"


def test_a_declaration_covers_only_what_the_gateway_signed(world: World) -> None:
    hole(world, "gw-01")
    world.declare("gw-01", [[1, 3, 4, "full", world.ms(6)]])
    # a part of the hole declared: the rest is a finding
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [("gw-01", 1, 6, "gap")]
    assert report["findings"][0]["message"] == (
        "batch boot 1 seq 5 not stored: never received, or deleted on the server"
    )
    assert [n["message"][:35] for n in report["notes"] if n["seq"] == 6] == [
        "batches boot 1 seq 3..4 lost: dropp"
    ]
    assert (report["batches_missing"], report["batches_lost"]) == (1, 2)
    # an insider widens the declared range to hide seq 5: the signed status does not say so
    world.conn.execute("UPDATE declared_gaps SET last_seq = 5")
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [("gw-01", 1, 3, "declaration"), ("gw-01", 1, 6, "gap")]
    declaration, gap = (f["message"] for f in report["findings"])
    assert declaration.startswith("the declaration of batches boot 1 seq 3..5 dropped (full), ")
    assert declaration.endswith(
        "the gateway's signed status does not declare that range; its batches count as not stored"
    )
    assert gap == "batches boot 1 seq 3..5 not stored: never received, or deleted on the server"
    # ... and edits the stored status to match: its signature no longer verifies
    (payload,) = world.conn.execute("SELECT payload FROM gateway_declarations").fetchone() or ()
    edited = bytes(payload).replace(b'[1,3,4,"full"', b'[1,3,5,"full"')
    assert edited != bytes(payload)
    world.conn.execute("UPDATE gateway_declarations SET payload = %s", (edited,))
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [("gw-01", 1, 3, "declaration"), ("gw-01", 1, 6, "gap")]
    key = fingerprint(world.keys["gw-01"].public_key())
    assert (
        f"the stored status's signature does not verify under key {key}, enrolled when it "
        "arrived: it is not what the gateway signed" in report["findings"][0]["message"]
    )
    assert report["notes"] == [] or all(n["seq"] != 6 for n in report["notes"])


def test_a_status_breaking_the_declaration_limits_is_refused_with_the_reason(
    world: World,
) -> None:
    name = topic(prefix(ENT, SITE, "gw-01"), "status")
    origin = parse_stored(name)
    assert origin is not None
    key = world.keys["gw-01"]
    cases = {
        "dropped: List should have at most 100 items": [
            [1, s, s, "full", 1] for s in range(1, 202, 2)],
        "dropped[0][3]: Input should be 'full' or 'expired'": [[1, 1, 2, "lost", 1]],
        "dropped: range 0: first seq 5 is after last seq 2": [[1, 5, 2, "full", 1]],
        "dropped: range 1 (boot 1 seq 4..6) does not follow range 0 (boot 1 seq 1..5)": [
            [1, 1, 5, "full", 1], [1, 4, 6, "full", 1]],
        "dropped: boot 3 is after the status's own boot 2": [[3, 1, 1, "full", 1]],
        "dropped[0][2]: Input should be less than or equal to 9223372036854775807": [
            [1, 1, 2**63, "full", 1]],
    }  # fmt: skip
    for reason, dropped in cases.items():
        body = {"gw": "gw-01", "boot": 2, "state": "online", "dropped": dropped}
        with pytest.raises(RejectedError) as exc:
            parse_message_v2(origin, encode_message_v2(body, key), key.public_key())
        assert exc.value.reason.startswith(f"schema: {reason}"), exc.value.reason


def test_swapped_batches_are_both_named(world: World) -> None:
    a = world.chain("gw-01", 4)
    world.chain("gw-02", 4)
    # gw-01: the samples of seq 2 and 3 exchanged
    world.conn.execute(
        "UPDATE samples SET batch_id = CASE batch_id WHEN %s THEN %s ELSE %s END "
        "WHERE batch_id IN (%s, %s)",
        (a[1], a[2], a[1], a[1], a[2]),
    )
    # gw-02: the seq of batches 2 and 3 exchanged (through 0: the primary key)
    for old, new in ((2, 0), (3, 2), (0, 3)):
        world.conn.execute(
            "UPDATE batches SET seq = %s WHERE gid = %s AND seq = %s",
            (new, world.gid("gw-02"), old),
        )
    code, report = world.check()
    assert code == 3
    found = kinds(report)
    assert {(g, s) for g, _, s, k in found if k == "changed"} == {
        ("gw-01", 2), ("gw-01", 3), ("gw-02", 2), ("gw-02", 3),
    }  # fmt: skip
    # gw-02's chain no longer runs in (boot, seq) order
    assert {s for g, _, s, k in found if g == "gw-02" and k == "order"} >= {2, 3}


def test_a_batch_signed_by_another_key(world: World) -> None:
    world.chain("gw-01", 2)
    intruder = signer()
    world.seal("gw-01", 3, world.samples(3), minutes=3, key=intruder)
    code, report = world.check()
    assert code == 3
    assert kinds(report) == [("gw-01", 1, 3, "signature")]
    enrolled = fingerprint(world.keys["gw-01"].public_key())
    assert report["findings"][0]["message"].startswith(
        f"the signature does not verify under key {enrolled}, enrolled when it arrived"
    )


def test_a_replaced_key_leaves_old_batches_verifiable(world: World) -> None:
    world.chain("gw-01", 2)  # signed with key A, 12:01 and 12:02 local
    new = signer()
    enroll_public_key(world.conn, enterprise=ENT, site=SITE, gateway="gw-01",
                      public_key=new.public_key(), replace=True)  # fmt: skip
    # the replacement at 12:10 local of the day checked (it ran now(), after it)
    at = world.noon + dt.timedelta(minutes=10)
    world.conn.execute(
        "UPDATE gateway_public_keys SET retired_at = %s WHERE retired_at IS NOT NULL", (at,)
    )
    world.conn.execute(
        "UPDATE gateway_public_keys SET enrolled_at = %s WHERE public_key = %s",
        (at, new.public_key()),
    )
    world.seal("gw-01", 3, world.samples(20), minutes=20, key=new)
    code, report = world.check()
    assert code == 0, report
    # a batch signed with the old key after it was replaced is refused
    world.seal("gw-01", 4, world.samples(21), minutes=21, key=world.keys["gw-01"])
    code, report = world.check()
    assert kinds(report) == [("gw-01", 1, 4, "signature")]
    assert (
        "which was in effect from 2026-01-01T00:00:00+00:00 to" in report["findings"][0]["message"]
    )
    # revoked: its key is retired, the batches it signed before still verify
    world.conn.execute("DELETE FROM batches WHERE seq = 4")
    world.conn.execute("DELETE FROM samples WHERE batch_id NOT IN (SELECT id FROM batches)")
    revoke_gateway(world.conn, ENT, SITE, "gw-01")
    history = world.conn.execute(
        "SELECT count(*) FILTER (WHERE retired_at IS NULL) FROM gateway_public_keys "
        "WHERE gid = %s", (world.gid("gw-01"),)
    ).fetchone()  # fmt: skip
    assert history == (0,)
    world.conn.execute(
        "UPDATE gateway_public_keys SET retired_at = %s WHERE public_key = %s",
        (at + dt.timedelta(hours=1), new.public_key()),
    )
    code, report = world.check()
    assert code == 0, report


def test_bad_arguments_exit_2(world: World) -> None:
    code, text = run("ledger", "check", "--enterprise", "nobody", "--from", str(DAY), "--to",
                     str(DAY), "--dsn", world.db)  # fmt: skip
    assert code == 2
    assert text.strip() == (
        "ingest-server: --enterprise: no enterprise 'nobody' in the registry (known: ['hf'])"
    )
    code, text = run("ledger", "check", "--enterprise", ENT, "--from", "2026-03-10", "--to",
                     "2026-03-01", "--dsn", world.db)  # fmt: skip
    assert code == 2
    assert "to: 2026-03-01 is before from (2026-03-10)" in text


# -- the pure checks, without a database ---------------------------------------------------

T0 = dt.datetime(2026, 3, 10, 4, tzinfo=dt.UTC)


def pure_chain(
    key: FileSigner, n: int, *, boot: int = 1
) -> tuple[list[ledger.Batch], list[ledger.StoredSample]]:
    batches, samples, prev = [], [], ZERO
    for seq in range(1, n + 1):
        rows: list[SampleRow] = [("d", "t", 1_000 * seq, float(seq), 0, None),
                                 ("d", "s", 1_000 * seq, "RUNNING", 1, "stale")]  # fmt: skip
        digest = batch_digest(gw="g", boot=boot, seq=seq, prev=prev, samples=rows)
        when = T0 + dt.timedelta(minutes=seq)
        batches.append(ledger.Batch(seq, "e/s/g", "g", boot, seq, when, when, 2, prev, digest,
                                    sign_batch(key, digest), len(rows), "period"))  # fmt: skip
        samples += [
            ledger.StoredSample(seq, pos, d, t, ts, None if isinstance(v, str) else v,
                                v if isinstance(v, str) else None, q, s)
            for pos, (d, t, ts, v, q, s) in enumerate(rows)
        ]  # fmt: skip
        prev = digest
    return batches, samples


def test_the_pure_checks() -> None:
    key = signer()
    keys = [ledger.GatewayKey("e/s/g", key.public_key(), T0 - dt.timedelta(days=1), None)]
    batches, samples = pure_chain(key, 5)
    clean = ledger.check(batches, samples, keys)
    assert clean.ok
    assert (clean.batches_checked, clean.samples_recomputed) == (5, 10)
    assert [(n.seq, n.kind) for n in clean.notes] == [(1, "note")]
    # a value changed, seq 3 missing, seq 5 only context: never recomputed
    changed = [s._replace(value=99.0) if (s.batch_id, s.batch_pos) == (2, 0) else s
               for s in samples]  # fmt: skip
    kept = [b._replace(role="after") if b.seq == 5 else b for b in batches if b.seq != 3]
    result = ledger.check(kept, changed, keys)
    assert [(f.seq, f.kind) for f in result.findings] == [(2, "changed"), (4, "gap")]
    assert result.findings[1].message == (
        "batch boot 1 seq 3 not stored: never received, or deleted on the server"
    )
    assert (result.batches_checked, result.gaps, result.missing) == (3, 1, 1)
    # positions: a sample twice and one beyond n_total
    extra = [*samples, samples[0], samples[0]._replace(batch_pos=7)]
    result = ledger.check(batches, sorted(extra, key=lambda s: s.batch_id), keys)
    assert [f.kind for f in result.findings] == ["positions", "changed"]
    assert result.findings[0].message == (
        "4 sample(s) stored for 2 signed; stored more than once: position(s) 0; beyond the "
        "batch: position(s) 7 (n_total 2)"
    )
    # ts as ms (an export) works as a datetime does
    as_ms = [s._replace(ts=ledger.ts_ms(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
                                         + dt.timedelta(milliseconds=s.ts))) for s in samples]  # type: ignore[arg-type]  # fmt: skip
    assert ledger.check(batches, as_ms, keys).ok
    # no key in effect when the batches arrived
    late = [keys[0]._replace(enrolled_at=T0 + dt.timedelta(minutes=3))]
    result = ledger.check(batches, samples, late)
    assert [(f.seq, f.kind) for f in result.findings] == [(1, "signature"), (2, "signature")]
    assert "no public key of the gateway was enrolled when it arrived" in result.findings[0].message
    # a chain restarted mid-boot, and a prev naming a batch out of order
    restarted = [b._replace(prev=ZERO) if b.seq == 3 else b for b in batches]
    result = ledger.check(restarted, [], keys)
    assert ("order", 3) in [(f.kind, f.seq) for f in result.findings]
    reordered = [b._replace(prev=batches[0].digest) if b.seq == 4 else b for b in batches]
    findings = ledger.check_chain(reordered, {bytes(b.digest or b""): b for b in batches})
    assert [(f.seq, f.kind, f.message) for f in findings if f.kind != "note"] == [
        (4, "order", "prev names boot 1 seq 1, not boot 1 seq 3 just before it")
    ]
