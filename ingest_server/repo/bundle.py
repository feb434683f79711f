"""The rows of an evidence bundle (`ingest-server report --bundle`, evidence/bundle.py) and
of the verifier's trust file (`ingest-server trust export`): the one home of their SQL.

    series_rows        the enterprise's series, with the gateway and site they come from
    window_batch_ids   the batches of the samples of the series in each site's window
    window_edges       each series' samples just outside the window (what a KPI
                       computation reads at the edges)
    batch_rows         ledger rows: the batches of those samples, the v2 batches sent in the
                       window with the chain around them (as `ledger check`), v1 batches sent
                       in the window
    batches_reach      where the samples of given v2 batches are (near range, far rows)
    Selection          the bundle's samples, as an SQL predicate (`Selection.predicate`)
    selection_counts   its samples counted by batch (the row groups' plan)
    selection_samples  its samples of a range of batches, by (series, ts), streamed
    aside_counts, aside_samples   the same for `samples_aside` of given v2 batches
    registry_rows      enterprise, sites with calendars, processes, equipment, meters,
                       gateways; and the two edit trails (equipment, the rest)
    production_rows    the production entries overlapping the periods, with who and when
    anchor_rows        the anchors (current and superseded) of given days, with their tokens
    gateway_key_rows   every public key the enterprise's gateways have had

Rows come back as plain tuples or dicts keyed by column. Times are timestamptz (datetime);
the caller converts them. The samples are streamed (server-side cursors, by batch range and
within it by the samples' key), so that a bundle of any size is built with bounded memory.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest_server.repo import audit
from ingest_server.repo.ledger import DEFAULT_MAX_PAST, NEAR

Window = dict[str, tuple[dt.datetime, dt.datetime]]  # site -> [start, end) in UTC

_SAMPLE = "series_id, ts, value, text, quality, status, batch_id, batch_pos"
_BATCH = (
    "SELECT b.id, g.site_id, g.id, b.boot, b.seq, b.sent, b.received_at, b.contract, b.prev, "
    "b.digest, b.signature, b.n_total, b.samples, b.rejected FROM batches b "
    "JOIN gateways g ON g.gid = b.gid "
)


def _dicts(conn: psycopg.Connection, query: str, params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def series_rows(conn: psycopg.Connection, *, enterprise: str) -> list[tuple[Any, ...]]:
    """(series_id, site, gateway, device, tag, role, unit, data_type, scale, offset, wrap)
    of every series of the enterprise's gateways, by series_id."""
    return conn.execute(
        "SELECT s.series_id, g.site_id, g.id, s.device, s.tag, s.role, s.unit, s.data_type, "
        's.scale, s."offset", s.wrap FROM series s JOIN gateways g ON g.gid = s.gid '
        "WHERE g.enterprise_id = %s ORDER BY s.series_id",
        (enterprise,),
    ).fetchall()


def _windowed(series: Sequence[tuple[int, str]], window: Window) -> dict[str, list[Any]]:
    known = [(sid, site) for sid, site in series if site in window]
    return {
        "sids": [sid for sid, _ in known],
        "lo": [window[site][0] for _, site in known],
        "hi": [window[site][1] for _, site in known],
    }


_W = """WITH w AS (SELECT * FROM unnest(%(sids)s::int[], %(lo)s::timestamptz[],
                                   %(hi)s::timestamptz[]) AS w(sid, lo, hi))"""


def window_batch_ids(
    conn: psycopg.Connection, *, series: Sequence[tuple[int, str]], window: Window
) -> list[int]:
    """The batch ids of the samples of `series` ((series_id, site) pairs) in their site's
    window, each once, ascending (one pass over the window in the database)."""
    params = _windowed(series, window)
    if not params["sids"]:
        return []
    rows = conn.execute(
        _W + " SELECT DISTINCT s.batch_id FROM w JOIN samples s ON s.series_id = w.sid "
        "AND s.ts >= w.lo AND s.ts < w.hi WHERE s.batch_id IS NOT NULL ORDER BY 1",
        params,
    ).fetchall()
    return [int(r[0]) for r in rows]


