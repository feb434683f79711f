"""The API's data views: the registry, live states, timelines, series, gateways, data
quality, KPIs, factor tables, and the declared attributes an enterprise may edit.

    GET   /api/v1/enterprises                                  the caller's enterprises
    GET   /api/v1/enterprises/{e}                              sites, processes
    GET   /api/v1/enterprises/{e}/equipment                    declared attributes + live state
    PATCH /api/v1/enterprises/{e}/equipment/{id}               edit declared attributes (audited)
    GET   /api/v1/enterprises/{e}/equipment/{id}/audit         who changed what, when
    GET   /api/v1/enterprises/{e}/equipment/{id}/timeline      state intervals (Gantt)
    GET   /api/v1/enterprises/{e}/equipment/{id}/counters      its tags; parts, kWh per hour/day
    GET   /api/v1/enterprises/{e}/series                       one tag, downsampled
    GET   /api/v1/enterprises/{e}/energy                       consumption per meter per hour/day
    GET   /api/v1/enterprises/{e}/gateways                     status, boot, agent
    GET   /api/v1/enterprises/{e}/dead-letters                 refused messages of its gateways
    GET   /api/v1/enterprises/{e}/kpis                         every KPI of a period (unsigned)
    GET   /api/v1/enterprises/{e}/trend                        KPIs per day / week / month
    GET   /api/v1/factors                                      coefficient and factor tables

Reads need the enterprise among the caller's (admin: all); edits need an enterprise or
admin account (ingest_server/api/auth.py). A later `registry import` of a file that
says otherwise sets the attributes back, and the audit trail shows the edit it undid.

Every date and time parameter of the API (`Day`, `Instant`, here and in api.py) lies in
1970-01-01 .. 2999-12-31 (stated in the OpenAPI schema); anything else is a 422 that
names the parameter and the range, never an overflow deep in a query. A report's period
is at most five years (`check_period`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from psycopg import sql
from psycopg_pool import ConnectionPool
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ingest_server.api.auth import ApiError, Caller, readable, writable
from ingest_server.derive.intervals import COUNTER_ROLE_NAMES
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report
from ingest_server.kpi.engine import Parameters
from ingest_server.reference.factors import EMISSION_TABLES, ENERGY_TABLES
from ingest_server.repo.registry import CARRIER_ROLES

router = APIRouter(prefix="/api/v1")
MAX_RANGE = dt.timedelta(days=92)

# No sample is older than the Unix epoch (contract v1's times start there); the last
# year is far beyond any data and far enough from the calendar's end (9999) that every
# instant the server derives from a date (the next day, local midnight in any time zone,
# a month's end, a default start a day earlier) exists.
FIRST_DAY, LAST_DAY = dt.date(1970, 1, 1), dt.date(2999, 12, 31)
FIRST_INSTANT = dt.datetime.combine(FIRST_DAY, dt.time(), dt.UTC)
LAST_INSTANT = dt.datetime.combine(LAST_DAY, dt.time.max, dt.UTC)
DAYS = f"a date from {FIRST_DAY} to {LAST_DAY}"
INSTANTS = f"a time from {FIRST_DAY}T00:00:00Z to {LAST_DAY}T23:59:59Z, with its time zone"


def _day(d: dt.date) -> dt.date:
    if not FIRST_DAY <= d <= LAST_DAY:
        raise ValueError(f"{d.isoformat()} is out of range: give {DAYS}")
    return d


def _instant(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t.isoformat()} has no time zone: give {INSTANTS} (Z or +08:00)")
    # aware datetimes compare without converting, so 0001-01-01T00:00+14:00 cannot overflow
    if not FIRST_INSTANT <= t <= LAST_INSTANT:
        raise ValueError(f"{t.isoformat()} is out of range: give {INSTANTS}")
    return t


# the API's date and time parameters: FastAPI answers 422 naming the parameter, and the
# OpenAPI schema (/docs) states the range
Day = Annotated[dt.date, AfterValidator(_day), Field(description=DAYS)]
Instant = Annotated[dt.datetime, AfterValidator(_instant), Field(description=INSTANTS)]


# A report's period (and its baseline): a five-year plan is the longest period a claim
# covers, and the KPI engine's cost grows faster than the period (on the test plant 0.2 s
# for a year, 6 s for ten, hours for a thousand): longer is refused, not computed.
MAX_PERIOD_DAYS = 1827


def check_period(
    date_from: dt.date,
    date_to: dt.date,
    baseline_from: dt.date | None = None,
    baseline_to: dt.date | None = None,
    *,
    longest: int | None = MAX_PERIOD_DAYS,
) -> None:
    """A period and its baseline in order and, for a report, at most `longest` days each
    (the dates are `Day`s already)."""
    if date_to < date_from:
        raise ApiError(
            422, "invalid_parameter",
            f"to: {date_to} is before from ({date_from}): the period ends before it starts",
        )  # fmt: skip
    for name, a, b in (("to", date_from, date_to), ("baseline_to", baseline_from, baseline_to)):
        if longest is not None and a is not None and b is not None and (b - a).days >= longest:
            raise ApiError(
                422, "invalid_parameter",
                f"{name}: the period is {(b - a).days + 1} days; at most {longest} (five "
                "years): ask for a shorter period, or several",
            )  # fmt: skip
    if (baseline_from is None) != (baseline_to is None):
        raise ApiError(422, "invalid_parameter", "baseline_to: give both or neither")
    if baseline_from is not None and baseline_to is not None:
        if baseline_to < baseline_from:
            raise ApiError(
                422, "invalid_parameter",
                f"baseline_to: {baseline_to} is before baseline_from ({baseline_from})",
            )  # fmt: skip
        if baseline_from > date_from:
            raise ApiError(
                422, "invalid_parameter",
                f"baseline_from: {baseline_from} is after from ({date_from}): the baseline "
                "period must start before the reported period",
            )  # fmt: skip


def _pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


Pool = Annotated[ConnectionPool, Depends(_pool)]


def _rows(cur: psycopg.Cursor[Any]) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _range(
    start: dt.datetime | None, end: dt.datetime | None, limit: dt.timedelta = MAX_RANGE
) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the `Instant`s given, by default the day before end (or now)."""
    end = end or dt.datetime.now(dt.UTC)
    start = start or max(end - dt.timedelta(days=1), FIRST_INSTANT)
    if end <= start:
        raise ApiError(
            422, "invalid_parameter",
            f"end: {end.isoformat()} must be after start ({start.isoformat()})",
        )  # fmt: skip
    if end - start > limit:
        raise ApiError(422, "invalid_parameter", f"end: at most {limit.days} days after start")
    return start, end


