"""What was measured, for the console's charts: a machine's state timeline and counters,
one tag downsampled, the energy of every meter.

    GET /api/v1/enterprises/{e}/equipment/{id}/timeline   state intervals (Gantt)
    GET /api/v1/enterprises/{e}/equipment/{id}/counters   its tags; parts, kWh per hour/day
    GET /api/v1/enterprises/{e}/series                    one tag, downsampled
    GET /api/v1/enterprises/{e}/energy                    consumption per meter per hour/day

A window is [start, end) of `Instant`s, by default the last day; at most 92 days (400 by
day for counters and energy: api/params.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ingest_server.api.auth import ApiError
from ingest_server.api.deps import KnownEnterprise, Reading
from ingest_server.api.models import SeriesPublic, TimelinePublic
from ingest_server.api.params import MAX_RANGE, Instant, time_window
from ingest_server.derive.intervals import COUNTER_ROLE_NAMES
from ingest_server.repo import equipment as equipment_repo
from ingest_server.repo import series as series_repo
from ingest_server.repo.series import Bucket

router = APIRouter(prefix="/api/v1", tags=["measurements"])

MAX_DAILY_RANGE = dt.timedelta(days=400)


@router.get("/enterprises/{enterprise}/equipment/{eid}/timeline", response_model=TimelinePublic)
def timeline(
    e: Reading, eid: str, start: Instant | None = None, end: Instant | None = None
) -> dict[str, Any]:
    """The state intervals of [start, end) (default: the last day), clipped to it."""
    a, b = time_window(start, end)
    eq = equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=eid)
    intervals = series_repo.state_timeline(e.conn, enterprise=e.id, equipment=eid, start=a, end=b)
    return {"equipment": eid, "name": eq["name"], "start": a, "end": b, "intervals": intervals}


@router.get("/enterprises/{enterprise}/series", response_model=SeriesPublic)
def series(  # noqa: PLR0917 (query parameters)
    e: Reading,
    device: str,
    tag: str,
    start: Instant | None = None,
    end: Instant | None = None,
    points: Annotated[int, Query(ge=2, le=5000)] = 500,
) -> dict[str, Any]:
    """One tag over [start, end), in at most `points` buckets (avg, min, max, samples):
    from the hourly rollups when a bucket is an hour or longer, else from the samples."""
    a, b = time_window(start, end)
    ref = series_repo.find_series(e.conn, enterprise=e.id, device=device, tag=tag)
    if ref is None:
        raise ApiError(
            404, "not_found", f"no tag {tag!r} of device {device!r} in {e.id}",
            f"{e.id} 没有设备 {device!r} 的点位 {tag!r}",
        )  # fmt: skip
    step, buckets = series_repo.downsampled(
        e.conn, series_id=ref.series_id, start=a, end=b, points=points
    )
    return {"device": device, "tag": tag, "role": ref.role, "unit": ref.unit,
            "step_s": step.total_seconds(), "points": buckets}  # fmt: skip


@router.get("/enterprises/{enterprise}/equipment/{eid}/counters")
def equipment_counters(
    e: Reading,
    eid: str,
    start: Instant | None = None,
    end: Instant | None = None,
    bucket: Bucket = "hour",
) -> dict[str, Any]:
    """Every tag of the machine's device (role, unit); for its counters (parts, energy,
    water ...), the increase per hour or local day over [start, end) (default: the last
    day), as the energy view counts them; and where its power is measured (`power`: its
    own power_kw tag, else those of the meters that cover it, the narrowest first)."""
    a, b = time_window(start, end, MAX_RANGE if bucket == "hour" else MAX_DAILY_RANGE)
    eq = equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=eid)
    tags = series_repo.equipment_tags(e.conn, enterprise=e.id, equipment=eid)
    counters = []
    for t in tags:
        sid, tz = t.pop("series_id"), t.pop("timezone")
        if t["role"] in COUNTER_ROLE_NAMES:
            points = series_repo.counter_points(
                e.conn, series_id=sid, timezone=tz, start=a, end=b, bucket=bucket
            )
            counters.append({**t, "points": points})
    # its power: a power_kw tag of its own, else of the meters that measure it
    own = [{"device": eq["device"], "tag": t["tag"], "unit": t["unit"], "meter": None,
            "covers": [eid]} for t in tags if t["role"] == "power_kw"]  # fmt: skip
    meters = series_repo.power_of_covering_meters(e.conn, enterprise=e.id, equipment=eid)
    return {"equipment": eid, "start": a, "end": b, "bucket": bucket, "tags": tags,
            "counters": counters, "power": own + meters}  # fmt: skip


@router.get("/enterprises/{enterprise}/energy")
def energy(
    e: KnownEnterprise,
    start: Instant | None = None,
    end: Instant | None = None,
    bucket: Bucket = "hour",
) -> dict[str, Any]:
    """Consumption of every meter per hour or per local day of its site over [start, end)
    (default: the last day; at most 92 days by hour, 400 by day), from the hourly counter
    sums: each reading's delta counts in the hour of the reading, rollovers unwrapped and
    resets not counted, as in the report (which also prorates across the period's edges)."""
    a, b = time_window(start, end, MAX_RANGE if bucket == "hour" else MAX_DAILY_RANGE)
    meters = series_repo.meters_with_series(e.conn, enterprise=e.id)
    for m in meters:
        sid, tz = m.pop("series_id"), m.pop("timezone")
        m["measured"] = sid is not None
        m["points"] = (
            []
            if sid is None
            else series_repo.counter_points(
                e.conn, series_id=sid, timezone=tz, start=a, end=b, bucket=bucket
            )
        )
    return {"start": a, "end": b, "bucket": bucket, "meters": meters}