def window_edges(
    conn: psycopg.Connection,
    *,
    series: Sequence[tuple[int, str]],
    window: Window,
    counters: Sequence[int],
) -> list[tuple[Any, ...]]:
    """(series_id, ts, value, text, quality, status, batch_id, batch_pos) of, per series of
    `series` ((series_id, site) pairs) with a window, the last sample before its site's
    window and the first after it, and for the `counters` the last good reading (quality
    < 2, a value) before and the first after: what kpi/raw.py reads at the window's edges,
    besides the window's own samples (`Selection.predicate`). A sample may come twice."""
    params: dict[str, Any] = {**_windowed(series, window), "counters": list(counters)}
    if not params["sids"]:
        return []
    return conn.execute(
        _W
        + f"""
        SELECT e.* FROM w CROSS JOIN LATERAL (
            (SELECT {_SAMPLE} FROM samples WHERE series_id = w.sid AND ts < w.lo
             ORDER BY ts DESC LIMIT 1)
            UNION ALL
            (SELECT {_SAMPLE} FROM samples WHERE series_id = w.sid AND ts >= w.hi
             ORDER BY ts LIMIT 1)
            UNION ALL
            (SELECT {_SAMPLE} FROM samples WHERE series_id = w.sid AND ts < w.lo
             AND w.sid = ANY(%(counters)s) AND quality < 2 AND value IS NOT NULL
             ORDER BY ts DESC LIMIT 1)
            UNION ALL
            (SELECT {_SAMPLE} FROM samples WHERE series_id = w.sid AND ts >= w.hi
             AND w.sid = ANY(%(counters)s) AND quality < 2 AND value IS NOT NULL
             ORDER BY ts LIMIT 1)
        ) e
        """,
        params,
    ).fetchall()


def gateway_gids(conn: psycopg.Connection, *, enterprise: str) -> dict[str, int]:
    """enterprise/site/gateway -> gid, of every gateway of the enterprise."""
    rows = conn.execute(
        "SELECT enterprise_id || '/' || site_id || '/' || id, gid FROM gateways "
        "WHERE enterprise_id = %s",
        (enterprise,),
    ).fetchall()
    return {str(name): int(gid) for name, gid in rows}


def batch_rows(
    conn: psycopg.Connection, *, enterprise: str, window: Window, ids: Sequence[int]
) -> list[tuple[Any, ...]]:
    """Ledger rows (id, site, gateway, boot, seq, sent, received_at, contract, prev, digest,
    signature, n_total, samples, rejected, role): the batches `ids` (role "extra"), every
    batch sent in the window (v2 and v1: "period"), and per gateway the v2 batches stored
    between its first and last of the window ("span"), the one just before ("before")
    and just after ("after"). One row per batch; the first role in that order wins."""
    sites = sorted(window)
    lo = [window[s][0] for s in sites]
    hi = [window[s][1] for s in sites]
    period = conn.execute(
        _BATCH + "JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) "
        "AS w(site, lo, hi) ON w.site = g.site_id "
        "WHERE g.enterprise_id = %s AND b.sent >= w.lo AND b.sent < w.hi",
        (sites, lo, hi, enterprise),
    ).fetchall()
    rows: dict[int, tuple[Any, ...]] = {r[0]: (*r, "period") for r in period}
    keys: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for r in period:
        if r[7] == 2:
            keys.setdefault((r[1], r[2]), []).append((r[3], r[4]))
    for (site, gw), have in sorted(keys.items()):
        first, last = min(have), max(have)
        where = "g.enterprise_id = %s AND g.site_id = %s AND g.id = %s AND b.contract = 2 "
        found = conn.execute(
            _BATCH + "WHERE " + where + "AND (b.boot, b.seq) BETWEEN (%s, %s) AND (%s, %s)",
            (enterprise, site, gw, *first, *last),
        ).fetchall()
        found = [(*r, "span") for r in found]
        for order, cmp, role in (("DESC", "<", "before"), ("", ">", "after")):
            edge = first if role == "before" else last
            found += [
                (*r, role)
                for r in conn.execute(
                    _BATCH + "WHERE " + where + f"AND (b.boot, b.seq) {cmp} (%s, %s) "
                    f"ORDER BY b.boot {order}, b.seq {order} LIMIT 1",
                    (enterprise, site, gw, *edge),
                ).fetchall()
            ]
        for r in found:
            rows.setdefault(r[0], r)
    missing = sorted(set(ids) - rows.keys())
    if missing:
        for r in conn.execute(_BATCH + "WHERE b.id = ANY(%s)", (missing,)).fetchall():
            rows[r[0]] = (*r, "extra")
    return [rows[k] for k in sorted(rows)]


