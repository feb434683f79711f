"""The ledger's rows for `ingest-server ledger check` (the one home of their SQL; the
checks themselves are pure, evidence/ledger.py).

    period_batches  the enterprise's batches whose `sent` falls in the period (local dates
                    of each gateway's site, as reports use), the v2 ones with those stored
                    around them in (boot, seq) order, and the stored batches a prev names
    batch_samples   their samples from `samples` and `samples_aside`, a chunk of batches
                    per query, sorted by batch_id
    gateway_keys    every public key the gateways had, with when
    declarations    the drops the gateways declared in the boots of those batches, each
                    with the signed status that declared it
    orphan_samples  samples of the period whose batch_id names no stored batch

Rows come back as plain tuples in the column order of evidence/ledger.py's named tuples.

Finding a batch's samples in `samples` (no index on batch_id): its key (series_id, ts)
is the way in, so the query gives the gateway's series and a ts window. A sample was
stored only if its time passed the clock check, ts in [now - max_past, now + max_future]
at arrival, so it lies in [received_at - max_past, received_at + max_future]; max_past
(400 days by default) is far too wide to scan for every batch. So the window is first
the narrow one where a batch's samples nearly always are (a day around its `sent` and
`received_at`), and only the batches that come out short of n_total are read again over
the wide one: a check of a clean period reads its samples once, near where they are.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

CHUNK = 500  # batches per samples query
NEAR = dt.timedelta(days=1)  # the narrow window, either side of sent and received_at
DEFAULT_MAX_PAST = dt.timedelta(days=400)  # ingest-server run --max-past's default

_BATCH = (
    "SELECT b.id, g.enterprise_id || '/' || g.site_id || '/' || g.id, g.id, b.boot, b.seq, "
    "b.sent, b.received_at, b.contract, b.prev, b.digest, b.signature, b.n_total "
    "FROM batches b JOIN gateways g ON g.gid = b.gid "
)
_SAMPLES = (
    "SELECT s.batch_id, s.batch_pos, se.device, se.tag, s.ts, s.value, s.text, s.quality, "
    "s.status FROM samples s LEFT JOIN series se ON se.series_id = s.series_id "
    "WHERE s.series_id = ANY(%(series)s) AND s.ts >= %(lo)s AND s.ts <= %(hi)s "
    "AND s.batch_id = ANY(%(ids)s) "
)
_ASIDE = (
    "SELECT a.batch_id, a.batch_pos, se.device, se.tag, a.ts, a.value, a.text, a.quality, "
    "a.status FROM samples_aside a LEFT JOIN series se ON se.series_id = a.series_id "
    "WHERE a.batch_id = ANY(%(ids)s) "
)


@dataclass(frozen=True)
class PeriodBatches:
    """The batches of a period, as rows for evidence.ledger.Batch (role last)."""

    batches: list[tuple[Any, ...]]  # the v2 ones of the period and those around them
    named: list[tuple[Any, ...]]  # further stored batches some prev names (role "span")
    v1: int  # v1 batches in the period
    gids: dict[str, int]  # enterprise/site/gateway -> gid, of every gateway of the enterprise


def site_windows(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    """Each site's [start, end) of local dates from..to inclusive, in UTC (as a report's
    period: kpi/edges.py local_period)."""
    rows = conn.execute(
        "SELECT id, timezone FROM sites WHERE enterprise_id = %s", (enterprise,)
    ).fetchall()
    windows = {}
    for site, timezone in rows:
        tz = ZoneInfo(timezone)
        start = dt.datetime.combine(date_from, dt.time(), tzinfo=tz).astimezone(dt.UTC)
        end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        windows[site] = (start, end.astimezone(dt.UTC))
    return windows


def period_batches(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> PeriodBatches:
    """The batches `ledger check` looks at (module docstring)."""
    windows = site_windows(conn, enterprise=enterprise, date_from=date_from, date_to=date_to)
    sites = sorted(windows)
    gids = {
        name: gid
        for gid, name in conn.execute(
            "SELECT gid, enterprise_id || '/' || site_id || '/' || id FROM gateways "
            "WHERE enterprise_id = %s",
            (enterprise,),
        ).fetchall()
    }
    # no index on sent: one pass over the enterprise's batches (the primary key by gid)
    keys = conn.execute(
        "SELECT b.gid, b.contract, b.boot, b.seq FROM batches b "
        "JOIN gateways g ON g.gid = b.gid "
        "JOIN unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS w(site, lo, hi) "
        "ON w.site = g.site_id "
        "WHERE g.enterprise_id = %s AND b.sent >= w.lo AND b.sent < w.hi",
        (sites, [windows[s][0] for s in sites], [windows[s][1] for s in sites], enterprise),
    ).fetchall()
    v1 = sum(1 for k in keys if k[1] == 1)
    in_period: dict[int, set[tuple[int, int]]] = {}
    for gid, contract, boot, seq in keys:
        if contract == 2:
            in_period.setdefault(gid, set()).add((boot, seq))
    batches: list[tuple[Any, ...]] = []
    named: list[tuple[Any, ...]] = []
    for gid, period in sorted(in_period.items()):
        first, last = min(period), max(period)
        span = conn.execute(
            _BATCH + "WHERE b.gid = %s AND (b.boot, b.seq) BETWEEN (%s, %s) AND (%s, %s) "
            "ORDER BY b.boot, b.seq",
            (gid, *first, *last),
        ).fetchall()
        before = conn.execute(
            _BATCH + "WHERE b.gid = %s AND (b.boot, b.seq) < (%s, %s) "
            "ORDER BY b.boot DESC, b.seq DESC LIMIT 1",
            (gid, *first),
        ).fetchall()
        after = conn.execute(
            _BATCH + "WHERE b.gid = %s AND (b.boot, b.seq) > (%s, %s) "
            "ORDER BY b.boot, b.seq LIMIT 1",
            (gid, *last),
        ).fetchall()
        rows = [(*r, "before") for r in before]
        rows += [(*r, "period" if (r[3], r[4]) in period else "span") for r in span]
        rows += [(*r, "after") for r in after]
        batches += rows
        digests = {bytes(r[9]) for r in rows if r[9] is not None}
        unknown = sorted({bytes(r[8]) for r in rows if r[8] is not None} - digests)
        if unknown:  # the batches_digest index
            named += [
                (*r, "span")
                for r in conn.execute(
                    _BATCH + "WHERE b.gid = %s AND b.digest = ANY(%s)", (gid, unknown)
                ).fetchall()
            ]
    return PeriodBatches(batches, named, v1, gids)


def batch_samples(
    conn: psycopg.Connection,
    batches: Sequence[tuple[Any, ...]],
    *,
    gids: Sequence[int],
    max_past: dt.timedelta | None = DEFAULT_MAX_PAST,
) -> Iterator[tuple[Any, ...]]:
    """The stored samples of `batches` (rows of `period_batches`, of the gateways
    `gids`), sorted by batch_id and batch_pos, one chunk of CHUNK batches at a time
    (module docstring for the ts window; max_past None: no lower bound, as `run
    --max-past off`)."""
    ordered = sorted(batches, key=lambda r: r[0])
    series = [
        r[0]
        for r in conn.execute(
            "SELECT series_id FROM series WHERE gid = ANY(%s)", (list(gids),)
        ).fetchall()
    ]
    for i in range(0, len(ordered), CHUNK):
        chunk = ordered[i : i + CHUNK]
        # a gateway clock far off would widen the window to nothing gained: sent counts
        # only within max_past of arrival
        floor = DEFAULT_MAX_PAST if max_past is None else max_past
        lo = min(max(min(r[5], r[6]), r[6] - floor) for r in chunk) - NEAR
        hi = max(r[6] for r in chunk) + NEAR  # no stored sample is later than max_future
        params = {"series": series, "lo": lo, "hi": hi, "ids": [r[0] for r in chunk]}
        rows = conn.execute(f"{_SAMPLES} UNION ALL {_ASIDE} ORDER BY 1, 2", params).fetchall()
        found = {r[0]: 0 for r in chunk}
        for r in rows:
            found[r[0]] += 1
        short = [b for b in chunk if found[b[0]] < (b[11] or 0)]
        if short:  # samples far from their batch's time (a backfill), or not stored at all
            wide_lo = (
                dt.datetime(1, 1, 2, tzinfo=dt.UTC)
                if max_past is None
                else min(b[6] for b in short) - max_past - NEAR
            )
            ids = {b[0] for b in short}
            again = conn.execute(
                f"{_SAMPLES} ORDER BY 1, 2",
                {"series": series, "lo": wide_lo, "hi": max(b[6] for b in short) + NEAR,
                 "ids": sorted(ids)},
            ).fetchall()  # fmt: skip
            aside = conn.execute(f"{_ASIDE} ORDER BY 1, 2", {"ids": sorted(ids)}).fetchall()
            rows = sorted(
                [r for r in rows if r[0] not in ids] + again + aside, key=lambda r: (r[0], r[1])
            )
        yield from rows


def gateway_keys(conn: psycopg.Connection, gids: dict[str, int]) -> list[tuple[Any, ...]]:
    """Every public key of these gateways (name -> gid), with when it was in effect."""
    name = {gid: n for n, gid in gids.items()}
    rows = conn.execute(
        "SELECT gid, public_key, enrolled_at, retired_at FROM gateway_public_keys "
        "WHERE gid = ANY(%s) ORDER BY gid, enrolled_at",
        (list(gids.values()),),
    ).fetchall()
    return [(name[gid], bytes(key), at, until) for gid, key, at, until in rows]


def declarations(
    conn: psycopg.Connection, batches: Sequence[tuple[Any, ...]], gids: dict[str, int]
) -> list[tuple[Any, ...]]:
    """The declared drops (declared_gaps with their signed status) of each gateway in the
    boots its `batches` (rows of `period_batches`) span: gateway, boot, first and last
    seq, reason, declared_at, when the status arrived, its payload."""
    span: dict[str, tuple[int, int]] = {}
    for r in batches:
        lo, hi = span.get(r[1], (r[3], r[3]))
        span[r[1]] = (min(lo, r[3]), max(hi, r[3]))
    if not span:
        return []
    names = sorted(span)
    rows = conn.execute(
        "SELECT w.name, d.boot, d.first_seq, d.last_seq, d.reason, d.declared_at, "
        "g.received_at, g.payload FROM declared_gaps d "
        "JOIN gateway_declarations g ON g.id = d.declaration_id "
        "JOIN unnest(%s::text[], %s::int[], %s::int[], %s::int[]) AS w(name, gid, lo, hi) "
        "ON w.gid = d.gid AND d.boot BETWEEN w.lo AND w.hi "
        "ORDER BY 1, 2, 3",
        (names, [gids[n] for n in names], [span[n][0] for n in names],
         [span[n][1] for n in names]),
    ).fetchall()  # fmt: skip
    return [(*r[:7], bytes(r[7])) for r in rows]


def orphan_samples(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> list[tuple[Any, ...]]:
    """Samples of the enterprise's gateways whose time falls in the period and whose
    batch_id names no stored batch (in `samples` or `samples_aside`): gateway, batch_id,
    count, first and last ts."""
    windows = site_windows(conn, enterprise=enterprise, date_from=date_from, date_to=date_to)
    found: list[tuple[Any, ...]] = []
    for site, (lo, hi) in sorted(windows.items()):
        found += conn.execute(
            "WITH se AS (SELECT s.series_id, g.enterprise_id || '/' || g.site_id || '/' || g.id "
            "AS name FROM series s JOIN gateways g ON g.gid = s.gid "
            "WHERE g.enterprise_id = %(e)s AND g.site_id = %(site)s), "
            "o AS (SELECT x.series_id, x.batch_id, x.ts FROM samples x "
            "WHERE x.series_id IN (SELECT series_id FROM se) AND x.ts >= %(lo)s "
            "AND x.ts < %(hi)s AND x.batch_id IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = x.batch_id) "
            "UNION ALL SELECT a.series_id, a.batch_id, a.ts FROM samples_aside a "
            "WHERE a.series_id IN (SELECT series_id FROM se) AND a.ts >= %(lo)s "
            "AND a.ts < %(hi)s AND NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = a.batch_id)) "
            "SELECT se.name, o.batch_id, count(*), min(o.ts), max(o.ts) FROM o "
            "JOIN se ON se.series_id = o.series_id GROUP BY 1, 2 ORDER BY 1, 2",
            {"e": enterprise, "site": site, "lo": lo, "hi": hi},
        ).fetchall()
    return found
