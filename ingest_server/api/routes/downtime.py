"""Downtime reasons (停机原因): the catalogue, a machine's stops with their reasons, the
audited attachment of a reason, the loss Pareto and MTBF/MTTR by cause, and the alarm
texts of a machine for its timeline.

    GET /api/v1/enterprises/{e}/downtime-reasons             the catalogue
    GET /api/v1/enterprises/{e}/equipment/{id}/stops         DOWN/IDLE intervals + reasons
    PUT /api/v1/enterprises/{e}/equipment/{id}/stops/reason  attach, change, clear (audited)
    GET /api/v1/enterprises/{e}/downtime-audit               who attached what, when
    GET /api/v1/enterprises/{e}/losses                       loss Pareto, MTBF/MTTR by cause
    GET /api/v1/enterprises/{e}/equipment/{id}/alarms        alarm texts of a window

Attaching needs an enterprise or admin account (the operators'); a verifier reads.
Windows are [start, end) of `Instant`s, by default the last day: at most 92 days for a
machine's stops and alarms, 400 for the losses. The figures: kpi/losses.py, docs/kpi.md.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from ingest_server.api.auth import ApiError
from ingest_server.api.deps import Enterprise, KnownEnterprise, Reading, writing
from ingest_server.api.models import (
    AlarmsPublic,
    AssignmentPublic,
    DowntimeAuditPublic,
    DowntimeReasonIn,
    DowntimeReasonPublic,
    LossesPublic,
    StopsPublic,
)
from ingest_server.api.params import Instant, time_window
from ingest_server.api.routes.series import MAX_DAILY_RANGE
from ingest_server.kpi import losses
from ingest_server.repo import downtime as downtime_repo
from ingest_server.repo import enterprises as enterprises_repo
from ingest_server.repo import equipment as equipment_repo

router = APIRouter(prefix="/api/v1", tags=["downtime"])

Attaching = Annotated[Enterprise, Depends(writing("attach downtime reasons to"))]


@router.get("/enterprises/{enterprise}/downtime-reasons", response_model=list[DowntimeReasonPublic])
def reasons(e: KnownEnterprise) -> list[dict[str, Any]]:
    return downtime_repo.catalogue(e.conn, enterprise=e.id)


@router.get("/enterprises/{enterprise}/equipment/{eid}/stops", response_model=StopsPublic)
def stops(
    e: Reading, eid: str, start: Instant | None = None, end: Instant | None = None
) -> dict[str, Any]:
    """The machine's DOWN and IDLE intervals overlapping [start, end), unclipped (`start`
    is the key a reason is attached by), and the reasons of the window whose interval
    changed when late data re-derived it."""
    a, b = time_window(start, end)
    equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=eid)  # or 404
    rows = downtime_repo.stops(e.conn, enterprise=e.id, equipment=eid, start=a, end=b)
    changed = downtime_repo.changed(e.conn, enterprise=e.id, equipment=eid, start=a, end=b)
    return {"equipment": eid, "start": a, "end": b, "stops": rows, "changed": changed}


@router.put(
    "/enterprises/{enterprise}/equipment/{eid}/stops/reason",
    response_model=AssignmentPublic | None,
)
def set_reason(e: Attaching, eid: str, body: DowntimeReasonIn) -> dict[str, Any] | None:
    """Attach a reason of the catalogue to the DOWN or IDLE interval starting at `start`,
    replace it, or clear it (`reason` null); the assignment after (null: none). Each
    change is a row of the trail."""
    return downtime_repo.set_reason(
        e.conn, enterprise=e.id, equipment=eid, start=body.start, reason=body.reason,
        note=body.note, account=e.caller.name,
    )  # fmt: skip


@router.get("/enterprises/{enterprise}/downtime-audit", response_model=list[DowntimeAuditPublic])
def audit(e: KnownEnterprise, equipment: str | None = None) -> list[dict[str, Any]]:
    """Every attachment, change and removal of a reason (of one machine: `equipment`),
    oldest first."""
    if equipment is not None:
        equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=equipment)
    return downtime_repo.trail(e.conn, enterprise=e.id, equipment=equipment)


def _check_filters(e: Enterprise, site: str | None, process: str | None) -> None:
    found = enterprises_repo.get_enterprise(e.conn, enterprise=e.id) or {}
    for field, value, rows in (("site", site, found.get("sites", [])),
                               ("process", process, found.get("processes", []))):  # fmt: skip
        known = [r["id"] for r in rows]
        if value is not None and value not in known:
            raise ApiError(
                422, "invalid_parameter",
                f"{field}: {e.id} has no {field} {value!r}; give one of {', '.join(known)}",
                f"{field}: {e.id} 没有{'厂区' if field == 'site' else '工序'} {value!r}, "
                f"可选: {', '.join(known)}",
            )  # fmt: skip


@router.get("/enterprises/{enterprise}/losses", response_model=LossesPublic)
def losses_view(  # noqa: PLR0917 (query parameters)
    e: KnownEnterprise,
    start: Instant | None = None,
    end: Instant | None = None,
    site: str | None = None,
    process: str | None = None,
    equipment: str | None = None,
) -> dict[str, Any]:
    """Over [start, end) (default the last day, at most 400 days) and the machines the
    filters select: the loss Pareto of DOWN and IDLE time by reason (of them all, per
    process, per machine) and MTBF/MTTR per reason of DOWN (kpi/losses.py)."""
    a, b = time_window(start, end, MAX_DAILY_RANGE)
    _check_filters(e, site, process)
    if equipment is not None:
        equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=equipment)
    where = {"site": site, "process": process, "equipment": equipment}
    rows = downtime_repo.stops(e.conn, enterprise=e.id, start=a, end=b, **where)
    records = [
        losses.Stop(r["equipment"], r["process"], r["state"], r["start"].timestamp(),
                    r["end"].timestamp(), r["reason"])
        for r in rows
    ]  # fmt: skip
    running = downtime_repo.running_seconds(e.conn, enterprise=e.id, start=a, end=b, **where)
    t0, t1 = a.timestamp(), b.timestamp()
    return {
        "start": a, "end": b, **where, "running_s": running,
        "total": losses.loss_pareto(records, start=t0, end=t1, by="all"),
        "by_process": losses.loss_pareto(records, start=t0, end=t1, by="process"),
        "by_equipment": losses.loss_pareto(records, start=t0, end=t1, by="equipment"),
        "by_cause": losses.by_cause(records, start=t0, end=t1, running_s=running),
        "reasons": downtime_repo.catalogue(e.conn, enterprise=e.id),
    }  # fmt: skip


@router.get("/enterprises/{enterprise}/equipment/{eid}/alarms", response_model=AlarmsPublic)
def alarms(
    e: Reading, eid: str, start: Instant | None = None, end: Instant | None = None
) -> dict[str, Any]:
    """The alarms the machine's device raised over [start, end) (its tags of role
    `alarm`), as spans clipped to the window, for the timeline."""
    a, b = time_window(start, end)
    equipment_repo.equipment_record(e.conn, enterprise=e.id, equipment=eid)  # or 404
    found = downtime_repo.alarms(e.conn, enterprise=e.id, equipment=eid, start=a, end=b)
    return {"equipment": eid, "start": a, "end": b, "alarms": found}
