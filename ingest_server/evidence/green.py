"""The green-factory indicator sheet (绿色工厂评价): each indicator of a report's period
beside the baseline value (基准值) and the leading value (引领值) the enterprise enters for
its sector, pure: the caller gives the report document and the entries.

    report (dict, as `ingest-server report` writes it) + GreenEntries
        └── indicators → [GreenRow] in the standard's order → render_green.green_sheet

GB/T 36132-2025 (绿色工厂评价通则, in force 2025-12-31) groups its indicators under five
first-level indicators, in this order: 能源低碳化, 资源高效化, 生产洁净化, 产品绿色化,
用地集约化, with second- and third-level indicators under them that sector standards
extend, and scores a quantitative indicator by comparing the enterprise's figure with a
baseline and a leading value. Which third-level indicators the standard itself lists, its
clause numbers and its scoring formula could not be checked against its text
(docs/green-ghg.md): so the rows keep the five groups in that order, place the measured
indicators in them, and take every other indicator (its group, names, unit, direction,
value and evidence) from the enterprise. No score is computed: only where the figure
stands (`Position`), which needs no formula.

Measured here, from the report's own figures: energy, water and carbon per unit of good
product, and the share of renewable electricity (on-site PV, measured by meters of role
`generation` or entered, plus renewable power bought with certificates, entered). Carbon
per unit is the report's CO2 KPI (energy-related CO2) per unit; process emissions are in
the GHG report (evidence/ghg.py), not in this figure.

A report signs the sheet as its `green` block (`green_block`, added by evidence/report.py
after the figures, with the entries in force for its period); `green_problems` computes
it again from the report's figures and the block's entries (evidence/verify.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ingest_server.evidence.columns import Json, ReportFormatError, check_format, kpis_of
from ingest_server.evidence.ghg import ProcessEmission
from ingest_server.kpi.results import Kpi

Direction = Literal["lower", "higher"]  # which way is better
Position = Literal["below_baseline", "between", "leading"]
Group = Literal[
    "energy_low_carbon", "resource_efficiency", "clean_production", "green_product",
    "land_intensive",
]  # fmt: skip

# the first-level indicators (一级指标) in the standard's order: zh, en
GROUPS: dict[str, tuple[str, str]] = {
    "energy_low_carbon": ("能源低碳化", "Low-carbon energy"),
    "resource_efficiency": ("资源高效化", "Resource efficiency"),
    "clean_production": ("生产洁净化", "Clean production"),
    "green_product": ("产品绿色化", "Green products"),
    "land_intensive": ("用地集约化", "Intensive land use"),
}
POSITIONS: dict[str, tuple[str, str]] = {
    "below_baseline": ("未达基准值", "below the baseline value"),
    "between": ("达到基准值, 未达引领值", "at the baseline value, short of the leading value"),
    "leading": ("达到引领值", "at or beyond the leading value"),
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IndicatorEntry(_Strict):
    """The enterprise's entry for one indicator: the sector's baseline and leading value
    with where they come from, and, for an indicator no meter measures, its own figure,
    names, unit, direction and the evidence behind the figure."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    baseline: float | None = Field(default=None, description="基准值, in the unit")
    leading: float | None = Field(default=None, description="引领值, in the unit")
    reference: str = Field(default="", description="where baseline and leading come from")
    # an entered indicator only (a measured one takes all of this from the report)
    group: Group | None = None
    name: str = ""
    name_en: str = ""
    unit: str | None = Field(default=None, description='"" for a dimensionless figure')
    direction: Direction | None = None
    value: float | None = None
    evidence: str = Field(default="", description="the record behind an entered value")


class PvEntry(_Strict):
    """On-site generation (e.g. rooftop PV) used by the plant: measured by the meters
    named, or entered as a figure with its evidence; what was fed into the grid is
    entered and subtracted. Renewable power bought (green certificates, 绿电交易) is
    entered with its evidence: it is inside the grid electricity the meters measured."""

    meters: list[str] = []
    generation_kwh: float | None = Field(default=None, ge=0)
    exported_kwh: float = Field(default=0.0, ge=0)
    purchased_renewable_kwh: float = Field(default=0.0, ge=0)
    evidence: str = ""

    @model_validator(mode="after")
    def _one_source(self) -> PvEntry:
        if self.meters and self.generation_kwh is not None:
            raise ValueError("on-site generation: give the PV meters or generation_kwh, not both")
        return self


