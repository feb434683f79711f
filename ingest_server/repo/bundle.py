"""The rows of an evidence bundle (`ingest-server report --bundle`, evidence/bundle.py) and
of the verifier's trust file (`ingest-server trust export`): the one home of their SQL.

    series_rows        the enterprise's series, with the gateway and site they come from
    window_samples     the samples of the series in each site's window, and each series'
                       samples just outside it (what a KPI computation reads at the edges)
    batch_rows         ledger rows: the batches of those samples, the v2 batches sent in the
                       window with the chain around them (as `ledger check`), v1 batches sent
                       in the window
    batches_samples    every sample (`samples` and `samples_aside`) of given v2 batches
    registry_rows      enterprise, sites with calendars, processes, equipment, meters,
                       gateways; and the equipment audit trail
    production_rows    the production entries overlapping the periods, with who and when
    anchor_rows        the anchors (current and superseded) of given days, with their tokens
    gateway_key_rows   every public key the enterprise's gateways have had

Rows come back as plain tuples or dicts keyed by column. Times are timestamptz (datetime);
the caller converts them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

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


def window_samples(
    conn: psycopg.Connection,
    *,
    series: Sequence[tuple[int, str]],
    window: Window,
    counters: Sequence[int],
) -> list[tuple[Any, ...]]:
    """(series_id, ts, value, text, quality, status, batch_id, batch_pos) of the samples of
    `series` ((series_id, site) pairs) in their site's window, plus, per series, the last
    sample before the window and the first after it, and for the `counters` the last good
    reading (quality < 2, a value) before and the first after: what kpi/raw.py reads at
    the window's edges. Unordered; a sample may come twice (the caller drops repeats)."""
    known = [(sid, site) for sid, site in series if site in window]
    if not known:
        return []
    params = {
        "sids": [sid for sid, _ in known],
        "lo": [window[site][0] for _, site in known],
        "hi": [window[site][1] for _, site in known],
        "counters": list(counters),
    }
    return conn.execute(
        f"""
        WITH w AS (SELECT * FROM unnest(%(sids)s::int[], %(lo)s::timestamptz[],
                                        %(hi)s::timestamptz[]) AS w(sid, lo, hi))
        SELECT s.series_id, s.ts, s.value, s.text, s.quality, s.status, s.batch_id,
               s.batch_pos
        FROM w JOIN samples s ON s.series_id = w.sid AND s.ts >= w.lo AND s.ts < w.hi
        UNION ALL
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


def batches_samples(
    conn: psycopg.Connection,
    *,
    batches: Sequence[tuple[int, dt.datetime, dt.datetime, int]],
    series_ids: Sequence[int],
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored sample of the v2 `batches` ((id, sent, received_at, n_total)): those in
    `samples` (columns as `window_samples`) and those in `samples_aside` (the same, then
    `reason`). `samples` has no index on batch_id: a batch's samples are found by the
    series' key within a day of its sent and received times, and only the batches still
    short of n_total are read again over --max-past (as repo/ledger.py does)."""
    if not batches:
        return [], []
    ids = [b[0] for b in batches]
    aside = conn.execute(
        f"SELECT {_SAMPLE}, reason FROM samples_aside WHERE batch_id = ANY(%s)", (ids,)
    ).fetchall()
    lo = min(min(b[1], b[2]) for b in batches) - NEAR
    hi = max(max(b[1], b[2]) for b in batches) + NEAR
    query = (
        f"SELECT {_SAMPLE} FROM samples WHERE series_id = ANY(%(sids)s) AND ts >= %(lo)s "
        "AND ts <= %(hi)s AND batch_id = ANY(%(ids)s)"
    )
    params = {"sids": list(series_ids), "lo": lo, "hi": hi, "ids": ids}
    rows = conn.execute(query, params).fetchall()
    found = dict.fromkeys(ids, 0)
    for r in (*rows, *aside):
        found[r[6]] += 1
    short = [b for b in batches if found[b[0]] < (b[3] or 0)]
    if short:  # a backfill's samples far from their batch's times, or samples not stored
        wide = {
            "sids": list(series_ids),
            "lo": min(b[2] for b in short) - DEFAULT_MAX_PAST - NEAR,
            "hi": max(b[2] for b in short) + NEAR,
            "ids": [b[0] for b in short],
        }
        rows += [r for r in conn.execute(query, wide).fetchall() if not lo <= r[1] <= hi]
    return rows, aside


def registry_rows(conn: psycopg.Connection, *, enterprise: str) -> dict[str, Any]:
    """The enterprise's registry as it stands: its row, sites (with their calendar's id),
    calendars, processes, equipment with every declared attribute, meters, gateways (ids,
    contract, enrolment and revocation, no secret), and the equipment audit trail (every
    edit: when, who, the attribute, before, after, why), oldest first."""
    e = (enterprise,)
    ent = _dicts(
        conn, "SELECT id, name, name_en, credit_code, industry FROM enterprises WHERE id = %s", e
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
            "device FROM meters WHERE enterprise_id = %s ORDER BY id",
            e,
        ),
        "gateways": _dicts(
            conn,
            "SELECT site_id, id, contract, enrolled_at, issued_at, revoked_at FROM gateways "
            "WHERE enterprise_id = %s ORDER BY site_id, id",
            e,
        ),
        "equipment_audit": _dicts(
            conn,
            "SELECT id, at, equipment_id, account, field, old, new, note FROM equipment_audit "
            "WHERE enterprise_id = %s ORDER BY at, id",
            e,
        ),
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