def _enterprise_exists(conn: psycopg.Connection, enterprise: str) -> None:
    if conn.execute("SELECT 1 FROM enterprises WHERE id = %s", (enterprise,)).fetchone() is None:
        raise ApiError(404, "not_found", f"no enterprise {enterprise!r}")


def _equipment_row(conn: psycopg.Connection, enterprise: str, eid: str) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT * FROM equipment WHERE enterprise_id = %s AND id = %s", (enterprise, eid)
    )
    rows = _rows(cur)
    if not rows:
        raise ApiError(404, "not_found", f"enterprise {enterprise!r} has no equipment {eid!r}")
    return rows[0]


@router.get("/enterprises")
def enterprises(caller: Caller, pool: Pool) -> list[dict[str, Any]]:
    with pool.connection() as conn:
        rows = _rows(
            conn.execute(
                "SELECT id, name, name_en, credit_code, industry FROM enterprises ORDER BY id"
            )
        )
    return [r for r in rows if caller.may_read(r["id"])]


@router.get("/enterprises/{enterprise}")
def enterprise(caller: Caller, pool: Pool, enterprise: str) -> dict[str, Any]:
    readable(caller, enterprise)
    with pool.connection() as conn:
        rows = _rows(
            conn.execute(
                "SELECT id, name, name_en, credit_code, industry FROM enterprises WHERE id = %s",
                (enterprise,),
            )
        )
        if not rows:
            raise ApiError(404, "not_found", f"no enterprise {enterprise!r}")
        sites = _rows(
            conn.execute(
                "SELECT s.id, s.name, s.name_en, s.timezone, s.grid_region, "
                "c.definition AS calendar FROM sites s LEFT JOIN shift_calendars c "
                "ON c.enterprise_id = s.enterprise_id AND c.id = s.calendar_id "
                "WHERE s.enterprise_id = %s ORDER BY s.id",
                (enterprise,),
            )
        )
        processes = _rows(
            conn.execute(
                "SELECT id, name, name_en, key_process FROM processes WHERE enterprise_id = %s "
                "ORDER BY id",
                (enterprise,),
            )
        )
    return {**rows[0], "sites": sites, "processes": processes}


