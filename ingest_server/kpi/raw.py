"""The independent way to a report's inputs: state intervals and counter quantities
rebuilt from the raw samples alone, what `ingest-server verify` recomputes a report from
(`fetch_inputs(raw=True)`, kpi/fetch.py).

Intervals go through the same run rules as at ingest (derive.intervals.runs and its
NO_DATA rule, hold_until); counter deltas through the same wrap rule (`counter_delta`,
the rule of derive.COUNTER_DELTAS_SQL). No derived table is read.
"""

from __future__ import annotations

from itertools import pairwise

from ingest_server.kpi.columnar import state_intervals
from ingest_server.kpi.records import Anomaly, CounterSum
from ingest_server.kpi.window import (
    PRORATED_ROLES,
    Slice,
    is_counter,
    state_devices,
)
from ingest_server.repo import measurements


def raw_intervals(s: Slice) -> None:
    """The state intervals of the group's devices in [start, end), from their samples."""
    conn, inputs, group, start, end = s
    for dev, sids in sorted(state_devices(group).items()):
        kinds = {r.series_id: r.role for r in group if r.series_id in sids}
        rows = measurements.state_samples_around(conn, series_ids=sids, start=start, end=end)
        after = [ts for _, ts, _ in rows if ts >= end]
        # the run rules over these rows are the offline verifier's too (kpi/columnar.py)
        inputs.intervals[dev] = state_intervals(
            rows, kinds, min(after) if after else None, start, end
        )


def raw_counters(s: Slice) -> None:
    """The counter sums and anomalies of the group's counters in [start, end), from
    their readings."""
    conn, inputs, group, start, end = s
    for r in group:
        if not is_counter(r):
            continue
        c = inputs.counters.setdefault((r.device, r.role), CounterSum())
        if end <= start:
            continue
        rows = measurements.counter_readings_around(
            conn, series_id=r.series_id, start=start, end=end
        )
        for (t0, v0), (t1, v1) in pairwise(rows):
            delta, flag = counter_delta(v0, v1, r.wrap)
            if r.role in PRORATED_ROLES:
                length = (t1 - t0).total_seconds()
                inside = (min(t1, end) - max(t0, start)).total_seconds()
                if inside > 0 and length > 0:
                    c.quantity += delta * inside / length
            elif start <= t1 < end:
                c.quantity += delta
            if start <= t1 < end:
                c.deltas += 1
                if flag == "rollover":
                    c.rollovers += 1
                elif flag == "reset":
                    c.resets += 1
                if flag is not None:
                    inputs.anomalies.append(Anomaly(r.device, r.tag, t1, flag, v0, v1, delta))


def counter_delta(prev: float, value: float, wrap: float | None) -> tuple[float, str | None]:
    """The increase from prev to value; the rule of derive.COUNTER_DELTAS_SQL."""
    if value >= prev:
        return value - prev, None
    if wrap is not None and prev - value > wrap / 2:
        return value + wrap - prev, "rollover"
    return value, "reset"
