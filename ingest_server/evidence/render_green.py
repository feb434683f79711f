"""The green-factory indicator sheet and the GHG report as a report shows them: sections
of the HTML page (evidence/render_html.py) and worksheets of its workbook (evidence/
render_xlsx.py), from the report's signed `green` and `ghg` blocks; a report made before
the blocks shows neither. The sheets are in the style of the workbook: headers in Chinese
and English, cells holding the figures as numbers (unrounded), number formats rounding
only what is shown, and the workbook's one convention for shares: a figure in "%" is
written as its fraction with a percent format (15.0 % is the cell 0.15), so a formula
over it computes as Excel users expect; dates are date cells. Like the other views they
compute nothing: every figure is the block's own.

    green block: [GreenRow] (evidence/green.py) --green_sheet / green_html--> 绿色工厂
    ghg block:   GhgReport (evidence/ghg.py)    --ghg_sheet / ghg_html-----> 温室气体
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ingest_server.evidence.columns import DASH, Json, exact, number, percent
from ingest_server.evidence.ghg import GhgReport, ghg_of
from ingest_server.evidence.green import GreenRow, notes_zh
from ingest_server.evidence.markup import Raw, Td, bi, esc, grid, section
from ingest_server.evidence.xlsx_cells import bold as _bold
from ingest_server.evidence.xlsx_cells import fit as _fit
from ingest_server.evidence.xlsx_cells import put as _put

GREEN_TITLE = "绿色工厂评价指标 Green-factory indicators"
GREEN_NOTE = (
    "依据 GB/T 36132-2025《绿色工厂评价通则》的一级指标顺序; 基准值和引领值由企业按所属行业填报, "
    "实测指标取自本报告的数据。未计算得分。",
    "In the order of the first-level indicators of GB/T 36132-2025; the baseline and "
    "leading values are entered by the enterprise for its sector, measured indicators are "
    "this report's figures. No score is computed.",
)
GHG_TITLE = "温室气体排放报告 Greenhouse-gas report"
GHG_NOTE = (
    "结构依据 GB/T 32151.29-2024《温室气体排放核算与报告要求 第29部分: 机械设备制造企业》: "
    "核算边界、排放源、活动数据、排放因子、排放量、总量。能源活动排放等于本报告的二氧化碳排放量。",
    "Structured after GB/T 32151.29-2024 (machinery and equipment manufacturing): boundary, "
    "sources, activity data, factors, emissions, total. The energy-related emissions equal "
    "this report's CO2 KPI.",
)
_ORIGIN = {"measured": "实测 measured", "entered": "填报 entered"}
_DIRECTION = {"lower": "越低越好 lower is better", "higher": "越高越好 higher is better"}
_FIGURE = "#,##0.0###"
_TONNES = "#,##0.000"
_SHARE = "0.0%"
_DATE = "yyyy-mm-dd"

_GREEN_HEADS = (
    "一级指标 Group", "编号 ID", "指标 Indicator", "指标(英文) Indicator (English)",
    "单位 Unit", "数值 Value", "来源 Origin", "基准值 Baseline", "引领值 Leading",
    "方向 Better", "位置 Position", "位置(英文) Position (English)", "数据覆盖率 Coverage",
    "依据 Basis", "基准值与引领值出处 Reference", "说明 Note",
)  # fmt: skip
_SOURCE_HEADS = (
    "类别 Category", "排放源 Source", "名称 Name", "名称(英文) Name (English)", "厂区 Site",
    "气体 Gas", "活动数据 Activity data", "单位 Unit", "排放因子 Factor",
    "因子单位 Factor unit", "因子来源 Factor publication", "排放量(t 该气体) Emission (t gas)",
    "排放量 tCO2e", "依据 Evidence",
)  # fmt: skip


def _heads(ws: Any, row: int, heads: Sequence[str]) -> None:
    for i, head in enumerate(heads, start=1):
        _bold(ws, row, i, head, fill=True)


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else percent / 100


def _date(value: object) -> object:
    """An ISO local date as a date cell's value; anything else as it is."""
    try:
        return dt.date.fromisoformat(value) if isinstance(value, str) else value
    except ValueError:
        return value


