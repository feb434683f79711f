"""The greenhouse-gas report of a period (温室气体排放报告), pure: the caller gives the
report document and the process emissions the enterprise enters from its ledger.

    report (meters, factors, CO2 KPI) + [ProcessEmission] --ghg_report--> GhgReport
        boundary (enterprise, sites, period) → sources by category → activity data and
        factors with their publications → emissions per source → total

Its sections follow the structure of GB/T 32151.29-2024 (温室气体排放核算与报告要求 第29部分:
机械设备制造企业, in force 2025-04-01) as its table of contents gives it: 4 核算边界,
5 核算步骤与核算方法, 7 报告内容和格式 (附录B 报告格式模板); the source categories are
GB/T 32150-2015's: fuel combustion, process emissions, purchased electricity and heat.
Which emission sources, formulas and report-template rows the standard's clauses hold
could not be checked against its text (docs/green-ghg.md): no clause below a section is
cited.

The energy sources are the report's top-level meters, exactly as its CO2 KPI counts them
(a submeter is inside its parent): gas and diesel are fuel combustion, electricity is
purchased electricity, heat and steam purchased heat. Each emission is the meter's own
`tco2` and the energy total their sum in the report's order, so it equals the CO2 KPI
to the last bit. A meter whose carrier has no factor in the report's table is listed with
its activity data and counted nowhere, and the report says so (`gaps`). Process emissions
(e.g. CO2 used as welding shielding gas) are entered: activity x factor in tonnes of the
gas, x its GWP for tCO2e; the total is in tCO2e. A meter of role `generation` (on-site
PV) is no source: it has no CO2 in the report.

A report signs this as its `ghg` block (`ghg_block`, added by evidence/report.py after
the figures, with the process emissions entered for its period); `ghg_problems` computes
it again from the report's figures and the block's entries (evidence/verify.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ingest_server.evidence.columns import Json, ReportFormatError, check_format, kpis_of
from ingest_server.reference.factors import TITLES_ZH

Category = Literal["fuel_combustion", "process", "purchased_electricity", "purchased_heat"]
CATEGORIES: dict[Category, tuple[str, str]] = {
    "fuel_combustion": ("化石燃料燃烧排放", "Fuel combustion"),
    "process": ("工业生产过程排放", "Process emissions"),
    "purchased_electricity": ("购入电力产生的排放", "Purchased electricity"),
    "purchased_heat": ("购入热力产生的排放", "Purchased heat"),
}
CARRIER_CATEGORY: dict[str, Category] = {
    "gas": "fuel_combustion",
    "diesel": "fuel_combustion",
    "electricity": "purchased_electricity",
    "heat": "purchased_heat",
    "steam": "purchased_heat",
}
# GB/T 32150-2015's seven gases
Gas = Literal["CO2", "CH4", "N2O", "HFCs", "PFCs", "SF6", "NF3"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProcessEmission(_Strict):
    """A process emission from the enterprise's ledger: what was used (activity data), the
    tonnes of the gas released per unit of it, and where that factor comes from."""

    source: str = Field(min_length=1, description="e.g. CO2 welding shielding gas")
    gas: Gas = "CO2"
    activity: float = Field(ge=0, description="activity data, in `unit`")
    unit: str = Field(min_length=1, description="e.g. t")
    factor: float = Field(ge=0, description="t of the gas per unit of activity")
    factor_source: str = Field(min_length=1, description="publication, or the measurement")
    gwp: float | None = Field(default=None, gt=0, description="tCO2e per t of the gas")
    gwp_source: str = ""
    evidence: str = Field(default="", description="the ledger's record")

    @model_validator(mode="after")
    def _gwp_for_other_gases(self) -> ProcessEmission:
        if self.gas != "CO2" and (self.gwp is None or not self.gwp_source):
            raise ValueError(
                f"process emission {self.source!r}: {self.gas} needs its GWP and the GWP's "
                f"source (gwp, gwp_source) to count in tCO2e"
            )
        return self


class GhgSource(_Strict):
    category: Category
    id: str  # the meter's id; "process-N" for the N-th entered process emission
    name: str
    name_en: str
    site: str | None
    gas: str
    activity: float | None
    unit: str
    factor: float | None
    factor_unit: str
    factor_source: str
    emission_t: float | None  # tonnes of the gas
    tco2e: float | None
    evidence: str  # measured by the meter (coverage), or the ledger's record


class GhgCategory(_Strict):
    id: Category
    name: str
    name_en: str
    tco2e: float | None  # None when no source of the category counts


class GhgNote(_Strict):
    text: str
    text_en: str


class GhgReport(_Strict):
    enterprise: dict[str, Any]
    sites: list[dict[str, Any]]
    period: dict[str, Any]
    factor_table: str  # version and title of the report's emission factor table
    sources: list[GhgSource]
    categories: list[GhgCategory]
    energy_tco2: float | None  # the report's CO2 KPI, bit for bit
    process_tco2e: float | None
    total_tco2e: float | None
    gaps: list[GhgNote]


def _table_title(table: Mapping[str, Any]) -> str:
    """The factor table as the GHG report names it: its version, its Chinese title (where
    reference/factors.py has one) and the title it carries."""
    version, title = table.get("version"), table.get("title")
    zh = TITLES_ZH.get(str(version))
    return f"{version}: {zh} / {title}" if zh else f"{version}: {title}"


def ghg_report(report: Json, process: list[ProcessEmission]) -> GhgReport:
    """The GHG report of the report's period."""
    check_format(report)
    kpis = {k.id: k for k in kpis_of(report.get("kpis") or [])}
    co2 = kpis.get("carbon_tco2")
    table = (report.get("factors") or {}).get("emission") or {}
    rows = [r for r in table.get("rows") or [] if isinstance(r, Mapping)]
    sources: list[GhgSource] = []
    gaps: list[GhgNote] = []
    energy: list[float] = []
    for m in report.get("meters") or []:
        if not isinstance(m, Mapping) or not m.get("top_level"):
            continue
        if m.get("role") == "generation":
            continue  # on-site generation: electricity made, no emission source
        carrier = str(m.get("carrier"))
        category = CARRIER_CATEGORY.get(carrier)
        tco2 = m.get("tco2")
        if category is None:
            if tco2 is not None:
                raise ReportFormatError(
                    f"meter {m.get('id')}: carrier {carrier} has CO2 but no GHG source category"
                )
            continue  # water, compressed air: no emission source
        if tco2 is not None:
            energy.append(tco2)
        else:
            gaps.append(_no_factor(m, table))
        sources.append(_meter_source(m, category, rows))
    energy_tco2 = sum(energy) if energy else None
    claimed = co2.value if co2 else None
    if energy_tco2 != claimed:
        raise ReportFormatError(
            f"the report's CO2 KPI is {claimed} tCO2 but its top-level meters add up to "
            f"{energy_tco2}: the report does not agree with itself"
        )
    for n, p in enumerate(process, start=1):
        t = p.activity * p.factor
        sources.append(GhgSource(
            category="process", id=f"process-{n}", name=p.source, name_en=p.source, site=None,
            gas=p.gas, activity=p.activity, unit=p.unit, factor=p.factor,
            factor_unit=f"t{p.gas}/{p.unit}",
            factor_source=p.factor_source + (f"; GWP {p.gwp:g}: {p.gwp_source}" if p.gwp else ""),
            emission_t=t, tco2e=t * (p.gwp or 1.0), evidence=p.evidence,
        ))  # fmt: skip
    entered = [s.tco2e or 0.0 for s in sources if s.category == "process"]
    process_tco2e = sum(entered) if entered else None
    parts = [x for x in (energy_tco2, process_tco2e) if x is not None]
    period = report.get("period") or {}
    return GhgReport(
        enterprise=dict(report.get("enterprise") or {}),
        sites=[dict(s) for s in report.get("sites") or [] if isinstance(s, Mapping)],
        period={k: period.get(k) for k in ("from", "to", "timezone", "partial")},
        factor_table=_table_title(table),
        sources=sources,
        categories=[_category(c, sources) for c in CATEGORIES],
        energy_tco2=energy_tco2,
        process_tco2e=process_tco2e,
        total_tco2e=sum(parts) if parts else None,
        gaps=gaps,
    )