def batches_reach(
    conn: psycopg.Connection,
    *,
    batches: Sequence[tuple[int, dt.datetime, dt.datetime, int]],
    series_ids: Sequence[int],
) -> tuple[tuple[dt.datetime, dt.datetime] | None, list[tuple[Any, ...]]]:
    """Where the samples of the v2 `batches` ((id, sent, received_at, n_total)) are: the
    near range, [lo, hi] within a day of their sent and received times, where the bundle
    takes every sample of those batches, and the far rows (columns as `window_edges`):
    their samples outside it, looked for over --max-past for the batches still short of
    n_total there (a backfill's samples far from their batch's times, or samples not
    stored; as repo/ledger.py does). `samples` has no index on batch_id: a batch's samples
    are found by the series' key. Memory: one count per batch, and the far rows."""
    if not batches:
        return None, []
    ids = [b[0] for b in batches]
    lo = min(min(b[1], b[2]) for b in batches) - NEAR
    hi = max(max(b[1], b[2]) for b in batches) + NEAR
    found = dict.fromkeys(ids, 0)
    for table, where in (("samples", "series_id = ANY(%(sids)s) AND ts >= %(lo)s AND "
                          "ts <= %(hi)s AND "), ("samples_aside", "")):  # fmt: skip
        for bid, n in conn.execute(
            f"SELECT batch_id, count(*) FROM {table} WHERE {where}batch_id = ANY(%(ids)s) "
            "GROUP BY batch_id",
            {"sids": list(series_ids), "lo": lo, "hi": hi, "ids": ids},
        ).fetchall():
            found[bid] += n
    short = [b for b in batches if found[b[0]] < (b[3] or 0)]
    if not short:
        return (lo, hi), []
    far = conn.execute(
        f"SELECT {_SAMPLE} FROM samples WHERE series_id = ANY(%(sids)s) AND ts >= %(wlo)s "
        "AND ts <= %(whi)s AND NOT (ts >= %(lo)s AND ts <= %(hi)s) AND batch_id = ANY(%(ids)s)",
        {"sids": list(series_ids), "wlo": min(b[2] for b in short) - DEFAULT_MAX_PAST - NEAR,
         "whi": max(b[2] for b in short) + NEAR, "lo": lo, "hi": hi,
         "ids": [b[0] for b in short]},
    ).fetchall()  # fmt: skip
    return (lo, hi), far


