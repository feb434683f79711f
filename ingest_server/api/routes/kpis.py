"""The KPIs for the console, unsigned (evidence is the signed report, routes/reports.py),
and the reference tables they use.

    GET /api/v1/enterprises/{e}/kpis     every KPI of a period (unsigned)
    GET /api/v1/enterprises/{e}/trend    KPIs per day / week / month
    GET /api/v1/factors                  coefficient and factor tables
    GET /api/v1/targets                  programme target tables, each row with its source

`kpis` and `trend` take an optional `site` and `process`: the figures of that part of the
plant alone, computed by the same engine over the inputs narrowed to it (kpi/scope.py). The
energy, water and carbon figures are metered per site, not per process: under a process
they are left out (the answer's `scope.unscoped` lists them).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query

from ingest_server.api.auth import ApiError, Caller
from ingest_server.api.deps import Reading
from ingest_server.api.models import TargetTablePublic
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report, scoped_body
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.scope import UnknownScopeError
from ingest_server.reference.factors import EMISSION_TABLES, ENERGY_TABLES, names_json
from ingest_server.reference.targets import TARGET_TABLES

router = APIRouter(prefix="/api/v1", tags=["kpis"])


@router.get("/enterprises/{enterprise}/kpis")
def kpis(  # noqa: PLR0917 (query parameters)
    e: Reading,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
    coverage_threshold: Annotated[float, Query(gt=0, le=1)] = 0.8,
    baseline_from: Day | None = None,
    baseline_to: Day | None = None,
    site: Annotated[str | None, Query(description="only this site's figures")] = None,
    process: Annotated[str | None, Query(description="only this process's machines")] = None,
) -> dict[str, Any]:
    """Every KPI of the period with its groups (site, process), equipment, meters and data
    quality (tag coverage, gaps, counter anomalies), the change vs a baseline period
    when one is given, and each KPI against its programme targets (`targets`: the
    built-in table's and the enterprise's own, evidence/targets.py): the report's body,
    unsigned (for the console; evidence is the signed report). With `site` or `process`,
    the same over that part of the plant (`scope`)."""
    check_period(date_from, date_to, baseline_from, baseline_to)
    req = ReportRequest(
        e.id, date_from, date_to, baseline_from, baseline_to,
        params=Parameters(coverage_threshold=coverage_threshold),
    )  # fmt: skip
    keep = (
        "enterprise", "period", "baseline", "parameters", "sites", "kpis", "groups",
        "equipment", "meters", "production", "quality", "attestation", "targets",
    )  # fmt: skip
    if site is None and process is None:
        doc = make_report(e.conn, req, key=None)
        return {k: doc[k] for k in keep}
    doc = _scoped(e.conn, req, site, process, targets=True)
    return {k: doc[k] for k in (*keep, "scope")}


class ScopeError(ApiError):
    """A site or process the enterprise does not have: 422 naming the ones it has."""

    def __init__(self, exc: UnknownScopeError) -> None:
        what, given, known = exc.what, exc.given, exc.known
        names = ", ".join(known) or "none"
        super().__init__(
            422, "invalid_parameter", f"{what}: no {what} {given!r}; give one of: {names}"
        )
        zh = {"site": "厂区", "process": "工序"}[what]
        self.message_zh = f"{what}: 没有{zh} {given!r}; 可选: {names}"


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
    e: Reading,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
    step: Literal["day", "week", "month"] = "day",
    kpi: Annotated[list[str] | None, Query(description="KPI ids (default: intensities)")] = None,
    site: Annotated[str | None, Query(description="only this site's figures")] = None,
    process: Annotated[str | None, Query(description="only this process's machines")] = None,
) -> dict[str, Any]:
    """Chosen KPIs per day, week or month of [from, to], each computed by the engine as
    a report over that sub-period would (at most 62 of them); of a site or process alone
    when given (as `kpis`)."""
    check_period(date_from, date_to)
    steps = _steps(date_from, date_to, step)
    if len(steps) > MAX_TREND_STEPS:
        raise ApiError(
            422, "invalid_parameter",
            f"step: {len(steps)} {step}s; at most {MAX_TREND_STEPS}: take a longer step",
            f"步长: 共 {len(steps)} 段, 最多 {MAX_TREND_STEPS} 段: 请选更长的步长",
        )  # fmt: skip
    wanted = set(kpi or TREND_DEFAULT)
    points: list[dict[str, Any]] = []
    meta: dict[str, dict[str, Any]] = {}
    for a, b in steps:
        sub = ReportRequest(e.id, a, b)
        if site is None and process is None:
            doc = make_report(e.conn, sub, key=None)
        else:
            doc = _scoped(e.conn, sub, site, process, targets=False)
        values = {}
        for k in doc["kpis"]:
            if k["id"] in wanted:
                values[k["id"]] = k["value"]
                meta[k["id"]] = {"name": k["name"], "name_en": k["name_en"], "unit": k["unit"]}
        points.append({"from": a, "to": b, "partial": doc["period"]["partial"], "kpis": values})
    return {"step": step, "kpis": meta, "points": points}


def _scoped(
    conn: psycopg.Connection,
    req: ReportRequest,
    site: str | None,
    process: str | None,
    *,
    targets: bool,
) -> dict[str, Any]:
    """evidence/report.py `scoped_body`, its unknown site or process a 422 naming the known."""
    try:
        return scoped_body(conn, req, site, process, targets=targets)
    except UnknownScopeError as exc:
        raise ScopeError(exc) from None


@router.get("/factors")
def factors(_caller: Caller) -> dict[str, Any]:
    return {
        "energy": [t.as_json() for t in ENERGY_TABLES.values()],
        "emission": [t.as_json() for t in EMISSION_TABLES.values()],
        **names_json(),  # the tables' Chinese titles, the regions' names
    }


@router.get("/targets")
def targets(_caller: Caller) -> list[TargetTablePublic]:
    """Every version of the built-in programme target table, each row with its source
    (superseded versions stay: reports cite them)."""
    return [TargetTablePublic.model_validate(t.as_json()) for t in TARGET_TABLES.values()]
