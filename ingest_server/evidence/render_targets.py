"""A report's targets as both renderings show them: an HTML section for the page
(evidence/render_html.py) and a sheet for the workbook (evidence/render_xlsx.py).

Each KPI against each target (evidence/targets.py): the figure, the target (comparison,
threshold, due date), the result (met, not met, for reference, not comparable and why)
with how far, the programme, and the source with how it applies. Like the other
views they compute nothing: every result shown is the report's own. A report made
before the block existed shows neither.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped,unused-ignore]
from openpyxl.styles import Font, PatternFill  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.columns import DASH, Json, kpi_value, number
from ingest_server.evidence.markup import Raw, Td, bi, esc, grid, section
from ingest_server.evidence.targets import TargetResult, results_of

STATUS = {
    "met": ("达到", "met"),
    "not_met": ("未达到", "not met"),
    "reference": ("参考 (区域目标, 不判定)", "for reference (a region's target, no verdict)"),
    "not_comparable": ("无法比较", "not comparable"),
}
REASON = {
    "no_kpi": ("报告中无此指标", "the report has no such KPI"),
    "no_figure": ("指标无数值", "the KPI has no figure"),
    "unit_mismatch": ("单位不符", "unit mismatch"),
}
SIGN = {">=": "≥", ">": ">", "<=": "≤", "<": "<"}
SHEET = "目标 Targets"


def target_text(r: TargetResult) -> str:
    """ "> 75 % (2027-12-31)": the comparison the figure is held to, and when it is due."""
    t = r.target
    due = f" ({t.by.isoformat()})" if t.by else ""
    return f"{SIGN[t.comparison]} {number(t.threshold)} {t.unit}{due}"


def result_texts(r: TargetResult) -> tuple[str, str]:
    """The result in Chinese and English, with how far or why it is not comparable."""
    zh, en = STATUS[r.status]
    if r.reason == "unit_mismatch":
        return (
            f"{zh}: {REASON['unit_mismatch'][0]} (目标 {r.target.unit}, 指标 {r.unit or DASH})",
            f"{en}: unit mismatch (target in {r.target.unit}, KPI in {r.unit or DASH})",
        )
    if r.reason is not None:
        return f"{zh}: {REASON[r.reason][0]}", f"{en}: {REASON[r.reason][1]}"
    if r.difference is None:
        return zh, en
    if r.difference_unit == "pp":
        return f"{zh} ({r.difference:+.1f} 个百分点)", f"{en} ({r.difference:+.1f} pp)"
    sign = "+" if r.difference >= 0 else "-"
    far = f"{sign}{number(abs(r.difference))} {r.difference_unit or ''}".rstrip()
    return f"{zh} ({far})", f"{en} ({far})"


_CLS = {"met": "ok", "not_met": "bad"}


def targets_html(report: Json) -> str:
    """The section "目标对照 Targets"; "" for a report without a targets block."""
    block = report.get("targets")
    if not isinstance(block, Mapping):
        return ""
    rows = []
    for r in results_of(block):
        t = r.target
        origin = bi("企业填报", "entered") if r.origin == "entered" else ""
        note = bi(t.note, t.note_en) if t.note or t.note_en else ""
        rows.append([
            Td(bi(r.name or r.kpi, r.name_en or "")),
            Td(kpi_value(r.value, r.unit), "num"),
            Td(target_text(r), "nowrap"),
            Td(bi(*result_texts(r)), _CLS.get(r.status, "")),
            Td(Raw(f"{bi(t.programme, t.programme_en)} {origin}")),
            Td(Raw(f"{esc(t.source)}{'<br>' + note if note else ''}")),
        ])  # fmt: skip
    heads = [
        bi("指标", "KPI"), bi("数值", "Value"), bi("目标", "Target"), bi("结论", "Result"),
        bi("规划 / 等级", "Programme / grade"), bi("来源", "Source"),
    ]  # fmt: skip
    cited = bi(
        f"内置目标表 {block.get('version')}: {block.get('title')}",
        "Built-in target table cited; a region's target is shown for reference, never as met",
    )
    return section("目标对照", "Targets", f"<p>{cited}</p>{grid(heads, rows)}", "keep")


_COLUMNS = (
    "指标 KPI", "名称 Name", "数值 Value", "单位 Unit", "比较 Comparison", "阈值 Threshold",
    "目标单位 Target unit", "期限 By", "范围 Scope", "结论 Result", "是否成立 Holds",
    "差值 Difference", "差值单位 Difference unit", "原因 Reason", "规划 Programme",
    "规划(英文) Programme (English)", "来源 Source", "说明 Note", "说明(英文) Note (English)",
    "来源类别 Origin",
)  # fmt: skip


def _cell(ws: Any, row: int, col: int, value: object, fmt: str | None = None) -> Any:
    """As render_xlsx writes a cell: text never a formula (a programme the enterprise
    typed as "=..." stays text), characters XLSX cannot hold replaced, dates as dates."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = ws.cell(row=row, column=col, value=value)
    if isinstance(value, str) and cell.data_type == "f":
        cell.data_type = "s"
    if isinstance(value, dt.date):
        cell.number_format = "yyyy-mm-dd"
    elif fmt and isinstance(value, int | float) and not isinstance(value, bool):
        cell.number_format = fmt
    return cell


def _in_percent(v: float | None, unit: str | None) -> tuple[float | None, str | None]:
    """A figure or threshold in "%" as the workbook writes a KPI in %: its fraction,
    shown as a percent (render_xlsx's convention)."""
    if v is None or unit is None or unit.strip() != "%":
        return v, None
    return v / 100, "0.0%"


def targets_sheet(wb: Any, report: Json) -> Any:
    """The sheet "目标 Targets" of the workbook, a row per result; None (no sheet) for a
    report without a targets block. A figure and threshold in % are written as their
    fractions shown as percents, a difference in percentage points as such ("-10.0 pp")."""
    block = report.get("targets")
    if not isinstance(block, Mapping):
        return None
    ws = wb.create_sheet(SHEET)
    _cell(ws, 1, 1, "内置目标表 Built-in table").font = Font(bold=True)
    _cell(ws, 1, 2, str(block.get("version")))
    _cell(ws, 1, 3, str(block.get("title")))
    fill = PatternFill("solid", fgColor="E8EDF3")
    for i, head in enumerate(_COLUMNS, start=1):
        cell = _cell(ws, 3, i, head)
        cell.font, cell.fill = Font(bold=True), fill
    for n, r in enumerate(results_of(block), start=4):
        t = r.target
        zh, en = result_texts(r)
        pp = '0.0" pp"' if r.difference_unit == "pp" else None
        values: list[tuple[object, str | None]] = [
            (r.kpi, None), (r.name, None), _in_percent(r.value, r.unit), (r.unit, None),
            (t.comparison, None), _in_percent(t.threshold, t.unit), (t.unit, None),
            (t.by, None), (t.scope, None), (f"{zh} / {en}", None), (r.holds, None),
            (r.difference, pp), (r.difference_unit, None), (r.reason, None),
            (t.programme, None), (t.programme_en, None), (t.source, None), (t.note, None),
            (t.note_en, None), (r.origin, None),
        ]  # fmt: skip
        for i, (v, fmt) in enumerate(values, start=1):
            _cell(ws, n, i, v, fmt)
    ws.freeze_panes = "B4"
    return ws