@router.get("/enterprises/{enterprise}/equipment")
def equipment(caller: Caller, pool: Pool, enterprise: str) -> list[dict[str, Any]]:
    """Declared attributes beside the live state: the latest state interval of its
    device, since when, and whether its gateway is online."""
    readable(caller, enterprise)
    with pool.connection() as conn:
        _enterprise_exists(conn, enterprise)
        return _rows(
            conn.execute(
                """
                SELECT e.id, e.name, e.name_en, e.site_id AS site, e.process_id AS process,
                       coalesce(p.key_process, false) AS key_process, e.nc, e.production,
                       e.interface, e.ideal_cycle_time_s, e.product, e.vendor, e.model,
                       e.serial, e.year, e.gateway_id AS gateway, e.device,
                       g.online AS gateway_online, live.state, live.start AS state_since
                FROM equipment e
                LEFT JOIN processes p ON p.enterprise_id = e.enterprise_id
                     AND p.id = e.process_id
                LEFT JOIN gateways g ON g.enterprise_id = e.enterprise_id
                     AND g.site_id = e.site_id AND g.id = e.gateway_id
                LEFT JOIN LATERAL (
                    SELECT si.state, si.start FROM state_intervals si
                    WHERE si.gid = g.gid AND si.device = e.device
                    ORDER BY si.start DESC LIMIT 1
                ) live ON true
                WHERE e.enterprise_id = %s ORDER BY e.id
                """,
                (enterprise,),
            )
        )


