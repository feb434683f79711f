"""What was measured, read back: series, samples, samples_hourly, state_intervals,
counter_deltas, counter_hourly (the one home of the SQL that reads them; the ingest writer,
ingest/ and derive/, writes them).

The KPI inputs (kpi/fetch.py, kpi/raw.py) and the report's `received` tally
(evidence/received.py) read through these; they keep the arithmetic. A window is
[start, end); devices are (gid, device) pairs.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import psycopg

Device = tuple[int, str]


def series_of(conn: psycopg.Connection, *, devices: Sequence[Device]) -> list[tuple[Any, ...]]:
    """(series_id, gid, device, tag, role, wrap) of every series of the devices, by
    device and tag."""
    if not devices:
        return []
    return conn.execute(
        "SELECT series_id, gid, device, tag, role, wrap FROM series "
        "WHERE (gid, device) IN (SELECT * FROM unnest(%s::int[], %s::text[])) "
        "ORDER BY gid, device, tag",
        ([d[0] for d in devices], [d[1] for d in devices]),
    ).fetchall()


def latest_samples(
    conn: psycopg.Connection, *, series_ids: Sequence[int]
) -> dict[int, dt.datetime | None]:
    """Each series' latest sample time, whatever its time (None: no sample)."""
    return dict(
        conn.execute(
            "SELECT sid, (SELECT max(ts) FROM samples WHERE series_id = sid) "
            "FROM unnest(%s::int[]) AS sid",
            (list(series_ids),),
        ).fetchall()
    )


# -- derived data (kept as samples arrive) -----------------------------------------------


def state_intervals_around(
    conn: psycopg.Connection, *, devices: Sequence[Device], start: dt.datetime, end: dt.datetime
) -> dict[Device, list[tuple[float, float | None, str]]]:
    """Per device, (start, end, state) in epoch seconds of the state interval in force at
    `start` and of those that begin in the window, by start; end None: still open."""
    keys = list(devices)
    rows = conn.execute(
        """
        SELECT d.i, extract(epoch FROM x.start)::float8, extract(epoch FROM x."end")::float8,
               x.state
        FROM unnest(%(gids)s::int[], %(devs)s::text[]) WITH ORDINALITY AS d(gid, device, i)
        CROSS JOIN LATERAL (
            (SELECT s.start, s."end", s.state FROM state_intervals s
             WHERE s.gid = d.gid AND s.device = d.device AND s.start < %(start)s
             ORDER BY s.start DESC LIMIT 1)
            UNION ALL
            (SELECT s.start, s."end", s.state FROM state_intervals s
             WHERE s.gid = d.gid AND s.device = d.device
               AND s.start >= %(start)s AND s.start < %(end)s)
        ) x
        ORDER BY 1, 2, 3
        """,
        {"gids": [k[0] for k in keys], "devs": [k[1] for k in keys], "start": start, "end": end},
    ).fetchall()
    out: dict[Device, list[tuple[float, float | None, str]]] = defaultdict(list)
    for i, a, b, state in rows:
        out[keys[i - 1]].append((a, b, state))
    return dict(out)