class GreenEntries(_Strict):
    """What the enterprise enters for the green-factory sheet."""

    indicators: list[IndicatorEntry] = []
    pv: PvEntry | None = None

    @model_validator(mode="after")
    def _unique(self) -> GreenEntries:
        seen: set[str] = set()
        for e in self.indicators:
            if e.id in seen:
                raise ValueError(f"indicator {e.id} is entered twice: keep one entry")
            seen.add(e.id)
        return self


class PeriodEntries(GreenEntries):
    """A period's entries as the enterprise gives them (`ingest-server green set`'s file,
    the body of PUT /enterprises/{e}/green): the green-factory values and the process
    emissions of the GHG report (evidence/ghg.py)."""

    process_emissions: list[ProcessEmission] = Field(default_factory=list)


class GreenRow(_Strict):
    """One row of the sheet."""

    id: str
    group: str
    group_name: str
    group_name_en: str
    name: str
    name_en: str
    unit: str
    direction: Direction
    value: float | None
    origin: Literal["measured", "entered"]
    basis: str  # the measured figure's formula and inputs, or the entered evidence
    coverage: float | None  # a measured figure's data coverage, 0..1
    baseline: float | None
    leading: float | None
    reference: str
    position: Position | None
    position_name: str
    position_name_en: str
    note: str


class _Label(BaseModel):
    """What an indicator is: where it sits, its names, unit and better direction."""

    model_config = ConfigDict(frozen=True)

    id: str
    group: Group
    name: str
    name_en: str
    unit: str  # a measured one's "{u}": the unit of output, filled from the report
    direction: Direction


class _Figure(NamedTuple):
    value: float | None
    origin: Literal["measured", "entered"]
    basis: str
    coverage: float | None
    note: str


# the measured indicators, in their group's order
MEASURED = (
    _Label(id="energy_per_unit", group="energy_low_carbon", name="单位产品综合能耗",
              name_en="Energy per unit of product", unit="kgce/{u}", direction="lower"),
    _Label(id="carbon_per_unit", group="energy_low_carbon", name="单位产品二氧化碳排放量",
              name_en="CO2 per unit of product", unit="kgCO2/{u}", direction="lower"),
    _Label(id="renewable_electricity_share", group="energy_low_carbon",
              name="可再生能源电力消费占比", name_en="Share of renewable electricity",
              unit="%", direction="higher"),
    _Label(id="water_per_unit", group="resource_efficiency", name="单位产品取水量",
              name_en="Water per unit of product", unit="m3/{u}", direction="lower"),
)  # fmt: skip
_KWH_PER = {"kWh": 1.0, "MWh": 1000.0}


def position(value: float, baseline: float, leading: float, direction: Direction) -> Position:
    """Where a figure stands: reaching the baseline value counts as between, reaching the
    leading value as leading (both inclusive)."""
    if direction == "lower":
        if value <= leading:
            return "leading"
        return "between" if value <= baseline else "below_baseline"
    if value >= leading:
        return "leading"
    return "between" if value >= baseline else "below_baseline"


def indicators(report: Json, entries: GreenEntries) -> list[GreenRow]:
    """The sheet's rows: the five groups in the standard's order, in each the measured
    indicators first, then the entered ones in the order entered."""
    check_format(report)
    kpis = {k.id: k for k in kpis_of(report.get("kpis") or [])}
    by_id = {e.id: e for e in entries.indicators}
    measured_ids = {m.id for m in MEASURED}
    rows: list[GreenRow] = []
    for m in MEASURED:
        value, basis, coverage, note = _measured(m.id, report, kpis, entries.pv)
        label = m.model_copy(update={"unit": m.unit.format(u=_output_unit(kpis))})
        entry = by_id.get(m.id)
        if entry is not None:
            _no_own_figure(entry)
        rows.append(_row(label, _Figure(value, "measured", basis, coverage, note), entry))
    for e in entries.indicators:
        if e.id in measured_ids:
            continue
        if e.group is None or e.direction is None or not e.name or e.unit is None:
            raise ReportFormatError(_unmeasured(e.id))
        label = _Label(id=e.id, group=e.group, name=e.name, name_en=e.name_en or e.name,
                       unit=e.unit, direction=e.direction)  # fmt: skip
        note = "" if e.value is not None else "未填报 / not entered"
        rows.append(_row(label, _Figure(e.value, "entered", e.evidence, None, note), e))
    order = list(GROUPS)
    return sorted(rows, key=lambda r: order.index(r.group))  # stable: in-group order kept