class EquipmentPatch(BaseModel):
    """Declared attributes an enterprise may correct; omitted fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1)
    name_en: str | None = None
    process: str | None = None
    nc: bool | None = None
    production: bool | None = None
    ideal_cycle_time_s: float | None = Field(default=None, gt=0)
    product: str | None = None
    note: str = Field(default="", description="why: kept in the audit trail")


_COLUMNS = {
    "name": "name",
    "name_en": "name_en",
    "process": "process_id",
    "nc": "nc",
    "production": "production",
    "ideal_cycle_time_s": "ideal_cycle_time_s",
    "product": "product",
}


@router.patch("/enterprises/{enterprise}/equipment/{eid}")
def edit_equipment(
    caller: Caller, pool: Pool, enterprise: str, eid: str, patch: EquipmentPatch
) -> dict[str, Any]:
    writable(caller, enterprise, "edit equipment of")
    changes = patch.model_dump(exclude_unset=True, exclude={"note"})
    if not changes:
        raise ApiError(422, "invalid_parameter", f"give at least one of {sorted(_COLUMNS)}")
    with pool.connection() as conn, conn.transaction():
        before = _equipment_row(conn, enterprise, eid)
        if (
            "process" in changes
            and conn.execute(
                "SELECT 1 FROM processes WHERE enterprise_id = %s AND id = %s",
                (enterprise, changes["process"]),
            ).fetchone()
            is None
        ):
            raise ApiError(422, "invalid_parameter", f"process: no process {changes['process']!r}")
        for field, value in changes.items():
            column = _COLUMNS[field]
            old = before[column]
            if old == value:
                continue
            conn.execute(
                sql.SQL("UPDATE equipment SET {} = %s WHERE enterprise_id = %s AND id = %s").format(
                    sql.Identifier(column)
                ),
                (value, enterprise, eid),
            )
            conn.execute(
                "INSERT INTO equipment_audit (enterprise_id, equipment_id, account, field, "
                "old, new, note) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (enterprise, eid, caller.name, field, json.dumps(old), json.dumps(value),
                 patch.note),
            )  # fmt: skip
        return _equipment_row(conn, enterprise, eid)


@router.get("/enterprises/{enterprise}/equipment/{eid}/audit")
def equipment_audit(caller: Caller, pool: Pool, enterprise: str, eid: str) -> list[dict[str, Any]]:
    readable(caller, enterprise)
    with pool.connection() as conn:
        _equipment_row(conn, enterprise, eid)
        return _rows(
            conn.execute(
                "SELECT at, account, field, old, new, note FROM equipment_audit "
                "WHERE enterprise_id = %s AND equipment_id = %s ORDER BY at, id",
                (enterprise, eid),
            )
        )


@router.get("/enterprises/{enterprise}/equipment/{eid}/timeline")
def timeline(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    eid: str,
    start: Instant | None = None,
    end: Instant | None = None,
) -> dict[str, Any]:
    """The state intervals of [start, end) (default: the last day), clipped to it."""
    readable(caller, enterprise)
    a, b = _range(start, end)
    with pool.connection() as conn:
        eq = _equipment_row(conn, enterprise, eid)
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
            {"a": a, "b": b, "e": enterprise, "id": eid},
        ).fetchall()
    return {
        "equipment": eid,
        "name": eq["name"],
        "start": a,
        "end": b,
        "intervals": [{"start": x, "end": y, "state": s} for x, y, s in rows if y > x],
    }


@router.get("/enterprises/{enterprise}/series")
def series(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    device: str,
    tag: str,
    start: Instant | None = None,
    end: Instant | None = None,
    points: Annotated[int, Query(ge=2, le=5000)] = 500,
) -> dict[str, Any]:
    """One tag over [start, end), in at most `points` buckets (avg, min, max, samples):
    from the hourly rollups when a bucket is an hour or longer, else from the samples."""
    readable(caller, enterprise)
    a, b = _range(start, end)
    step = max((b - a) / points, dt.timedelta(seconds=1))
    with pool.connection() as conn:
        ref = conn.execute(
            """
            SELECT se.series_id, se.role, se.unit FROM series se
            JOIN gateways g ON g.gid = se.gid
            WHERE g.enterprise_id = %s AND se.device = %s AND se.tag = %s
            """,
            (enterprise, device, tag),
        ).fetchone()
        if ref is None:
            raise ApiError(404, "not_found", f"no tag {tag!r} of device {device!r} in {enterprise}")
        if step >= dt.timedelta(hours=1):
            step = dt.timedelta(hours=round(step / dt.timedelta(hours=1)))
            sql = """
                SELECT date_bin(%(step)s, bucket, %(a)s) AS t, sum(v_sum) / nullif(sum(n), 0),
                       min(v_min), max(v_max), sum(n)::bigint
                FROM samples_hourly WHERE series_id = %(sid)s AND bucket >= %(a)s
                  AND bucket < %(b)s GROUP BY 1 ORDER BY 1
            """
        else:
            sql = """
                SELECT date_bin(%(step)s, ts, %(a)s) AS t, avg(value), min(value), max(value),
                       count(*)
                FROM samples WHERE series_id = %(sid)s AND ts >= %(a)s AND ts < %(b)s
                GROUP BY 1 ORDER BY 1
            """
        rows = conn.execute(sql, {"step": step, "a": a, "b": b, "sid": ref[0]}).fetchall()
    return {
        "device": device,
        "tag": tag,
        "role": ref[1],
        "unit": ref[2],
        "step_s": step.total_seconds(),
        "points": [
            {"t": t, "avg": avg, "min": lo, "max": hi, "samples": n} for t, avg, lo, hi, n in rows
        ],
    }


def _counter_points(  # noqa: PLR0917
    conn: psycopg.Connection, sid: int, tz: str, a: dt.datetime, b: dt.datetime, bucket: str
) -> list[dict[str, Any]]:
    """A counter's increase per hour or local day, from the hourly sums of its deltas."""
    query = sql.SQL(
        "SELECT {} AS t, sum(delta), sum(n)::bigint, sum(rollovers)::int, "
        "sum(resets)::int FROM counter_hourly WHERE series_id = %(sid)s "
        "AND bucket >= %(a)s AND bucket < %(b)s GROUP BY 1 ORDER BY 1"
    ).format(sql.SQL("bucket" if bucket == "hour" else "date_trunc('day', bucket, %(tz)s)"))
    rows = conn.execute(query, {"sid": sid, "a": a, "b": b, "tz": tz}).fetchall()
    return [
        {"t": t, "quantity": q, "readings": n, "rollovers": ro, "resets": rs}
        for t, q, n, ro, rs in rows
    ]


