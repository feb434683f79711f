"""Derived data kept as samples arrive: state intervals and counter deltas.

Both are pure functions of the stored samples. After each commit the server recomputes
only the stretch that the new samples can have changed, from the samples in the
database, so the result is the same whatever the order or repetition of arrival (a
backlog replayed after an outage, a batch delivered twice, two servers sharing the load).

State intervals: the machine_state tag of a device overlaid with its device_status tag
(`_status`): OFFLINE while the device is offline, UNKNOWN while its state is bad or not
yet known, else the canonical state. Maximal runs of one value are intervals. The agent
re-sends every value at least every heartbeat (300 s by default), so two samples of a
device more than GAP_AFTER apart mean nothing was heard in between (a dead gateway, a
lost outbox): NO_DATA from the last sample before the silence to the first after it
(not while the device is reported offline: the agent sends nothing then, by design).
`hold_until` states that rule once (derive/runs.py, with the other pure run rules); the KPIs
apply it too, to the silence at the end of a period (kpi/edges.py, kpi/raw.py).

Counter deltas: one row per good counter reading after the first, the increase since
the previous one. A fall is a rollover when the series has a wrap value (unsigned
Modbus counter) and the fall is more than half of it, else a reset (the counter restarted
from zero, so the increase is the new reading); both are flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import psycopg

# the pure run rules live in derive/runs.py (the KPIs and the offline verifier read them
# without a database driver); these names stay importable from here
from ingest_server.derive.runs import (
    COUNTER_ROLE_NAMES,
    GAP_AFTER,
    NO_DATA,
    OFFLINE,
    UNKNOWN,
    Event,
    effective_state,
    hold_until,
    runs,
)

__all__ = [
    "COUNTER_DELTAS_SQL", "COUNTER_ROLE_NAMES", "GAP_AFTER", "NO_DATA", "OFFLINE", "UNKNOWN",
    "DeviceSeries", "Event", "device_series", "effective_state", "hold_until",
    "refresh_intervals", "runs",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeviceSeries:
    gid: int
    device: str
    state_sid: int | None
    status_sid: int | None


def device_series(
    conn: psycopg.Connection, devices: Iterable[tuple[int, str]]
) -> list[DeviceSeries]:
    keys = sorted(set(devices))
    if not keys:
        return []
    rows = conn.execute(
        """
        SELECT gid, device,
               min(series_id) FILTER (WHERE role = 'machine_state'),
               min(series_id) FILTER (WHERE role = 'device_status')
        FROM series
        WHERE (gid, device) IN (SELECT * FROM unnest(%s::int[], %s::text[]))
        GROUP BY gid, device
        """,
        ([k[0] for k in keys], [k[1] for k in keys]),
    ).fetchall()
    # a device without a machine state (a meter) has no state intervals: its offline
    # spells show in its samples' coverage
    return [DeviceSeries(*r) for r in rows if r[2] is not None]


def _first_after(conn: psycopg.Connection, sid: int, t: datetime) -> datetime | None:
    row = conn.execute(
        "SELECT min(ts) FROM samples WHERE series_id = %s AND ts > %s", (sid, t)
    ).fetchone()
    return None if row is None else row[0]


def _last_before(conn: psycopg.Connection, sid: int | None, t: datetime) -> tuple[bool, str | None]:
    if sid is None:
        return False, None
    row = conn.execute(
        "SELECT text, quality FROM samples WHERE series_id = %s AND ts < %s "
        "ORDER BY ts DESC LIMIT 1",
        (sid, t),
    ).fetchone()
    if row is None:
        return False, None
    return True, (row[0] if row[1] < 2 else None)


def refresh_intervals(
    conn: psycopg.Connection,
    dev: DeviceSeries,
    new: dict[int, tuple[datetime, datetime]],
) -> int:
    """Recompute the intervals of one device that new samples can have changed.

    `new` maps series id -> (first, last) time of the samples just stored (or of the
    whole series when its role just became known). Returns intervals written.
    """
    spans = {sid: span for sid, span in new.items() if sid in (dev.state_sid, dev.status_sid)}
    if not spans:
        return 0
    a = min(span[0] for span in spans.values())
    # E is unchanged before `a`: start at the interval in force just before it.
    row = conn.execute(
        "SELECT max(start) FROM state_intervals WHERE gid = %s AND device = %s AND start < %s",
        (dev.gid, dev.device, a),
    ).fetchone()
    lo: datetime | None = None if row is None else row[0]
    # After the last new sample of a series, its value is unchanged from its next sample on.
    hi: datetime | None = a
    for sid, (_first, last) in spans.items():
        nxt = _first_after(conn, sid, last)
        if nxt is None:
            hi = None
            break
        hi = max(hi, nxt) if hi is not None else nxt
    hi2: datetime | None = None
    if hi is not None:
        row = conn.execute(
            "SELECT min(start) FROM state_intervals WHERE gid = %s AND device = %s AND start > %s",
            (dev.gid, dev.device, hi),
        ).fetchone()
        hi2 = None if row is None else row[0]

    state: str | None = None
    status: str | None = None
    if lo is not None:
        _, state = _last_before(conn, dev.state_sid, lo)
        _, status = _last_before(conn, dev.status_sid, lo)
    sids = [s for s in (dev.state_sid, dev.status_sid) if s is not None]
    rows = conn.execute(
        """
        SELECT ts, series_id, CASE WHEN quality < 2 THEN text END
        FROM samples
        WHERE series_id = ANY(%s)
          AND ts >= coalesce(%s, '-infinity'::timestamptz)
          AND ts < coalesce(%s, 'infinity'::timestamptz)
        ORDER BY ts, series_id
        """,
        (sids, lo, hi2),
    ).fetchall()
    events = [Event(ts, "state" if sid == dev.state_sid else "status", v) for ts, sid, v in rows]
    result = runs(events, state=state, status=status)
    if lo is not None and (not result or result[0][0] != lo):
        # no sample at lo itself: the run in force continues from lo
        result.insert(0, (lo, effective_state(state, status)))
        if len(result) > 1 and result[1][1] == result[0][1]:
            del result[1]
    conn.execute(
        "DELETE FROM state_intervals WHERE gid = %s AND device = %s "
        "AND start >= coalesce(%s, '-infinity'::timestamptz) "
        "AND start < coalesce(%s, 'infinity'::timestamptz)",
        (dev.gid, dev.device, lo, hi2),
    )
    if not result:
        return 0
    ends: list[datetime | None] = [r[0] for r in result[1:]]
    ends.append(hi2)
    with conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO state_intervals (gid, device, start, "end", state) '
            "VALUES (%s, %s, %s, %s, %s)",
            [
                (dev.gid, dev.device, start, end, value)
                for (start, value), end in zip(result, ends, strict=True)
            ],
        )
    return len(result)


# Counter deltas, set-based: `touched_counters(series_id, a, b)` is a temporary table
# filled by the caller with the span of new samples per counter series.
COUNTER_DELTAS_SQL = (
    """
    CREATE TEMP TABLE IF NOT EXISTS cd_bounds (
        series_id integer PRIMARY KEY, wrap double precision,
        lo timestamptz, hi timestamptz) ON COMMIT DELETE ROWS
    """,
    """
    INSERT INTO cd_bounds
    SELECT t.series_id, se.wrap,
           (SELECT max(s.ts) FROM samples s WHERE s.series_id = t.series_id
              AND s.ts < t.a AND s.value IS NOT NULL AND s.quality < 2),
           (SELECT min(s.ts) FROM samples s WHERE s.series_id = t.series_id
              AND s.ts > t.b AND s.value IS NOT NULL AND s.quality < 2)
    FROM touched_counters t JOIN series se USING (series_id)
    """,
    """
    DELETE FROM counter_deltas d USING cd_bounds b
    WHERE d.series_id = b.series_id
      AND d.ts > coalesce(b.lo, '-infinity'::timestamptz)
      AND d.ts <= coalesce(b.hi, 'infinity'::timestamptz)
    """,
    """
    INSERT INTO counter_deltas (series_id, ts, prev_ts, prev_value, value, delta, flag)
    SELECT series_id, ts, prev_ts, prev_value, value,
           CASE WHEN value >= prev_value THEN value - prev_value
                WHEN wrap IS NOT NULL AND prev_value - value > wrap / 2
                     THEN value + wrap - prev_value
                ELSE value END,
           CASE WHEN value >= prev_value THEN NULL
                WHEN wrap IS NOT NULL AND prev_value - value > wrap / 2 THEN 'rollover'
                ELSE 'reset' END
    FROM (
        SELECT b.series_id, s.ts, s.value, b.wrap, b.lo,
               lag(s.ts) OVER w AS prev_ts, lag(s.value) OVER w AS prev_value
        FROM cd_bounds b
        -- per series through the (series_id, ts) index, not a join over all samples
        CROSS JOIN LATERAL (
            SELECT x.ts, x.value FROM samples x
            WHERE x.series_id = b.series_id
              AND x.ts >= coalesce(b.lo, '-infinity'::timestamptz)
              AND x.ts <= coalesce(b.hi, 'infinity'::timestamptz)
              AND x.value IS NOT NULL AND x.quality < 2
            OFFSET 0  -- keeps the planner from flattening this into a scan of all samples
        ) s
        WINDOW w AS (PARTITION BY b.series_id ORDER BY s.ts)
    ) p
    WHERE prev_ts IS NOT NULL
    """,
    # hourly sums of the deltas in the hours the recomputed stretch touches
    """
    DELETE FROM counter_hourly h USING cd_bounds b
    WHERE h.series_id = b.series_id
      AND h.bucket >= coalesce(date_trunc('hour', b.lo, 'UTC'), '-infinity'::timestamptz)
      AND h.bucket <= coalesce(b.hi, 'infinity'::timestamptz)
    """,
    """
    INSERT INTO counter_hourly (series_id, bucket, n, delta, rollovers, resets)
    SELECT b.series_id, date_trunc('hour', d.ts, 'UTC'), count(*), sum(d.delta),
           count(*) FILTER (WHERE d.flag = 'rollover'), count(*) FILTER (WHERE d.flag = 'reset')
    FROM cd_bounds b
    CROSS JOIN LATERAL (
        SELECT x.ts, x.delta, x.flag FROM counter_deltas x
        WHERE x.series_id = b.series_id
          AND x.ts >= coalesce(date_trunc('hour', b.lo, 'UTC'), '-infinity'::timestamptz)
          AND x.ts < coalesce(date_trunc('hour', b.hi, 'UTC') + interval '1 hour',
                              'infinity'::timestamptz)
        OFFSET 0
    ) d
    GROUP BY 1, 2
    """,
)