class EntryError(ReportFormatError):
    """A problem of the entries whatever the report, worded in English and Chinese."""

    def __init__(self, message: str, message_zh: str) -> None:
        super().__init__(message)
        self.message_zh = message_zh


class Problem(NamedTuple):
    """One of `entry_problems`: in English (the CLI's), and in Chinese (the console's)."""

    en: str
    zh: str


def _no_own_figure(entry: IndicatorEntry) -> None:
    own = [f for f in ("group", "name", "name_en", "unit", "direction", "value", "evidence")
           if getattr(entry, f) not in (None, "")]  # fmt: skip
    if own:
        raise EntryError(
            f"indicator {entry.id} is measured: enter only its baseline, leading value and "
            f"reference, not its {', '.join(own)}",
            f"指标 {entry.id} 由计量表实测: 只填基准值、引领值和出处, 不要填 {', '.join(own)}",
        )


def _row(label: _Label, fig: _Figure, entry: IndicatorEntry | None) -> GreenRow:
    """The row of an indicator: its figure placed between the entered references."""
    base = entry.baseline if entry else None
    lead = entry.leading if entry else None
    direction = label.direction
    _in_order(label.id, base, lead, direction)
    note, pos = fig.note, None
    if fig.value is not None and base is not None and lead is not None:
        pos = position(fig.value, base, lead, direction)
    elif fig.value is not None:
        note = "; ".join(filter(None, [note, "未填基准值或引领值 / no baseline or leading value"]))
    zh, en = POSITIONS[pos] if pos else ("", "")
    gzh, gen = GROUPS[label.group]
    return GreenRow(
        id=label.id, group=label.group, group_name=gzh, group_name_en=gen, name=label.name,
        name_en=label.name_en, unit=label.unit, direction=direction, value=fig.value,
        origin=fig.origin, basis=fig.basis, coverage=fig.coverage, baseline=base,
        leading=lead, reference=entry.reference if entry else "", position=pos,
        position_name=zh, position_name_en=en, note=note,
    )  # fmt: skip


def _in_order(id: str, base: float | None, lead: float | None, direction: Direction) -> None:
    if base is not None and lead is not None:
        better = lead <= base if direction == "lower" else lead >= base
        if not better:
            raise EntryError(
                f"indicator {id}: the leading value {lead:g} is worse than the baseline "
                f"value {base:g} for an indicator where {direction} is better: swap them or "
                f"check the sector's table",
                f"指标 {id}: 引领值 {lead:g} 比基准值 {base:g} 差 (此指标"
                f"{'越低越好' if direction == 'lower' else '越高越好'}): "
                "请对调两者或核对行业对标表",
            )


def entry_problems(entries: GreenEntries) -> list[Problem]:
    """What in the entries is wrong whatever the report: a measured indicator given its own
    figure, an entered one without its group, name, unit or direction, a leading value
    worse than the baseline. (A PV meter or figure is checked against a report's.)"""
    measured = {m.id: m for m in MEASURED}
    out = []
    for e in entries.indicators:
        try:
            if e.id in measured:
                _no_own_figure(e)
                _in_order(e.id, e.baseline, e.leading, measured[e.id].direction)
            elif e.group is None or e.direction is None or not e.name or e.unit is None:
                raise _unmeasured(e.id)
            else:
                _in_order(e.id, e.baseline, e.leading, e.direction)
        except EntryError as exc:
            out.append(Problem(str(exc), exc.message_zh))
    return out


def _unmeasured(id: str) -> EntryError:
    measured = ", ".join(sorted(m.id for m in MEASURED))
    return EntryError(
        f"indicator {id}: no meter measures it, so enter its group, name, unit and "
        f"direction (measured here: {measured})",
        f"指标 {id}: 没有计量表测量它, 请填写其一级指标、名称、单位和方向 (可实测的: {measured})",
    )


