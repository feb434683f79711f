"""Fetching a report's measured inputs: `fetch_inputs`, and its fast way from the data
the server derives as samples arrive.

`fetch_inputs` reads the derived data the server keeps (state intervals, hourly counter
sums, hourly sample counts): fast, what `ingest-server report` uses. `fetch_inputs(raw=True)`
rebuilds the same records from the raw samples alone (kpi/raw.py: intervals through the
same run rules, counter deltas with the same wrap rule): what `ingest-server verify` uses
to recompute a report independently of the derived tables. Tag coverage, and how many
of each series' samples its gateway signed, are computed here for both ways. The reads
are repo/measurements.py's and repo/attestation.py's; every figure is computed in
engine.py from these records.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence

import psycopg

from ingest_server.kpi.plant import devices_of, load_registry
from ingest_server.kpi.raw import raw_counters, raw_intervals
from ingest_server.kpi.records import (
    HEARTBEAT_S,
    Anomaly,
    CounterSum,
    DeviceKey,
    GatewayRef,
    Inputs,
    SeriesOrigin,
    Site,
    TagCoverage,
)
from ingest_server.kpi.window import (
    PRORATED_ROLES,
    SeriesRef,
    Slice,
    by_window,
    clip_intervals,
    hour_ceil,
    hour_floor,
    hour_pieces,
    is_counter,
    series_refs,
    site_of,
    state_devices,
)
from ingest_server.repo import attestation, measurements


def fetch_inputs(
    conn: psycopg.Connection,
    enterprise: str,
    date_from: dt.date,
    date_to: dt.date,
    as_of: dt.datetime,
    *,
    heartbeat_s: float = HEARTBEAT_S,
    raw: bool = False,
) -> Inputs:
    """The report's inputs from the derived data; with `raw`, the same records rebuilt
    from `samples` alone (slower: reads every raw sample of the period)."""
    inputs = load_registry(conn, enterprise, date_from, date_to, as_of)
    refs = series_refs(conn, devices_of(inputs))
    sites = site_of(inputs)
    for (start, end), group in by_window(refs, sites).items():
        s = Slice(conn, inputs, group, start, end)
        if raw:
            raw_intervals(s)
            raw_counters(s)
        else:
            _fetch_intervals(s)
            _fetch_counters(s)
            _fetch_anomalies(s)
        _fetch_tags(s, heartbeat_s, raw=raw)
    _fetch_origins(conn, inputs, refs, sites)
    return inputs


def _fetch_origins(
    conn: psycopg.Connection,
    inputs: Inputs,
    refs: Sequence[SeriesRef],
    sites: dict[DeviceKey, Site],
) -> None:
    """Each series' samples in its site's period and how many its gateway signed, and
    the gateways of the report's devices with their contract. The same raw count both
    ways: no derived table keeps it, so verify recomputes it as the report made it."""
    rows = attestation.origin_counts(
        conn,
        series_ids=[r.series_id for r in refs],
        starts=[sites[r.device].start for r in refs],
        ends=[sites[r.device].end for r in refs],
    )
    counts = {sid: (n, signed) for sid, n, signed in rows}
    for r in refs:
        n, signed = counts.get(r.series_id, (0, 0))
        inputs.origins.append(SeriesOrigin(r.device, r.tag, r.role, n, signed))
    gids = sorted({dev[0] for dev in devices_of(inputs)})
    for gid, site, name, contract in attestation.gateway_contracts(conn, gids=gids):
        inputs.gateways[gid] = GatewayRef(gid, site, name, int(contract))


def _fetch_intervals(s: Slice) -> None:
    conn, inputs, group, start, end = s
    devices = state_devices(group)
    if not devices or end <= start:
        for dev in devices:
            inputs.intervals[dev] = []
        return
    keys = sorted(devices)
    rows = measurements.state_intervals_around(conn, devices=keys, start=start, end=end)
    last_seen = measurements.latest_samples(
        conn, series_ids=[sid for k in keys for sid in devices[k]]
    )
    a, b = start.timestamp(), end.timestamp()
    for dev in keys:
        seen = [t for sid in devices[dev] if (t := last_seen.get(sid)) is not None]
        last = max(seen).timestamp() if seen else None
        inputs.intervals[dev] = clip_intervals(rows.get(dev, []), a, b, last)


def _fetch_counters(s: Slice) -> None:
    conn, inputs, group, start, end = s
    counters = [r for r in group if is_counter(r)]
    for r in counters:
        inputs.counters.setdefault((r.device, r.role), CounterSum())
    if not counters or end <= start:
        return
    sids = [r.series_id for r in counters]
    by_sid = {r.series_id: r for r in counters}
    h1, h2 = hour_ceil(start), hour_floor(end)
    sums: dict[int, CounterSum] = defaultdict(CounterSum)
    if h1 < h2:
        hourly = measurements.counter_hourly_sums(conn, series_ids=sids, start=h1, end=h2)
        edges = [(start, h1), (h2, end)]
    else:
        hourly = []
        edges = [(start, end)]
    for sid, q, n, ro, rs in hourly:
        _add(sums[sid], q, n, ro, rs)
    for a, b in edges:
        if b <= a:
            continue
        for sid, q, n, ro, rs in measurements.counter_delta_sums(
            conn, series_ids=sids, start=a, end=b
        ):
            _add(sums[sid], q, n, ro, rs)
    prorated = [sid for sid in sids if by_sid[sid].role in PRORATED_ROLES]
    if prorated:
        straddling = measurements.deltas_across(conn, series_ids=prorated, start=start, end=end)
        for sid, ts, prev_ts, delta in straddling:
            sums[sid].quantity += _straddle(ts, prev_ts, delta, start, end)
    for sid, total in sums.items():
        c = inputs.counters[(by_sid[sid].device, by_sid[sid].role)]
        _add(c, total.quantity, total.deltas, total.rollovers, total.resets)


def _add(c: CounterSum, q: float | None, n: int, ro: int, rs: int) -> None:
    c.quantity += q or 0.0
    c.deltas += int(n)
    c.rollovers += int(ro)
    c.resets += int(rs)


def _straddle(
    ts: dt.datetime, prev_ts: dt.datetime, delta: float, start: dt.datetime, end: dt.datetime
) -> float:
    """The correction for a delta whose reading interval the period cuts: its share
    inside the period, minus what the sum by `ts` already counted."""
    length = (ts - prev_ts).total_seconds()
    inside = (min(ts, end) - max(prev_ts, start)).total_seconds()
    share = delta * max(inside, 0.0) / length if length > 0 else 0.0
    counted = delta if start <= ts < end else 0.0
    return share - counted


def _fetch_tags(s: Slice, heartbeat_s: float, *, raw: bool = False) -> None:
    """Samples received per tag in [start, end), and the heartbeats they cover against
    one per heartbeat expected (docs/kpi.md, "Data coverage"). A whole hour credits up to
    the heartbeats it holds, from its sample count (the hourly rollups, or with `raw`
    the samples); a piece of an hour at the period's edge credits only the time its
    samples cover (from the raw samples whichever the path: each sample vouches for the
    time until the next one, at most one heartbeat; the last one before the piece, from
    the period's own samples only, for what of that reaches into it), so the hour
    holding `as_of` is never credited heartbeats it has not yet had."""
    conn, inputs, group, start, end = s
    refs = [r for r in group if r.role != "device_status"]
    if not refs:
        return
    sids = [r.series_id for r in refs]
    received: dict[int, int] = defaultdict(int)
    counted: dict[int, float] = defaultdict(float)
    whole, edges = hour_pieces(start, end)
    if whole is not None:
        for sid, n, c in measurements.hourly_sample_counts(
            conn, series_ids=sids, start=whole[0], end=whole[1], cap=3600.0 / heartbeat_s, raw=raw
        ):
            received[sid] += int(n)
            counted[sid] += float(c)
    hb = dt.timedelta(seconds=heartbeat_s)
    for a, b in edges:
        for sid, n, covered_s in measurements.sample_cover(
            conn, series_ids=sids, start=a, end=b, since=max(a - hb, start), heartbeat=hb
        ):
            received[sid] += int(n)
            counted[sid] += float(covered_s or 0.0) / heartbeat_s
    expected = max(0.0, (end - start).total_seconds()) / heartbeat_s
    for r in refs:
        sid = r.series_id
        inputs.tags.append(
            TagCoverage(r.device, r.tag, r.role, received[sid], counted[sid], expected)
        )


def _fetch_anomalies(s: Slice) -> None:
    conn, inputs, group, start, end = s
    counters = {r.series_id: r for r in group if is_counter(r)}
    if not counters:
        return
    for sid, ts, flag, pv, v, d in measurements.flagged_deltas(
        conn, series_ids=list(counters), start=start, end=end
    ):
        r = counters[sid]
        inputs.anomalies.append(Anomaly(r.device, r.tag, ts, flag, pv, v, d))