@dataclass(frozen=True)
class Selection:
    """The samples a bundle holds, each once: `predicate`: every sample of a
    series (of `series_ids`) in a window of its site, or of a `whole` batch in the `near`
    range; plus the few `extra` rows found apart (edges, far rows of whole batches), which
    the caller has checked are not among them."""

    series_ids: list[int]
    windows: list[Window]
    site_of: dict[int, str]
    whole: list[int]
    near: tuple[dt.datetime, dt.datetime] | None

    def holds(self, row: Sequence[Any]) -> bool:
        """Is the sample `row` (columns as `window_edges`) among those `predicate` finds:
        the same test, in Python, for the few rows found apart."""
        sid, ts, batch_id = row[0], row[1], row[6]
        if sid not in self.series_ids:
            return False
        site = self.site_of.get(sid)
        if any(site in w and w[site][0] <= ts < w[site][1] for w in self.windows):
            return True
        if self.near is None or batch_id is None or not self.near[0] <= ts <= self.near[1]:
            return False
        at = bisect.bisect_left(self.whole, batch_id)  # whole: ascending
        return at < len(self.whole) and self.whole[at] == batch_id

    def params(self, batch_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """The arrays `predicate` reads: per window, each series' bounds indexed by its id
        (an empty range, for a series whose site has none)."""
        top = max(self.series_ids, default=0)
        out: dict[str, Any] = {"sids": self.series_ids}
        for k, w in enumerate(self.windows):
            lo = [_LATEST] * top
            hi = [_EARLIEST] * top
            for sid in self.series_ids:
                if (site := self.site_of.get(sid)) in w:
                    lo[sid - 1], hi[sid - 1] = w[site]
            out[f"lo{k}"], out[f"hi{k}"] = lo, hi
        out["whole"] = list(self.whole if batch_ids is None else batch_ids)
        near = self.near or (_LATEST, _EARLIEST)
        out["near_lo"], out["near_hi"] = near
        bounds = [b for w in self.windows for b in w.values()] + ([near] if self.near else [])
        out["all_lo"] = min((b[0] for b in bounds), default=_LATEST)
        out["all_hi"] = max((b[1] for b in bounds), default=_EARLIEST)
        return out

    def predicate(self) -> str:
        """SQL over `samples s`: is the sample in the selection (not counting `extra`)."""
        inside = [
            f"(s.ts >= (%(lo{k})s::timestamptz[])[s.series_id] "
            f"AND s.ts < (%(hi{k})s::timestamptz[])[s.series_id])"
            for k in range(len(self.windows))
        ]
        inside.append(
            "(s.batch_id = ANY(%(whole)s::bigint[]) AND s.ts >= %(near_lo)s::timestamptz "
            "AND s.ts <= %(near_hi)s::timestamptz)"
        )
        return "(" + " OR ".join(inside) + ")"


_LATEST = dt.datetime.max.replace(tzinfo=dt.UTC)  # bounds of a range that holds nothing
_EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def selection_counts(
    conn: psycopg.Connection, *, selection: Selection
) -> list[tuple[int | None, int, dt.datetime, dt.datetime]]:
    """(batch_id, samples, first ts, last ts) of the selection's samples by batch, v1 (no
    batch: None) first, then by id. One pass in the database; one row a batch here."""
    if not selection.series_ids:
        return []
    return conn.execute(
        "SELECT s.batch_id, count(*), min(s.ts), max(s.ts) FROM samples s "
        "WHERE s.series_id = ANY(%(sids)s) AND s.ts >= %(all_lo)s AND s.ts <= %(all_hi)s "
        f"AND {selection.predicate()} GROUP BY s.batch_id ORDER BY s.batch_id NULLS FIRST",
        selection.params(),
    ).fetchall()


def selection_samples(
    conn: psycopg.Connection,
    *,
    selection: Selection,
    batches: tuple[int, int] | None,
    span: tuple[dt.datetime, dt.datetime],
    whole: Sequence[int],
    size: int,
) -> Iterator[list[tuple[Any, ...]]]:
    """The selection's samples (columns as `window_edges`) of the v1 samples (`batches`
    None) or of the batch ids in [first, last], within `span` (their first and last ts,
    `selection_counts`), by (series_id, ts): an ordered scan of the samples' key, read
    through a server-side cursor `size` rows at a time. `whole`: the whole batches among
    those ids. Memory here: `size` rows."""
    group = "s.batch_id IS NULL" if batches is None else "s.batch_id BETWEEN %(b0)s AND %(b1)s"
    params = {**selection.params(whole), "t0": span[0], "t1": span[1]}
    if batches is not None:
        params["b0"], params["b1"] = batches
    query = (
        f"SELECT {', '.join('s.' + c for c in _SAMPLE.split(', '))} FROM samples s "
        "WHERE s.series_id = ANY(%(sids)s) AND s.ts >= %(t0)s AND s.ts <= %(t1)s "
        f"AND {group} AND {selection.predicate()} ORDER BY s.series_id, s.ts"
    )
    with conn.cursor(name=f"bundle_samples_{next(_CURSORS)}", binary=True) as cur:
        cur.itersize = size
        cur.execute(query, params)
        while rows := cur.fetchmany(size):
            yield rows


def aside_counts(conn: psycopg.Connection, *, ids: Sequence[int]) -> list[tuple[int, int]]:
    """(batch_id, rows) of `samples_aside` for the batches `ids`, by id."""
    return conn.execute(
        "SELECT batch_id, count(*) FROM samples_aside WHERE batch_id = ANY(%s) "
        "GROUP BY batch_id ORDER BY batch_id",
        (list(ids),),
    ).fetchall()


def aside_samples(
    conn: psycopg.Connection, *, ids: Sequence[int], size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The `samples_aside` rows of the batches `ids` (columns as `window_edges`, then
    `reason`), by (series_id, ts, batch_id, batch_pos), `size` rows at a time."""
    with conn.cursor(name=f"bundle_aside_{next(_CURSORS)}", binary=True) as cur:
        cur.itersize = size
        cur.execute(
            f"SELECT {_SAMPLE}, reason FROM samples_aside WHERE batch_id = ANY(%s) "
            "ORDER BY series_id, ts, batch_id, batch_pos",
            (list(ids),),
        )
        while rows := cur.fetchmany(size):
            yield rows


_CURSORS = itertools.count()


def registry_rows(conn: psycopg.Connection, *, enterprise: str) -> dict[str, Any]:
    """The enterprise's registry as it stands: its row, sites (with their calendar's id),
    calendars, processes, equipment with every declared attribute, meters, gateways (ids,
    contract, enrolment and revocation, no secret), the equipment audit trail (every
    edit: when, who, the attribute, before, after, why) and the registry's other trail
    (repo/audit.py: the same with kind and entity_id), oldest first."""
    e = (enterprise,)
    ent = _dicts(
        conn,
        "SELECT id, name, name_en, credit_code, industry, declaration, targets FROM enterprises "
        "WHERE id = %s",
        e,
    )
    return {
        "enterprise": ent[0] if ent else None,
        "sites": _dicts(
            conn,
            "SELECT id, name, name_en, timezone, calendar_id, grid_region FROM sites "
            "WHERE enterprise_id = %s ORDER BY id",
            e,
        ),
        "calendars": _dicts(
            conn,
            "SELECT id, definition FROM shift_calendars WHERE enterprise_id = %s ORDER BY id",
            e,
        ),
        "processes": _dicts(
            conn,
            "SELECT id, name, name_en, key_process FROM processes WHERE enterprise_id = %s "
            "ORDER BY id",
            e,
        ),
        "equipment": _dicts(
            conn,
            "SELECT id, site_id, name, name_en, process_id, nc, production, interface, "
            "ideal_cycle_time_s, product, vendor, model, serial, year, gateway_id, device "
            "FROM equipment WHERE enterprise_id = %s ORDER BY id",
            e,
        ),
        "meters": _dicts(
            conn,
            "SELECT id, site_id, name, name_en, carrier, unit, parent_id, covers, gateway_id, "
            "device, serial, model, accuracy_class, calibration, role FROM meters "
            "WHERE enterprise_id = %s ORDER BY id",
            e,
        ),
        "gateways": _dicts(
            conn,
            "SELECT site_id, id, contract, enrolled_at, issued_at, revoked_at FROM gateways "
            "WHERE enterprise_id = %s ORDER BY site_id, id",
            e,
        ),
        "equipment_audit": _dicts(conn, audit.EQUIPMENT_TRAIL, e),
        "registry_audit": _dicts(conn, audit.REGISTRY_TRAIL, e),
    }


def production_rows(
    conn: psycopg.Connection, *, enterprise: str, periods: Sequence[tuple[dt.date, dt.date]]
) -> list[dict[str, Any]]:
    """Every production entry of the enterprise overlapping one of `periods` (local dates,
    inclusive), with who entered it and when, by id."""
    return _dicts(
        conn,
        "SELECT id, site_id, period_from, period_to, output, output_unit, value_added_10k_cny, "
        "note, entered_at, entered_by FROM production_entries p WHERE enterprise_id = %s "
        "AND EXISTS (SELECT 1 FROM unnest(%s::date[], %s::date[]) AS w(lo, hi) "
        "WHERE p.period_from <= w.hi AND p.period_to >= w.lo) ORDER BY id",
        (enterprise, [p[0] for p in periods], [p[1] for p in periods]),
    )


def anchor_rows(
    conn: psycopg.Connection, *, enterprise: str, days: Sequence[dt.date]
) -> list[dict[str, Any]]:
    """The anchors of `days` (current and superseded, oldest first), each with `tokens`:
    every TSA's answer (the DER TimeStampResp, or the last error)."""
    anchors = _dicts(
        conn,
        "SELECT id, day, root, leaves, leaf_order, built_at, superseded_at FROM anchor_days "
        "WHERE enterprise_id = %s AND day = ANY(%s) ORDER BY day, built_at, id",
        (enterprise, list(days)),
    )
    tokens = _dicts(
        conn,
        "SELECT anchor_id, tsa_url, tsa_name, token, gen_time, last_error, attempted_at "
        "FROM anchor_tokens WHERE anchor_id = ANY(%s) ORDER BY anchor_id, tsa_url",
        ([a["id"] for a in anchors],),
    )
    for a in anchors:
        a["tokens"] = [t for t in tokens if t["anchor_id"] == a["id"]]
    return anchors


def gateway_key_rows(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """Every public key the enterprise's gateways have had (gateway_public_keys), with
    when each was enrolled and retired, and the gateway's contract and revocation."""
    return _dicts(
        conn,
        "SELECT g.site_id, g.id AS gateway, g.contract, g.revoked_at, k.public_key, "
        "k.enrolled_at, k.retired_at FROM gateway_public_keys k "
        "JOIN gateways g ON g.gid = k.gid WHERE g.enterprise_id = %s "
        "ORDER BY g.site_id, g.id, k.enrolled_at",
        (enterprise,),
    )