def _output_unit(kpis: Mapping[str, Kpi]) -> str:
    unit = kpis["energy_per_unit"].unit if "energy_per_unit" in kpis else None
    return unit.split("/", 1)[1] if unit and "/" in unit else "件"


def _measured(
    id: str, report: Json, kpis: Mapping[str, Kpi], pv: PvEntry | None
) -> tuple[float | None, str, float | None, str]:
    """A measured indicator's value, basis, coverage and note."""
    if id == "renewable_electricity_share":
        return _renewable_share(report, kpis, pv)
    if id == "carbon_per_unit":
        co2, per = kpis.get("carbon_tco2"), kpis.get("energy_per_unit")
        output = per.denominator if per else None
        if co2 is None or co2.value is None:
            return None, "", None, (co2.note if co2 else "") or "报告中无二氧化碳排放量 / no CO2"
        basis = (
            f"carbon_tco2 x 1000 / output ({', '.join(co2.inputs)}); 不含过程排放 / "
            "energy-related CO2 only"
        )
        if not output:
            return None, basis, co2.coverage, "需要产量 / enter the output for the period"
        return co2.value * 1000 / output, basis, co2.coverage, co2.note or ""
    k = kpis.get(id)
    if k is None:
        return None, "", None, f"报告中无此指标 / the report has no {id}"
    return k.value, f"{k.formula} ({', '.join(k.inputs)})", k.coverage, k.note or ""


def _renewable_share(
    report: Json, kpis: Mapping[str, Kpi], pv: PvEntry | None
) -> tuple[float | None, str, float | None, str]:
    """(on-site generation used + renewable power bought) / (grid electricity + on-site
    generation used) x 100; grid electricity is the report's electricity consumption."""
    grid = kpis.get("consumption_electricity")
    if grid is None or grid.value is None:
        return None, "", None, "报告中无用电量 / the report has no electricity consumption"
    grid_kwh = grid.value * _kwh_per(grid.unit, "consumption_electricity")
    if pv is None:
        return (0.0, "无现场发电、未购绿电 / no on-site generation or renewable power entered",
                grid.coverage, "")  # fmt: skip
    coverages = [grid.coverage] if grid.coverage is not None else []
    if pv.meters:
        meters = {m.get("id"): m for m in report.get("meters") or [] if isinstance(m, Mapping)}
        generated = 0.0
        for mid in pv.meters:
            m = _pv_meter(mid, meters, grid)
            generated += float(m["quantity"]) * _kwh_per(str(m.get("unit")), f"meter {mid}")
            if isinstance(m.get("coverage"), int | float):
                coverages.append(float(m["coverage"]))
        source = f"PV meters {', '.join(pv.meters)}"
    elif pv.generation_kwh is not None:
        generated, source = pv.generation_kwh, f"PV entered: {pv.evidence}"
    else:
        generated, source = 0.0, ""
    if pv.exported_kwh > generated:
        raise ReportFormatError(
            f"on-site generation: {pv.exported_kwh:g} kWh exported is more than the "
            f"{generated:g} kWh generated: check both figures"
        )
    used = generated - pv.exported_kwh
    total = grid_kwh + used
    if pv.purchased_renewable_kwh > grid_kwh:
        raise ReportFormatError(
            f"renewable power bought, {pv.purchased_renewable_kwh:g} kWh, is more than the "
            f"{grid_kwh:g} kWh of grid electricity measured in the period"
        )
    value = (used + pv.purchased_renewable_kwh) / total * 100 if total > 0 else None
    basis = (
        f"(on-site {used:g} kWh + bought {pv.purchased_renewable_kwh:g} kWh) / "
        f"(grid {grid_kwh:g} kWh + on-site {used:g} kWh); {source}"
        + (f"; {pv.evidence}" if pv.meters and pv.evidence else "")
    )
    coverage = sum(coverages) / len(coverages) if coverages else None
    return value, basis, coverage, ""