def publication(m: Json, rows: list[Mapping[str, Any]]) -> str:
    """The publication of the emission factor a report's meter row used: the `source` of
    the factor table's row of its carrier, unit, region and year; "" without a factor."""
    ef = m.get("emission_factor") if isinstance(m.get("emission_factor"), Mapping) else None
    if ef is None:
        return ""
    key = (m.get("carrier"), m.get("unit"), ef.get("region"), ef.get("year"))
    return next(
        (str(r.get("source")) for r in rows
         if (r.get("carrier"), r.get("unit"), r.get("region"), r.get("year")) == key),
        "",
    )  # fmt: skip


def _meter_source(m: Json, category: Category, rows: list[Mapping[str, Any]]) -> GhgSource:
    ef = m.get("emission_factor") if isinstance(m.get("emission_factor"), Mapping) else None
    unit = str(m.get("unit"))
    coverage = m.get("coverage")
    return GhgSource(
        category=category, id=str(m.get("id")), name=str(m.get("name") or m.get("id")),
        name_en=str(m.get("name_en") or m.get("name") or m.get("id")), site=m.get("site"),
        gas="CO2", activity=m.get("quantity"), unit=unit,
        factor=None if ef is None else ef.get("factor"),
        factor_unit="" if ef is None else str(ef.get("factor_unit")),
        factor_source=publication(m, rows), emission_t=m.get("tco2"), tco2e=m.get("tco2"),
        evidence=f"计量表 meter {m.get('id')}"
        + (f", 数据覆盖率 coverage {coverage:.1%}" if isinstance(coverage, int | float) else ""),
    )  # fmt: skip


