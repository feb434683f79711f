"""The KPIs for the console, unsigned (evidence is the signed report, routes/reports.py),
and the reference tables they use.

    GET /api/v1/enterprises/{e}/kpis     every KPI of a period (unsigned)
    GET /api/v1/enterprises/{e}/trend    KPIs per day / week / month
    GET /api/v1/factors                  coefficient and factor tables
    GET /api/v1/targets                  programme target tables, each row with its source

`kpis` and `trend` take an optional `site` and `process`: the figures of that part of the
plant alone, computed by the same engine over the inputs narrowed to it (`narrow`). The
energy, water and carbon figures are metered per site, not per process: under a process
they are left out (the answer's `scope.unscoped` lists them).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Query

from ingest_server.api.auth import ApiError, Caller
from ingest_server.api.deps import Reading
from ingest_server.api.models import TargetTablePublic
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import (
    compute_report,
    fetch_baseline,
    make_report,
    snapshot,
)
from ingest_server.evidence.targets import targets_block
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.records import Inputs
from ingest_server.reference.factors import EMISSION_TABLES, ENERGY_TABLES, names_json
from ingest_server.reference.targets import TARGET_TABLES
from ingest_server.repo import declarations

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
    doc = scoped_report(e.conn, req, site, process, targets=True)
    return {k: doc[k] for k in (*keep, "scope")}


# the KPIs of machines, which a process narrows; the others are metered per site
MACHINE_KPIS = frozenset((
    "nc_rate_declared", "nc_rate_measured", "networking_rate", "availability",
    "effectiveness", "quality_ratio", "oee", "utilisation", "mtbf", "mttr",
))  # fmt: skip


class ScopeError(ApiError):
    """A site or process the enterprise does not have: 422 naming the ones it has."""

    def __init__(self, what: str, given: str, known: list[str]) -> None:
        names = ", ".join(known) or "none"
        super().__init__(
            422, "invalid_parameter", f"{what}: no {what} {given!r}; give one of: {names}"
        )
        zh = {"site": "厂区", "process": "工序"}[what]
        self.message_zh = f"{what}: 没有{zh} {given!r}; 可选: {names}"


def narrow(inputs: Inputs, site: str | None, process: str | None) -> Inputs:
    """The inputs of one site and/or one process: its sites, machines (and under a site
    its meters; under a process none), and only their devices' rows. Production entered
    for the whole enterprise stays with a site only when the enterprise has one site
    (it cannot be shared out between sites)."""
    if site is not None and site not in {s.id for s in inputs.sites}:
        raise ScopeError("site", site, sorted(s.id for s in inputs.sites))
    procs = {e.process for e in inputs.equipment if e.process}
    if process is not None and process not in procs:
        raise ScopeError("process", process, sorted(procs))
    sites = [s for s in inputs.sites if site in (None, s.id)]
    equipment = [
        e for e in inputs.equipment if site in (None, e.site) and process in (None, e.process)
    ]
    meters = [] if process is not None else [m for m in inputs.meters if site in (None, m.site)]
    devices = {e.device for e in equipment if e.device is not None}
    devices |= {m.device for m in meters if m.device is not None}
    one_site = len(inputs.sites) == 1
    production = [
        p for p in inputs.production if site in (None, p.site) or (p.site is None and one_site)
    ]
    return dataclasses.replace(
        inputs,
        sites=sites,
        equipment=equipment,
        meters=meters,
        intervals={d: v for d, v in inputs.intervals.items() if d in devices},
        counters={k: v for k, v in inputs.counters.items() if k[0] in devices},
        tags=[t for t in inputs.tags if t.device in devices],
        anomalies=[a for a in inputs.anomalies if a.device in devices],
        production=production,
        device_names={d: n for d, n in inputs.device_names.items() if d in devices},
        origins=[o for o in inputs.origins if o.device in devices],
    )


def scoped_report(
    conn: psycopg.Connection,
    req: ReportRequest,
    site: str | None,
    process: str | None,
    *,
    targets: bool,
) -> dict[str, Any]:
    """The report body (unsigned, without the blocks a signed report adds) of the part of
    the plant `narrow` keeps, with `scope`, and `targets` when asked."""
    as_of = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with snapshot(conn):
        inputs = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s,
        )  # fmt: skip
        baseline = fetch_baseline(conn, req, as_of, raw=False)
        entered = declarations.enterprise_targets(conn, enterprise=req.enterprise)
    inputs = narrow(inputs, site, process)
    baseline = None if baseline is None else narrow(baseline, site, process)
    doc = compute_report(inputs, baseline, req, as_of)
    unscoped: list[str] = []
    if process is not None:
        unscoped = [k["id"] for k in doc["kpis"] if k["id"] not in MACHINE_KPIS]
        doc["kpis"] = [k for k in doc["kpis"] if k["id"] in MACHINE_KPIS]
    if targets:
        doc["targets"] = targets_block(doc["kpis"], entered=entered)
    doc["scope"] = {"site": site, "process": process, "unscoped": unscoped}
    return doc


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
        )  # fmt: skip
    wanted = set(kpi or TREND_DEFAULT)
    points: list[dict[str, Any]] = []
    meta: dict[str, dict[str, Any]] = {}
    for a, b in steps:
        sub = ReportRequest(e.id, a, b)
        if site is None and process is None:
            doc = make_report(e.conn, sub, key=None)
        else:
            doc = scoped_report(e.conn, sub, site, process, targets=False)
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
        **names_json(),  # the tables' Chinese titles, the regions' names
    }


@router.get("/targets")
def targets(_caller: Caller) -> list[TargetTablePublic]:
    """Every version of the built-in programme target table, each row with its source
    (superseded versions stay: reports cite them)."""
    return [TargetTablePublic.model_validate(t.as_json()) for t in TARGET_TABLES.values()]