def _pv_meter(mid: str, meters: Mapping[Any, Json], grid: Kpi) -> Json:
    m = meters.get(mid)
    if m is None:
        raise ReportFormatError(
            f"PV meter {mid} is not a meter of this report (its meters: "
            f"{', '.join(str(k) for k in meters)})"
        )
    if m.get("carrier") != "electricity" or not isinstance(m.get("quantity"), int | float):
        raise ReportFormatError(
            f"PV meter {mid} has no electricity quantity in this report (carrier "
            f"{m.get('carrier')}, quantity {m.get('quantity')})"
        )
    if mid in grid.inputs:
        raise ReportFormatError(
            f"PV meter {mid} is counted in this report as electricity consumed from the grid "
            f"(a top-level electricity meter: in consumption and in CO2); on-site "
            f"generation must not be: declare it a generation meter in the registry"
        )
    return m


def _kwh_per(unit: str | None, what: str) -> float:
    try:
        return _KWH_PER[str(unit)]
    except KeyError:
        raise ReportFormatError(
            f"{what}: unit {unit!r} is not kWh or MWh; electricity shares need one of them "
            f"(a consumption mixing units cannot be added up)"
        ) from None


# --- the report's signed block ----------------------------------------------------------

GREEN_VERSION = 1


def green_block(report: Json, entries: GreenEntries, entered: Mapping[str, Any] | None) -> Json:
    """The report's `green` block: the entries in force for its period (`entered`: which
    row, by whom and when; None when nothing was entered) and the sheet's rows computed
    from the report's own figures. Entries the figures refuse (a PV meter the report
    does not have, bought power above the grid's) leave no rows and say why (`error`),
    so that the report is still issued."""
    try:
        rows, error = [r.model_dump(mode="json") for r in indicators(report, entries)], None
    except ReportFormatError as exc:
        rows, error = [], str(exc)
    return {
        "version": GREEN_VERSION,
        "entered": None if entered is None else dict(entered),
        "entries": entries.model_dump(mode="json"),
        "rows": rows,
        "error": error,
    }


def green_problems(doc: Json) -> list[str]:
    """What in a report's `green` block its own figures and entries contradict: rows (or
    an error) other than the sheet computed again from the report and the block's
    entries. [] for a report made before the block."""
    block = doc.get("green")
    if block is None:
        return []
    if not isinstance(block, Mapping) or not isinstance(block.get("rows"), list):
        return ["green: not an object with a list of rows"]
    try:
        entries = GreenEntries.model_validate(block.get("entries"))
    except ValueError as exc:
        return [f"green: the entries are not green-factory entries ({exc})"]
    again = green_block(doc, entries, block.get("entered"))
    if block.get("error") != again["error"]:
        return [f"green: the report says {block.get('error')!r}, its entries give "
                f"{again['error']!r}"]  # fmt: skip
    claimed, rows = block["rows"], again["rows"]
    if [r.get("id") if isinstance(r, Mapping) else None for r in claimed] != [
        r["id"] for r in rows
    ]:
        return [f"green: the rows listed are not the {len(rows)} indicators the report and "
                "its entries give, in order"]  # fmt: skip
    return [
        f"green {a['id']}: {key} {c.get(key)!r} in the report, {a[key]!r} computed again"
        for c, a in zip(claimed, rows, strict=True)
        for key in a
        if c.get(key) != a[key]
    ]


def notes_zh(report: Json) -> dict[str, str]:
    """The Chinese of each measured row's note, by indicator id, where the note is its
    KPI's English note (`_measured` copies the KPI's `note`; the report's `kpis` carry the
    KPI's `note_zh` beside it): the Chinese, then what `_row` appended (already "中文 /
    English"). The block itself keeps the English note, as it was signed; renderers show
    both. A row whose note is not its KPI's, or a report made before `note_zh`: absent."""
    block = report.get("green")
    if not isinstance(block, Mapping):
        return {}
    kpis = {k.get("id"): k for k in report.get("kpis") or [] if isinstance(k, Mapping)}
    out = {}
    for r in block.get("rows") or []:
        if not isinstance(r, Mapping) or r.get("origin") != "measured":
            continue
        k = kpis.get("carbon_tco2" if r.get("id") == "carbon_per_unit" else r.get("id")) or {}
        en, zh, note = k.get("note") or "", k.get("note_zh") or "", r.get("note") or ""
        if en and zh and note.startswith(en):
            out[str(r["id"])] = zh + note[len(en) :]
    return out