def _no_factor(m: Json, table: Json) -> GhgNote:
    mid, carrier, version = m.get("id"), m.get("carrier"), table.get("version")
    return GhgNote(
        text=f"计量表 {mid} ({carrier}) 在排放因子表 {version} 中无排放因子: 未计入排放总量。"
        "请按供应商或适用标准的因子补充。",
        text_en=f"meter {mid} ({carrier}) has no emission factor in table {version}: it is not "
        "in the total. Add the supplier's or the applicable standard's factor.",
    )


def _category(c: Category, sources: list[GhgSource]) -> GhgCategory:
    counted = [s.tco2e for s in sources if s.category == c and s.tco2e is not None]
    zh, en = CATEGORIES[c]
    return GhgCategory(id=c, name=zh, name_en=en, tco2e=sum(counted) if counted else None)


# --- the report's signed block ----------------------------------------------------------

GHG_VERSION = 1


def ghg_block(
    report: Json, process: list[ProcessEmission], entered: Mapping[str, Any] | None
) -> Json:
    """The report's `ghg` block: the process emissions entered for its period (`entered`:
    which row, by whom and when; None when nothing was entered) and the GHG report
    computed from the report's own figures (`report`), or why it could not be (`error`)."""
    try:
        ghg, error = ghg_report(report, process).model_dump(mode="json"), None
    except ReportFormatError as exc:
        ghg, error = None, str(exc)
    return {
        "version": GHG_VERSION,
        "entered": None if entered is None else dict(entered),
        "process": [p.model_dump(mode="json") for p in process],
        "report": ghg,
        "error": error,
    }


def ghg_of(r: Json) -> GhgReport | None:
    """The GHG report a report's `ghg` block holds; None without one (a report made before
    the block) or when it could not be computed."""
    block = r.get("ghg")
    if not isinstance(block, Mapping) or not isinstance(block.get("report"), Mapping):
        return None
    return GhgReport.model_validate(block["report"])


def ghg_problems(doc: Json) -> list[str]:
    """What in a report's `ghg` block its own figures and entries contradict: a GHG report
    (or an error) other than the one computed again from the report and the block's
    process emissions. [] for a report made before the block."""
    block = doc.get("ghg")
    if block is None:
        return []
    if not isinstance(block, Mapping) or not isinstance(block.get("process"), list):
        return ["ghg: not an object with a list of process emissions"]
    try:
        process = [ProcessEmission.model_validate(p) for p in block["process"]]
    except ValueError as exc:
        return [f"ghg: a process emission is not one ({exc})"]
    again = ghg_block(doc, process, block.get("entered"))
    if block.get("error") != again["error"]:
        return [f"ghg: the report says {block.get('error')!r}, its figures give "
                f"{again['error']!r}"]  # fmt: skip
    claimed, ghg = block.get("report"), again["report"]
    if ghg is None or claimed == ghg:
        return []
    if not isinstance(claimed, Mapping):
        return ["ghg: the block holds no GHG report"]
    return [
        f"ghg: {key} in the report differs from the one its figures and entries give"
        + (f" ({claimed.get(key)!r}, computed again {ghg[key]!r})"
           if not isinstance(ghg[key], list | dict) else "")
        for key in ghg
        if claimed.get(key) != ghg[key]
    ]  # fmt: skip