@router.get("/enterprises/{enterprise}/equipment/{eid}/counters")
def equipment_counters(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    eid: str,
    start: Instant | None = None,
    end: Instant | None = None,
    bucket: Literal["hour", "day"] = "hour",
) -> dict[str, Any]:
    """Every tag of the machine's device (role, unit); for its counters (parts, energy,
    water ...), the increase per hour or local day over [start, end) (default: the last
    day), as the energy view counts them; and where its power is measured (`power`: its
    own power_kw tag, else those of the meters that cover it, the narrowest first)."""
    readable(caller, enterprise)
    a, b = _range(start, end, MAX_RANGE if bucket == "hour" else dt.timedelta(days=400))
    with pool.connection() as conn:
        eq = _equipment_row(conn, enterprise, eid)
        tags = _rows(
            conn.execute(
                """
                SELECT se.series_id, se.tag, se.role, se.unit, s.timezone
                FROM equipment e
                JOIN sites s ON s.enterprise_id = e.enterprise_id AND s.id = e.site_id
                JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
                     AND g.id = e.gateway_id
                JOIN series se ON se.gid = g.gid AND se.device = e.device
                WHERE e.enterprise_id = %s AND e.id = %s ORDER BY se.tag
                """,
                (enterprise, eid),
            )
        )
        counters = []
        for t in tags:
            sid, tz = t.pop("series_id"), t.pop("timezone")
            if t["role"] in COUNTER_ROLE_NAMES:
                points = _counter_points(conn, sid, tz, a, b, bucket)
                counters.append({**t, "points": points})
        # its power: a power_kw tag of its own, else of the meters that measure it
        own = [{"device": eq["device"], "tag": t["tag"], "unit": t["unit"], "meter": None,
                "covers": [eid]} for t in tags if t["role"] == "power_kw"]  # fmt: skip
        meters = _rows(
            conn.execute(
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
                (enterprise, eid),
            )
        )
    return {"equipment": eid, "start": a, "end": b, "bucket": bucket, "tags": tags,
            "counters": counters, "power": own + meters}  # fmt: skip


@router.get("/enterprises/{enterprise}/energy")
def energy(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    start: Instant | None = None,
    end: Instant | None = None,
    bucket: Literal["hour", "day"] = "hour",
) -> dict[str, Any]:
    """Consumption of every meter per hour or per local day of its site over [start, end)
    (default: the last day; at most 92 days by hour, 400 by day), from the hourly counter
    sums: each reading's delta counts in the hour of the reading, rollovers unwrapped and
    resets not counted, as in the report (which also prorates across the period's edges)."""
    readable(caller, enterprise)
    a, b = _range(start, end, MAX_RANGE if bucket == "hour" else dt.timedelta(days=400))
    with pool.connection() as conn:
        _enterprise_exists(conn, enterprise)
        meters = _rows(
            conn.execute(
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
            )
        )
        for m in meters:
            sid, tz = m.pop("series_id"), m.pop("timezone")
            m["measured"] = sid is not None
            m["points"] = [] if sid is None else _counter_points(conn, sid, tz, a, b, bucket)
    return {"start": a, "end": b, "bucket": bucket, "meters": meters}


@router.get("/enterprises/{enterprise}/gateways")
def gateways(caller: Caller, pool: Pool, enterprise: str) -> list[dict[str, Any]]:
    readable(caller, enterprise)
    with pool.connection() as conn:
        _enterprise_exists(conn, enterprise)
        return _rows(
            conn.execute(
                "SELECT site_id AS site, id, online, status_at, boot, agent, birth_at, "
                "hmac_key IS NOT NULL AS has_key FROM gateways WHERE enterprise_id = %s "
                "ORDER BY site_id, id",
                (enterprise,),
            )
        )


