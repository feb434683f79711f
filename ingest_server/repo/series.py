"""What was measured, as the console charts it: a machine's state timeline, one tag
downsampled, counters summed per hour or local day, and the series behind a machine's
tags and the meters (the one home of these reads; the ingest writer, ingest/ and derive/,
writes the tables). A window is [start, end).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ingest_server.repo.registry import CARRIER_ROLES

Bucket = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class SeriesRef:
    series_id: int
    role: str | None
    unit: str | None


def state_timeline(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dict[str, Any]]:
    """The state intervals ({start, end, state}) of a machine's device over the window,
    clipped to it (an open interval ends now), those left empty dropped."""
    rows = conn.execute(
        """
        SELECT greatest(si.start, %(a)s), least(coalesce(si."end", now()), %(b)s), si.state
        FROM equipment e
        JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
             AND g.id = e.gateway_id
        JOIN state_intervals si ON si.gid = g.gid AND si.device = e.device
        WHERE e.enterprise_id = %(e)s AND e.id = %(id)s
          AND si.start < %(b)s AND coalesce(si."end", 'infinity') > %(a)s
        ORDER BY si.start
        """,
        {"a": start, "b": end, "e": enterprise, "id": equipment},
    ).fetchall()
    return [{"start": x, "end": y, "state": s} for x, y, s in rows if y > x]


def find_series(
    conn: psycopg.Connection, *, enterprise: str, device: str, tag: str
) -> SeriesRef | None:
    """The series of a device's tag among the enterprise's gateways; None if none."""
    row = conn.execute(
        """
        SELECT se.series_id, se.role, se.unit FROM series se
        JOIN gateways g ON g.gid = se.gid
        WHERE g.enterprise_id = %s AND se.device = %s AND se.tag = %s
        """,
        (enterprise, device, tag),
    ).fetchone()
    return None if row is None else SeriesRef(*row)


def downsampled(
    conn: psycopg.Connection,
    *,
    series_id: int,
    start: dt.datetime,
    end: dt.datetime,
    points: int,
) -> tuple[dt.timedelta, list[dict[str, Any]]]:
    """(the step, its buckets {t, avg, min, max, samples}) of a series over the window in
    at most `points` buckets of at least a second: from the hourly rollups, in whole
    hours, when a bucket is an hour or longer, else from the samples."""
    step = max((end - start) / points, dt.timedelta(seconds=1))
    if step >= dt.timedelta(hours=1):
        step = dt.timedelta(hours=round(step / dt.timedelta(hours=1)))
        query = """
            SELECT date_bin(%(step)s, bucket, %(a)s) AS t, sum(v_sum) / nullif(sum(n), 0),
                   min(v_min), max(v_max), sum(n)::bigint
            FROM samples_hourly WHERE series_id = %(sid)s AND bucket >= %(a)s
              AND bucket < %(b)s GROUP BY 1 ORDER BY 1
        """
    else:
        query = """
            SELECT date_bin(%(step)s, ts, %(a)s) AS t, avg(value), min(value), max(value),
                   count(*)
            FROM samples WHERE series_id = %(sid)s AND ts >= %(a)s AND ts < %(b)s
            GROUP BY 1 ORDER BY 1
        """
    rows = conn.execute(query, {"step": step, "a": start, "b": end, "sid": series_id})
    return step, [
        {"t": t, "avg": avg, "min": lo, "max": hi, "samples": n} for t, avg, lo, hi, n in rows
    ]


def counter_points(
    conn: psycopg.Connection,
    *,
    series_id: int,
    timezone: str,
    start: dt.datetime,
    end: dt.datetime,
    bucket: Bucket,
) -> list[dict[str, Any]]:
    """A counter's increase per hour or local day ({t, quantity, readings, rollovers,
    resets}), from the hourly sums of its deltas."""
    query = sql.SQL(
        "SELECT {} AS t, sum(delta), sum(n)::bigint, sum(rollovers)::int, "
        "sum(resets)::int FROM counter_hourly WHERE series_id = %(sid)s "
        "AND bucket >= %(a)s AND bucket < %(b)s GROUP BY 1 ORDER BY 1"
    ).format(sql.SQL("bucket" if bucket == "hour" else "date_trunc('day', bucket, %(tz)s)"))
    rows = conn.execute(query, {"sid": series_id, "a": start, "b": end, "tz": timezone})
    return [
        {"t": t, "quantity": q, "readings": n, "rollovers": ro, "resets": rs}
        for t, q, n, ro, rs in rows
    ]


def equipment_tags(
    conn: psycopg.Connection, *, enterprise: str, equipment: str
) -> list[dict[str, Any]]:
    """Every tag ({series_id, tag, role, unit, timezone of its site}) of a machine's
    device, by tag."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT se.series_id, se.tag, se.role, se.unit, s.timezone
            FROM equipment e
            JOIN sites s ON s.enterprise_id = e.enterprise_id AND s.id = e.site_id
            JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
                 AND g.id = e.gateway_id
            JOIN series se ON se.gid = g.gid AND se.device = e.device
            WHERE e.enterprise_id = %s AND e.id = %s ORDER BY se.tag
            """,
            (enterprise, equipment),
        ).fetchall()


def power_of_covering_meters(
    conn: psycopg.Connection, *, enterprise: str, equipment: str
) -> list[dict[str, Any]]:
    """The power_kw tags ({device, tag, unit, meter, meter_name, meter_name_en, covers})
    of the meters that cover a machine, the narrowest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT m.device, se.tag, se.unit, m.id AS meter, m.name AS meter_name,
                   m.name_en AS meter_name_en, m.covers
            FROM meters m
            JOIN gateways g ON g.enterprise_id = m.enterprise_id AND g.site_id = m.site_id
                 AND g.id = m.gateway_id
            JOIN series se ON se.gid = g.gid AND se.device = m.device
                 AND se.role = 'power_kw'
            WHERE m.enterprise_id = %s AND %s = ANY(m.covers)
            ORDER BY cardinality(m.covers), m.id
            """,
            (enterprise, equipment),
        ).fetchall()


def meters_with_series(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """The enterprise's meters by carrier and id ({id, name, name_en, site, carrier, unit,
    parent, top_level, series_id, timezone}), each with the series of its carrier's
    counter role on its device (None: not measured) and its site's time zone."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT m.id, m.name, m.name_en, m.site_id AS site, m.carrier, m.unit,
                   m.parent_id AS parent, m.parent_id IS NULL AS top_level,
                   se.series_id, s.timezone
            FROM meters m
            JOIN sites s ON s.enterprise_id = m.enterprise_id AND s.id = m.site_id
            LEFT JOIN gateways g ON g.enterprise_id = m.enterprise_id
                 AND g.site_id = m.site_id AND g.id = m.gateway_id
            LEFT JOIN series se ON se.gid = g.gid AND se.device = m.device
                 AND se.role = (%s::jsonb ->> m.carrier)
            WHERE m.enterprise_id = %s ORDER BY m.carrier, m.id
            """,
            (json.dumps(CARRIER_ROLES), enterprise),
        ).fetchall()