def green_sheet(wb: Any, rows: Sequence[GreenRow], zh: Mapping[str, str] | None = None) -> Any:
    """The indicator sheet, a row per indicator in the order given (the standard's);
    `zh`: a measured row's note in Chinese by id (evidence/green.py `notes_zh`), put
    before its English."""
    ws = wb.create_sheet("绿色工厂 Green factory")
    _bold(ws, 1, 1, GREEN_TITLE)
    _put(ws, 2, 1, GREEN_NOTE[0])
    _put(ws, 3, 1, GREEN_NOTE[1])
    _heads(ws, 5, _GREEN_HEADS)
    for n, r in enumerate(rows, start=6):
        share = r.unit == "%"
        figure = _SHARE if share else _FIGURE
        value, baseline, leading = (_fraction(x) if share else x
                                    for x in (r.value, r.baseline, r.leading))  # fmt: skip
        values: tuple[tuple[object, str | None], ...] = (
            (f"{r.group_name} {r.group_name_en}", None), (r.id, None), (r.name, None),
            (r.name_en, None), (r.unit, None), (value, figure), (_ORIGIN[r.origin], None),
            (baseline, figure), (leading, figure), (_DIRECTION[r.direction], None),
            (r.position_name or None, None), (r.position_name_en or None, None),
            (r.coverage, _SHARE), (r.basis or None, None), (r.reference or None, None),
            (_both((zh or {}).get(r.id), r.note) or None, None),
        )  # fmt: skip
        for i, (cell, fmt) in enumerate(values, start=1):
            _put(ws, n, i, cell, fmt)
    ws.freeze_panes = "C6"
    _fit(ws)
    return ws


def ghg_sheet(wb: Any, report: GhgReport) -> Any:
    """The GHG report: boundary, sources with activity data and factors, emissions by
    category, the total, and what could not be counted."""
    ws = wb.create_sheet("温室气体 GHG")
    _bold(ws, 1, 1, GHG_TITLE)
    _put(ws, 2, 1, GHG_NOTE[0])
    _put(ws, 3, 1, GHG_NOTE[1])
    ent, period = report.enterprise, report.period
    sites = "; ".join(
        f"{s.get('id')} {s.get('name') or ''} ({s.get('grid_region') or ''})" for s in report.sites
    )
    row = 5
    _bold(ws, row, 1, "核算边界 Boundary", fill=True)
    for label, values in (
        ("企业 Enterprise", (ent.get("name"), ent.get("name_en"), ent.get("id"))),
        ("统一社会信用代码 Credit code", (ent.get("credit_code"),)),
        ("厂区 Sites (grid region)", (sites,)),
        (
            "核算期 Period",
            (_date(period.get("from")), _date(period.get("to")), period.get("timezone")),
        ),
        ("未完结 Partial", (period.get("partial"),)),
        ("排放因子表 Emission factor table", (report.factor_table,)),
    ):
        row += 1
        _bold(ws, row, 1, label)
        for i, v in enumerate(values, start=2):
            cell = _put(ws, row, i, v)
            if isinstance(v, dt.date):
                cell.number_format = _DATE
    row += 2
    _bold(ws, row, 1, "排放源、活动数据与排放因子 Sources, activity data and factors", fill=True)
    row += 1
    _heads(ws, row, _SOURCE_HEADS)
    categories = {c.id: f"{c.name} {c.name_en}" for c in report.categories}
    for s in report.sources:
        row += 1
        for i, (value, fmt) in enumerate((
            (categories[s.category], None), (s.id, None), (s.name, None), (s.name_en, None),
            (s.site, None), (s.gas, None), (s.activity, _FIGURE), (s.unit, None),
            (s.factor, None), (s.factor_unit or None, None), (s.factor_source or None, None),
            (s.emission_t, _TONNES), (s.tco2e, _TONNES), (s.evidence or None, None),
        ), start=1):  # fmt: skip
            _put(ws, row, i, value, fmt)
    row += 2
    _bold(ws, row, 1, "排放量 Emissions (tCO2e)", fill=True)
    for label, value in (
        *((f"{c.name} {c.name_en}", c.tco2e) for c in report.categories),
        ("能源活动排放 (= 二氧化碳排放量 KPI) Energy-related (= the CO2 KPI)", report.energy_tco2),
        ("过程排放 Process", report.process_tco2e),
        ("排放总量 Total", report.total_tco2e),
    ):
        row += 1
        _bold(ws, row, 1, label)
        _put(ws, row, 2, value, _TONNES)
    row += 2
    _bold(ws, row, 1, "未计入 Not counted", fill=True)
    for gap in report.gaps or ():
        row += 1
        _put(ws, row, 1, gap.text)
        _put(ws, row, 2, gap.text_en)
    if not report.gaps:
        _put(ws, row + 1, 1, "无 / none")
    _fit(ws)
    return ws