@router.get("/enterprises/{enterprise}/dead-letters")
def dead_letters(
    caller: Caller,
    pool: Pool,
    enterprise: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The newest refused messages of the enterprise's gateways (without their payload)."""
    readable(caller, enterprise)
    with pool.connection() as conn:
        _enterprise_exists(conn, enterprise)
        return _rows(
            conn.execute(
                "SELECT d.id, d.received_at, g.site_id AS site, g.id AS gateway, d.topic, "
                "d.reason, d.payload_bytes FROM dead_letters d JOIN gateways g USING (gid) "
                "WHERE g.enterprise_id = %s ORDER BY d.received_at DESC, d.id DESC LIMIT %s",
                (enterprise, limit),
            )
        )


@router.get("/enterprises/{enterprise}/kpis")
def kpis(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
    coverage_threshold: Annotated[float, Query(gt=0, le=1)] = 0.8,
    baseline_from: Day | None = None,
    baseline_to: Day | None = None,
) -> dict[str, Any]:
    """Every KPI of the period with its groups (site, process), equipment, meters and data
    quality (tag coverage, gaps, counter anomalies), and the change vs a baseline period
    when one is given: the report's body, unsigned (for the console; evidence is the
    signed report)."""
    readable(caller, enterprise)
    check_period(date_from, date_to, baseline_from, baseline_to)
    req = ReportRequest(
        enterprise, date_from, date_to, baseline_from, baseline_to,
        params=Parameters(coverage_threshold=coverage_threshold),
    )  # fmt: skip
    with pool.connection() as conn:
        doc = make_report(conn, req, key=None)
    keep = (
        "enterprise", "period", "baseline", "parameters", "sites", "kpis", "groups",
        "equipment", "meters", "production", "quality",
    )  # fmt: skip
    return {k: doc[k] for k in keep}


TREND_DEFAULT = (
    "energy_tce", "energy_per_unit", "energy_per_value_added", "water_per_unit",
    "water_per_value_added", "carbon_per_value_added", "oee",
)  # fmt: skip
MAX_TREND_STEPS = 62


def _steps(a: dt.date, b: dt.date, step: str) -> list[tuple[dt.date, dt.date]]:
    """[a, b] cut into days, ISO weeks or calendar months (the first and last clipped)."""
    out = []
    d = a
    while d <= b:
        if step == "day":
            last = d
        elif step == "week":
            last = d + dt.timedelta(days=6 - d.weekday())
        else:
            nxt = (d.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
            last = nxt - dt.timedelta(days=1)
        out.append((d, min(last, b)))
        d = min(last, b) + dt.timedelta(days=1)
    return out


@router.get("/enterprises/{enterprise}/trend")
def trend(  # noqa: PLR0917 (query parameters)
    caller: Caller,
    pool: Pool,
    enterprise: str,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
    step: Literal["day", "week", "month"] = "day",
    kpi: Annotated[list[str] | None, Query(description="KPI ids (default: intensities)")] = None,
) -> dict[str, Any]:
    """Chosen KPIs per day, week or month of [from, to], each computed by the engine as
    a report over that sub-period would (at most 62 of them)."""
    readable(caller, enterprise)
    check_period(date_from, date_to)
    steps = _steps(date_from, date_to, step)
    if len(steps) > MAX_TREND_STEPS:
        raise ApiError(
            422, "invalid_parameter",
            f"step: {len(steps)} {step}s; at most {MAX_TREND_STEPS}: take a longer step",
        )  # fmt: skip
    wanted = set(kpi or TREND_DEFAULT)
    points: list[dict[str, Any]] = []
    meta: dict[str, dict[str, Any]] = {}
    with pool.connection() as conn:
        for a, b in steps:
            doc = make_report(conn, ReportRequest(enterprise, a, b), key=None)
            values = {}
            for k in doc["kpis"]:
                if k["id"] in wanted:
                    values[k["id"]] = k["value"]
                    meta[k["id"]] = {"name": k["name"], "name_en": k["name_en"], "unit": k["unit"]}
            points.append({"from": a, "to": b, "partial": doc["period"]["partial"], "kpis": values})
    return {"step": step, "kpis": meta, "points": points}


@router.get("/factors")
def factors(_caller: Caller) -> dict[str, Any]:
    return {
        "energy": [t.as_json() for t in ENERGY_TABLES.values()],
        "emission": [t.as_json() for t in EMISSION_TABLES.values()],
    }