def counter_hourly_sums(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(series_id, sum of deltas, deltas, rollovers, resets) over the whole UTC hours
    [start, end), from the hourly sums."""
    return conn.execute(
        "SELECT series_id, sum(delta), sum(n), sum(rollovers), sum(resets) "
        "FROM counter_hourly WHERE series_id = ANY(%s) AND bucket >= %s AND bucket < %s "
        "GROUP BY 1",
        (list(series_ids), start, end),
    ).fetchall()


def counter_delta_sums(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(series_id, sum of deltas, deltas, rollovers, resets) of the deltas read in the
    window, from the deltas themselves."""
    return conn.execute(
        "SELECT series_id, sum(delta), count(*), count(*) FILTER (WHERE flag = 'rollover'), "
        "count(*) FILTER (WHERE flag = 'reset') FROM counter_deltas "
        "WHERE series_id = ANY(%s) AND ts >= %s AND ts < %s GROUP BY 1",
        (list(series_ids), start, end),
    ).fetchall()


def deltas_across(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(series_id, ts, prev_ts, delta) of each delta whose reading interval crosses
    `start` or `end`: the first delta at or after the instant, if it began before it."""
    return conn.execute(
        """
        SELECT DISTINCT d.sid, x.ts, x.prev_ts, x.delta
        FROM unnest(%(sids)s::int[]) AS d(sid)
        CROSS JOIN unnest(ARRAY[%(start)s, %(end)s]::timestamptz[]) AS e(edge)
        CROSS JOIN LATERAL (
            SELECT c.ts, c.prev_ts, c.delta FROM counter_deltas c
            WHERE c.series_id = d.sid AND c.ts >= e.edge ORDER BY c.ts LIMIT 1
        ) x
        WHERE x.prev_ts < e.edge
        """,
        {"sids": list(series_ids), "start": start, "end": end},
    ).fetchall()


def flagged_deltas(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(series_id, ts, flag, prev_value, value, delta) of the rollovers and resets read
    in the window, by series and time."""
    return conn.execute(
        # through the partial index counter_deltas_flagged
        "SELECT series_id, ts, flag, prev_value, value, delta FROM counter_deltas "
        "WHERE series_id = ANY(%s) AND ts >= %s AND ts < %s AND flag IS NOT NULL "
        "ORDER BY 1, 2",
        (list(series_ids), start, end),
    ).fetchall()


# Hourly sample counts per series over whole UTC hours, from the rollups (fast) or from
# the raw samples: each hour credits up to `cap` samples.
_COUNTS_FROM_ROLLUPS = """
    SELECT series_id, sum(n), sum(least(n, %(cap)s)) FROM samples_hourly
    WHERE series_id = ANY(%(sids)s) AND bucket >= %(a)s AND bucket < %(b)s GROUP BY 1
"""
_COUNTS_FROM_SAMPLES = """
    SELECT series_id, sum(n), sum(least(n, %(cap)s)) FROM (
        SELECT series_id, date_trunc('hour', ts, 'UTC'), count(*) AS n FROM samples
        WHERE series_id = ANY(%(sids)s) AND ts >= %(a)s AND ts < %(b)s GROUP BY 1, 2) h
    GROUP BY 1
"""


def hourly_sample_counts(
    conn: psycopg.Connection,
    *,
    series_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    cap: float,
    raw: bool,
) -> list[tuple[Any, ...]]:
    """(series_id, samples, samples counting at most `cap` in each hour) over the whole
    UTC hours [start, end), from samples_hourly, or with `raw` from the samples."""
    sql = _COUNTS_FROM_SAMPLES if raw else _COUNTS_FROM_ROLLUPS
    args = {"cap": cap, "sids": list(series_ids), "a": start, "b": end}
    return conn.execute(sql, args).fetchall()


def sample_cover(
    conn: psycopg.Connection,
    *,
    series_ids: Sequence[int],
    start: dt.datetime,
    end: dt.datetime,
    since: dt.datetime,
    heartbeat: dt.timedelta,
) -> list[tuple[Any, ...]]:
    """(series_id, samples in the window, seconds of it they cover), from the raw samples:
    each sample vouches for the time until the next one, at most one `heartbeat`; those
    from `since` (before `start`) for what of that reaches into the window."""
    return conn.execute(
        """
        SELECT series_id, count(*) FILTER (WHERE ts >= %(a)s),
               sum(greatest(0.0, extract(epoch FROM
                   least(ts + %(hb)s, nxt, %(b)s) - greatest(ts, %(a)s))::float8))
        FROM (SELECT series_id, ts, lead(ts) OVER (PARTITION BY series_id ORDER BY ts) AS nxt
              FROM samples
              WHERE series_id = ANY(%(sids)s) AND ts >= %(lo)s AND ts < %(b)s) x
        GROUP BY 1
        """,
        {"sids": list(series_ids), "a": start, "b": end, "hb": heartbeat, "lo": since},
    ).fetchall()


# -- raw samples (what `verify` recomputes from) ----------------------------------------


def state_samples_around(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(series_id, ts, text; None when of bad quality) of the state and status samples in
    the window, the last of each series before it, and the time (text None) of the
    first of any after it; unordered."""
    return conn.execute(
        """
        (SELECT series_id, ts, CASE WHEN quality < 2 THEN text END FROM samples
         WHERE series_id = ANY(%(sids)s) AND ts >= %(start)s AND ts < %(end)s)
        UNION ALL
        (SELECT DISTINCT ON (series_id) series_id, ts, CASE WHEN quality < 2 THEN text END
         FROM samples WHERE series_id = ANY(%(sids)s) AND ts < %(start)s
         ORDER BY series_id, ts DESC)
        UNION ALL
        (SELECT series_id, ts, NULL FROM samples
         WHERE series_id = ANY(%(sids)s) AND ts >= %(end)s ORDER BY ts LIMIT 1)
        """,
        {"sids": list(series_ids), "start": start, "end": end},
    ).fetchall()


def counter_readings_around(
    conn: psycopg.Connection, *, series_id: int, start: dt.datetime, end: dt.datetime
) -> list[tuple[Any, ...]]:
    """(ts, value) of a counter's good readings in the window, with the last before it
    and the first after it, by time."""
    return conn.execute(
        """
        (SELECT ts, value FROM samples WHERE series_id = %(sid)s AND ts < %(start)s
           AND value IS NOT NULL AND quality < 2 ORDER BY ts DESC LIMIT 1)
        UNION ALL
        (SELECT ts, value FROM samples WHERE series_id = %(sid)s
           AND ts >= %(start)s AND ts < %(end)s AND value IS NOT NULL AND quality < 2)
        UNION ALL
        (SELECT ts, value FROM samples WHERE series_id = %(sid)s AND ts >= %(end)s
           AND value IS NOT NULL AND quality < 2 ORDER BY ts LIMIT 1)
        ORDER BY 1
        """,
        {"sid": series_id, "start": start, "end": end},
    ).fetchall()


# -- the received tally (evidence/received.py) ------------------------------------------

# One row's contribution to the tally: the first 60 bits of the MD5 of its key and
# content, as an integer; the tally is their sum (order-independent, so one SQL
# aggregate). It is a diagnosis, not a proof: the signature and the recomputation are
# the proof; the tally only says why a recomputation differs.
_ROW_HASH = (
    "('x' || substr(md5(format('%%s|%%s|%%s|%%s|%%s|%%s', s.series_id, "
    "(extract(epoch FROM s.ts) * 1000000)::bigint, s.value, s.text, s.quality, s.status)), "
    "1, 15))::bit(60)::bigint"
)


def sample_tally(
    conn: psycopg.Connection, *, series_ids: Sequence[int], start: dt.datetime, end: dt.datetime
) -> tuple[int, str]:
    """How many samples of the series the window holds, and their checksum (decimal)."""
    row = conn.execute(
        f"SELECT count(*), coalesce(sum({_ROW_HASH}), 0)::text FROM samples s "
        "WHERE s.series_id = ANY(%s) AND s.ts >= %s AND s.ts < %s",
        (list(series_ids), start, end),
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def tally_since(
    conn: psycopg.Connection,
    *,
    series_ids: Sequence[int],
    lasts: Sequence[dt.datetime | None],
    start: dt.datetime,
    end: dt.datetime,
) -> tuple[int, str, int, int, int]:
    """The samples now against each series' latest sample at an earlier time (`lasts`,
    in the order of `series_ids`; None: it had none): (samples in the window no later
    than their series' latest, their checksum, samples in the window later than it,
    series whose first sample after the window came later, series whose last sample
    before the window came later)."""
    row = conn.execute(
        f"""
        WITH w AS (SELECT * FROM unnest(%(sids)s::int[], %(lasts)s::timestamptz[]) AS w(sid, last))
        SELECT
          (SELECT count(*) FILTER (WHERE s.ts <= w.last)
            FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s),
          (SELECT coalesce(sum({_ROW_HASH}) FILTER (WHERE s.ts <= w.last), 0)::text
            FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s),
          (SELECT count(*) FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s AND (w.last IS NULL OR s.ts > w.last)),
          -- the first reading after the period (it closes the last state and shares out
          -- the last counter interval) was not there yet
          (SELECT count(*) FROM w WHERE (w.last IS NULL OR w.last < %(end)s)
            AND EXISTS (SELECT 1 FROM samples s WHERE s.series_id = w.sid AND s.ts >= %(end)s)),
          -- nor the last one before it
          (SELECT count(*) FROM w WHERE (w.last IS NULL OR w.last < %(start)s)
            AND EXISTS (SELECT 1 FROM samples s WHERE s.series_id = w.sid AND s.ts < %(start)s
                        AND (w.last IS NULL OR s.ts > w.last)))
        """,
        {"sids": list(series_ids), "lasts": list(lasts), "start": start, "end": end},
    ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), int(row[2]), int(row[3]), int(row[4])