# --- from a report's blocks -------------------------------------------------------------


def green_of(r: Json) -> Json | None:
    """A report's `green` block; None for a report made before it."""
    block = r.get("green")
    return block if isinstance(block, Mapping) else None


def rows_of(block: Json) -> list[GreenRow]:
    return [GreenRow.model_validate(x) for x in block.get("rows") or [] if isinstance(x, Mapping)]


def entered_text(block: Json) -> tuple[str, str]:
    """Who entered the block's entries and when, in Chinese and English."""
    e = block.get("entered")
    if not isinstance(e, Mapping):
        return (
            "企业未填报 (仅实测指标)",
            "nothing entered by the enterprise (measured figures only)",
        )
    who, at, row = e.get("by") or DASH, e.get("at") or DASH, e.get("id")
    note = f"; {e['note']}" if e.get("note") else ""
    return (f"由 {who} 于 {at} 填报 (第 {row} 号记录){note}",
            f"entered by {who} at {at} (entry {row}){note}")  # fmt: skip


def green_sheet_of(wb: Any, r: Json) -> Any:
    """The indicator sheet of a report with a `green` block; None (no sheet) without."""
    block = green_of(r)
    if block is None:
        return None
    ws = green_sheet(wb, rows_of(block), notes_zh(r))
    row = ws.max_row + 2
    for text in (*entered_text(block), block.get("error")):
        if text:
            _put(ws, row, 1, text)
            row += 1
    return ws


def ghg_sheet_of(wb: Any, r: Json) -> Any:
    """The GHG sheet of a report whose `ghg` block holds a GHG report; None without."""
    ghg, block = ghg_of(r), r.get("ghg")
    if ghg is None or not isinstance(block, Mapping):
        return None
    ws = ghg_sheet(wb, ghg)
    row = ws.max_row + 2
    for text in entered_text(block):
        _put(ws, row, 1, text)
        row += 1
    return ws


def _both(zh: str | None, en: str) -> str:
    """A note in Chinese, then in English: "中文 / English" as the sheets write them."""
    return f"{zh} / {en}" if zh else en


def _figure(v: float | None, unit: str) -> str:
    return f"{number(v)}%" if unit == "%" and v is not None else number(v)


def _error(block: Json) -> str:
    error = block.get("error")
    if not error:
        return ""
    msg = bi("无法由本报告的数据与企业填报计算:", "could not be computed from this report's "
             "figures and the enterprise's entries:")  # fmt: skip
    return f'<p class="warn">{msg} <code>{esc(error)}</code></p>'


def green_html(r: Json) -> str:
    """The indicator sheet as a section, grouped by the first-level indicators; "" for a
    report made before the block."""
    block = green_of(r)
    if block is None:
        return ""
    heads = [bi("一级指标", "Group"), bi("指标", "Indicator"), bi("单位", "Unit"),
             bi("数值", "Value"), bi("来源", "Origin"), bi("基准值", "Baseline"),
             bi("引领值", "Leading"), bi("位置", "Position"), bi("覆盖率", "Coverage"),
             bi("依据与出处", "Basis and reference")]  # fmt: skip
    rows = []
    notes = notes_zh(r)
    for g in rows_of(block):
        zh, en = _ORIGIN[g.origin].split(" ", 1)
        basis = esc("; ".join(x for x in (g.basis, g.reference, notes.get(g.id) or g.note) if x))
        if g.id in notes:
            basis += f'<span class="en">{esc(g.note)}</span>'
        rows.append([
            Td(bi(g.group_name, g.group_name_en)), Td(bi(g.name, g.name_en)), Td(g.unit),
            Td(_figure(g.value, g.unit), "num"), Td(bi(zh, en)),
            Td(_figure(g.baseline, g.unit), "num"), Td(_figure(g.leading, g.unit), "num"),
            Td(bi(g.position_name, g.position_name_en) if g.position else DASH),
            Td(percent(g.coverage), "num"), Td(Raw(basis) if basis else DASH),
        ])  # fmt: skip
    zh, en = entered_text(block)
    return section(
        "绿色工厂评价指标",
        "Green-factory indicators",
        f"<p>{bi(*GREEN_NOTE)}</p><p>{bi(zh, en)}</p>{_error(block)}{grid(heads, rows)}",
        "landscape",
    )


def ghg_html(r: Json) -> str:
    """The GHG report as a section: boundary, sources with activity data and factors,
    emissions by category and in total, what is not counted; "" for a report made before
    the block."""
    block = r.get("ghg")
    if not isinstance(block, Mapping):
        return ""
    ghg = ghg_of(r)
    zh, en = entered_text(block)
    intro = f"<p>{bi(*GHG_NOTE)}</p><p>{bi(zh, en)}</p>{_error(block)}"
    if ghg is None:
        return section("温室气体排放报告", "Greenhouse-gas report", intro)
    ent, p = ghg.enterprise, ghg.period
    sites = "; ".join(f"{s.get('id')} {s.get('name') or ''} ({s.get('grid_region') or ''})"
                      for s in ghg.sites)  # fmt: skip
    boundary = [
        ("企业", "Enterprise", f"{ent.get('name') or ''} {ent.get('name_en') or ''}"),
        ("统一社会信用代码", "Credit code", ent.get("credit_code")),
        ("厂区 (电网区域)", "Sites (grid region)", sites),
        ("核算期", "Period", f"{p.get('from')} 至 to {p.get('to')} ({p.get('timezone')})"),
        ("排放因子表", "Emission factor table", ghg.factor_table),
    ]
    meta = "".join(f"<tr><th>{bi(z, e)}</th><td>{esc(v)}</td></tr>" for z, e, v in boundary)
    names = {c.id: (c.name, c.name_en) for c in ghg.categories}
    heads = [bi("类别", "Category"), bi("排放源", "Source"), bi("气体", "Gas"),
             bi("活动数据", "Activity data"), bi("排放因子", "Factor"),
             bi("因子来源", "Factor publication"), bi("排放量 tCO2e", "Emission tCO2e"),
             bi("依据", "Evidence")]  # fmt: skip
    sources = [[
        Td(bi(*names[s.category])), Td(bi(s.name, s.name_en)), Td(s.gas),
        Td(f"{number(s.activity)} {s.unit}", "num"),
        Td(f"{exact(s.factor)} {s.factor_unit}" if s.factor is not None else DASH, "num"),
        Td(s.factor_source or DASH), Td(_tonnes(s.tco2e), "num"), Td(s.evidence or DASH),
    ] for s in ghg.sources]  # fmt: skip
    totals = [
        *((c.name, c.name_en, c.tco2e) for c in ghg.categories),
        ("能源活动排放 (= 二氧化碳排放量指标)", "Energy-related (= the CO2 KPI)", ghg.energy_tco2),
        ("过程排放", "Process", ghg.process_tco2e),
        ("排放总量", "Total", ghg.total_tco2e),
    ]
    total_rows = "".join(f"<tr><th>{bi(z, e)}</th><td class=\"num\">{esc(_tonnes(v))}</td></tr>"
                         for z, e, v in totals)  # fmt: skip
    gaps = "".join(f"<li>{bi(g.text, g.text_en)}</li>" for g in ghg.gaps) or (
        f"<li>{bi('无', 'none')}</li>"
    )
    return section(
        "温室气体排放报告",
        "Greenhouse-gas report",
        intro
        + f'<h3>{bi("核算边界", "Boundary")}</h3><table class="meta">{meta}</table>'
        + f"<h3>{bi('排放源、活动数据与排放因子', 'Sources, activity data and factors')}</h3>"
        + grid(heads, sources)
        + f'<h3>{bi("排放量", "Emissions (tCO2e)")}</h3><table class="meta">{total_rows}</table>'
        + f"<h3>{bi('未计入', 'Not counted')}</h3><ul>{gaps}</ul>",
        "landscape",
    )


def _tonnes(v: float | None) -> Raw:
    return Raw(DASH if v is None else f"{v:,.3f}")
