"""An evidence report as a printable HTML page and as an XLSX workbook.

    report (dict, format "factory-evidence.report" v1: the signed JSON)
        │   column tables (EQUIPMENT, METERS, …): JSON key, bilingual header, kind
        ├── render_html → one self-contained page (inline CSS, A4) → browser → PDF
        └── render_xlsx → 概览 Summary, 设备 Equipment, 计量 Meters, 产量 Production,
                          基准 Baseline, 数据质量 Data quality, 系数 Factors, 签名 Signature

Both are views of the JSON, which is the evidence the signature covers. They compute
nothing: every figure shown is one of the report's own, at most converted in its unit
(seconds to hours, a fraction to a percent). A KPI in "%" carries percent (83.3, as
programmes state their targets); per-equipment ratios and coverages are fractions. The
workbook keeps the JSON's numbers as numbers, unrounded, so a verifier can recompute
from the sheets; only the number formats round what is displayed. (openpyxl writes a
double with 16 significant digits, Excel works with 15: a value may come back one unit
in its last place off; the JSON is exact.)
One column table per list drives both renderings, so the page and the workbook cannot
disagree on what a column is or how it is shown.

Names and notes are typed in by the enterprise: every string is escaped in the page, and
stays a string in the workbook (a name starting with "=" is not a formula).
"""

from __future__ import annotations

import datetime as dt
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# openpyxl ships no type information; the ignores stay quiet should stubs be installed
from openpyxl import Workbook  # type: ignore[import-untyped,unused-ignore]
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped,unused-ignore]
from openpyxl.styles import Font, PatternFill  # type: ignore[import-untyped,unused-ignore]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped,unused-ignore]

from ingest_server.errors import InvalidInputError

FORMAT = "factory-evidence.report"
FORMAT_VERSION = 1
TITLE = "智能工厂/绿色工厂关键指标测量证明"
TITLE_EN = "Measured KPI evidence"
MAX_HTML_ROWS = 200  # per data-quality list; the JSON and the workbook hold them all
DASH = "—"
LABELS = {  # Chinese for the format's enumerated values
    "electricity": "电力", "gas": "天然气", "water": "水", "diesel": "柴油", "heat": "热力",
    "steam": "蒸汽", "compressed_air": "压缩空气", "offline": "离线", "unknown": "状态未知",
    "no_data": "无数据", "rollover": "翻转", "reset": "复位", "discrete": "离散型",
    "process": "流程型",
}  # fmt: skip

Json = Mapping[str, Any]


class ReportFormatError(InvalidInputError, ValueError):
    """The document is not a report of the format and version rendered here."""


def _check(report: Json) -> None:
    if report.get("format") != FORMAT or report.get("format_version") != FORMAT_VERSION:
        raise ReportFormatError(
            f"expected format {FORMAT!r} version {FORMAT_VERSION}, got "
            f"{report.get('format')!r} version {report.get('format_version')!r}"
        )


# --- columns: one table per list of the report, for both renderings --------------------


class Column(NamedTuple):
    zh: str
    en: str
    key: str  # "parent.key" reaches one object down
    # text, entity (id with its names), enum, bool, pct, coverage, tce, seconds (shown in
    # hours), count, number, exact (shown as stored), instant (ISO UTC), kpi (by its unit),
    # scope (null: all sites)
    kind: str = "text"


TIME_BUCKETS = ("pot_s", "planned_downtime_s", "pbt_s", "apt_s", "setup_s", "idle_s",
                "down_s", "off_in_plan_s", "unknown_s", "running_outside_s")  # fmt: skip

# fmt: off
KPIS = (
    Column("编号", "ID", "id"), Column("指标", "KPI", "name"),
    Column("指标(英文)", "KPI (English)", "name_en"), Column("数值", "Value", "value", "kpi"),
    Column("单位", "Unit", "unit"), Column("公式", "Formula", "formula"),
    Column("分子", "Numerator", "numerator", "exact"),
    Column("分母", "Denominator", "denominator", "exact"),
    Column("数据覆盖率", "Coverage", "coverage", "coverage"), Column("说明", "Note", "note"),
    Column("输入", "Inputs", "inputs"),
)
EQUIPMENT = (
    Column("设备", "Equipment", "id", "entity"), Column("名称", "Name", "name"),
    Column("名称(英文)", "Name (English)", "name_en"), Column("厂区", "Site", "site"),
    Column("工序", "Process", "process"), Column("工序名称", "Process name", "process_name"),
    Column("关键", "Key process", "key_process", "bool"),
    Column("数控", "NC declared", "nc", "bool"),
    Column("计入实测", "NC measured", "nc_measured", "bool"),
    Column("生产设备", "Production", "production", "bool"),
    Column("接口", "Interface", "interface"),
    Column("理想节拍", "Ideal cycle s", "ideal_cycle_time_s", "exact"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
    Column("有数据", "Data", "delivered_data", "bool"),
    Column("日历时间", "Calendar", "time.calendar_s", "seconds"),
    Column("计划运行", "POT", "time.pot_s", "seconds"),
    Column("计划停机", "Planned down", "time.planned_downtime_s", "seconds"),
    Column("计划占用", "PBT", "time.pbt_s", "seconds"),
    Column("实际生产", "APT", "time.apt_s", "seconds"),
    Column("调整", "Setup", "time.setup_s", "seconds"),
    Column("空闲", "Idle", "time.idle_s", "seconds"),
    Column("故障", "Down", "time.down_s", "seconds"),
    Column("计划内关机", "Off in plan", "time.off_in_plan_s", "seconds"),
    Column("未知", "Unknown", "time.unknown_s", "seconds"),
    Column("计划外运行", "Running outside", "time.running_outside_s", "seconds"),
    Column("产量", "Produced", "parts.produced", "count"),
    Column("合格", "Good", "parts.good", "count"), Column("废品", "Scrap", "parts.scrap", "count"),
    Column("可用率", "Availability", "availability", "pct"),
    Column("性能率", "Effectiveness", "effectiveness", "pct"),
    Column("质量率", "Quality", "quality_ratio", "pct"), Column("综合效率", "OEE", "oee", "pct"),
    Column("利用率", "Utilisation", "utilisation", "pct"),
    Column("平均故障间隔", "MTBF", "mtbf_s", "seconds"),
    Column("平均修复", "MTTR", "mttr_s", "seconds"),
    Column("故障次数", "Down events", "down_events", "count"),
)
METERS = (
    Column("计量表", "Meter", "id", "entity"), Column("名称", "Name", "name"),
    Column("名称(英文)", "Name (English)", "name_en"), Column("厂区", "Site", "site"),
    Column("上级表", "Parent", "parent"), Column("介质", "Carrier", "carrier", "enum"),
    Column("用量", "Quantity", "quantity", "number"), Column("单位", "Unit", "unit"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
    Column("翻转", "Rollovers", "rollovers", "count"), Column("复位", "Resets", "resets", "count"),
    Column("折标煤", "tce", "tce", "tce"), Column("二氧化碳", "tCO2", "tco2", "tce"),
    Column("计入总量", "Top level", "top_level", "bool"),
)
PRODUCTION = (
    Column("厂区", "Site", "site", "scope"), Column("起", "From", "from"),
    Column("止", "To", "to"), Column("产量", "Output", "output", "number"),
    Column("单位", "Unit", "output_unit"),
    Column("工业增加值 万元", "Value added, 10k CNY", "value_added_10k_cny", "number"),
    Column("计入比例", "Share in period", "share", "pct"), Column("说明", "Note", "note"),
)
TAGS = (
    Column("设备", "Device", "device"), Column("标签", "Tag", "tag"),
    Column("用途", "Role", "role"), Column("收到", "Received", "received", "count"),
    Column("应收", "Expected", "expected", "count"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
)
GAPS = (
    Column("设备", "Device", "device"), Column("开始", "Start", "start", "instant"),
    Column("结束", "End", "end", "instant"), Column("时长", "Duration", "seconds", "seconds"),
    Column("类型", "Kind", "kind", "enum"),
)
ANOMALIES = (
    Column("设备", "Device", "device"), Column("标签", "Tag", "tag"),
    Column("时间", "Time", "ts", "instant"), Column("类型", "Flag", "flag", "enum"),
    Column("前值", "Previous", "prev_value", "exact"), Column("值", "Value", "value", "exact"),
    Column("计入增量", "Delta", "delta", "exact"),
)
ENERGY = (
    Column("介质", "Carrier", "carrier", "enum"), Column("单位", "Unit", "unit"),
    Column("系数", "Coefficient", "coefficient", "exact"),
    Column("系数单位", "Coefficient unit", "coefficient_unit"),
    Column("依据", "Basis", "basis"), Column("来源", "Source", "source"),
)
EMISSION = (
    Column("介质", "Carrier", "carrier", "enum"), Column("区域", "Region", "region"),
    Column("年份", "Year", "year"), Column("单位", "Unit", "unit"),
    Column("因子", "Factor", "factor", "exact"), Column("因子单位", "Factor unit", "factor_unit"),
    Column("来源", "Source", "source"),
)
# fmt: on


def _pick(columns: Sequence[Column], *keys: str) -> list[Column]:
    by_key = {c.key: c for c in columns}
    return [by_key[k] for k in keys]


def _get(item: Json, key: str) -> Any:
    head, _, tail = key.partition(".")
    value = item.get(head)
    if tail:
        return value.get(tail) if isinstance(value, Mapping) else None
    return value


# --- numbers and times, as shown -------------------------------------------------------


def _fixed(v: float | None, digits: int) -> str:
    return DASH if v is None else f"{v:,.{digits}f}"


def _percent(v: float | None) -> str:
    return DASH if v is None else f"{v * 100:.1f}%"


def _hours(seconds: float | None) -> str:
    return _fixed(None if seconds is None else seconds / 3600, 1)


def _number(v: float | None) -> str:
    """Counts as integers; other numbers with four significant digits, 1 to 6 decimals."""
    if v is None:
        return DASH
    if isinstance(v, int) or (math.isfinite(v) and v.is_integer()):
        return f"{int(v):,}"
    if not math.isfinite(v):
        return str(v)
    return _fixed(v, min(6, max(1, 3 - math.floor(math.log10(abs(v))))))


def _exact(v: object) -> str:
    return DASH if v is None else str(v)


def _kpi_value(value: float | None, unit: str | None) -> str:
    if value is None:
        return DASH
    if unit == "%":  # a KPI in "%" carries percent already (83.3)
        return f"{value:.1f}%"
    if unit in ("tce", "tCO2"):
        return f"{_fixed(value, 3)} {unit}"
    if unit == "h":
        return f"{_fixed(value, 1)} h"
    return f"{_number(value)} {unit or ''}".rstrip()


def _zone(name: object) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _local(ts: object, tz: ZoneInfo | None) -> str:
    """An ISO instant in the report's local time, to the second; unparsable: as given."""
    if not isinstance(ts, str):
        return DASH
    try:
        t = dt.datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if tz is not None and t.tzinfo is not None:
        t = t.astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M:%S")


HTML_NUMBERS: dict[str, Callable[[Any], str]] = {
    "pct": _percent,
    "tce": lambda v: _fixed(v, 3),
    "seconds": _hours,
    "count": _number,
    "number": _number,
    "exact": _exact,
}


# --- HTML ----------------------------------------------------------------------------


class _Raw(str):
    """Markup built here from escaped parts: inserted as is."""


class _Td(NamedTuple):
    content: object
    cls: str = ""


class _Ctx(NamedTuple):
    tz: ZoneInfo | None
    tz_name: str
    threshold: float | None


def _h(v: object) -> str:
    if isinstance(v, _Raw):
        return v
    return html.escape(DASH if v is None else str(v))


def _bi(zh: object, en: object) -> _Raw:
    """Chinese first, English under it."""
    return _Raw(f'{_h(zh)} <span class="en">{_h(en)}</span>')


def _yes(v: object) -> str:
    return DASH if v is None else ("✓" if v else "✗")


def _cover(v: float | None, threshold: float | None) -> _Td:
    low = v is not None and threshold is not None and v < threshold
    return _Td(_percent(v), "num low" if low else "num")


def _head(c: Column, ctx: _Ctx) -> _Raw:
    suffix = {"seconds": " h", "instant": f" ({ctx.tz_name})"}.get(c.kind, "")
    return _bi(c.zh, c.en + suffix)


def _cell(item: Json, c: Column, ctx: _Ctx) -> _Td:
    v = _get(item, c.key)
    if c.kind == "entity":
        names = f'{_h(item.get("name", ""))}<span class="en">{_h(item.get("name_en", ""))}</span>'
        return _Td(_Raw(f"<b>{_h(v)}</b> {names}"))
    if c.kind == "coverage":
        return _cover(v, ctx.threshold)
    if c.kind == "bool":
        return _Td(_yes(v), "c")
    if c.kind == "enum":
        return _Td(f"{LABELS.get(str(v), '')} {_exact(v)}".strip())
    if c.kind == "instant":
        return _Td(_local(v, ctx.tz), "nowrap")
    if c.kind == "scope":
        return _Td("全部 all" if v is None else v)
    if c.kind == "kpi":
        return _Td(_kpi_value(v, item.get("unit")), "num")
    if c.kind in HTML_NUMBERS:
        return _Td(HTML_NUMBERS[c.kind](v), "num")
    return _Td(v)


def _grid(heads: Sequence[object], rows: Sequence[Sequence[_Td]], *, total: int = -1) -> str:
    """A table; `total` above the rows given adds a line that points to the JSON."""
    head = "".join(f"<th>{_h(x)}</th>" for x in heads)
    body = [
        "<tr>" + "".join(f"<td{_attr(td.cls)}>{_h(td.content)}</td>" for td in row) + "</tr>"
        for row in rows
    ]
    span = f'colspan="{len(heads)}"'
    if not rows:
        body.append(f'<tr><td {span} class="none">{_bi("无", "none")}</td></tr>')
    if total > len(rows):
        more = total - len(rows)
        body.append(
            f'<tr><td {span} class="more">… 另有 {more} 行见 JSON / … {more} more in the JSON'
            "</td></tr>"
        )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _list(columns: Sequence[Column], items: Sequence[Json], ctx: _Ctx, limit: int = -1) -> str:
    shown = items if limit < 0 else items[:limit]
    rows = [[_cell(item, c, ctx) for c in columns] for item in shown]
    return _grid([_head(c, ctx) for c in columns], rows, total=len(items))


def _attr(cls: str) -> str:
    return f' class="{cls}"' if cls else ""


def _section(zh: str, en: str, body: str, cls: str = "") -> str:
    return f"<section{_attr(cls)}><h2>{_bi(zh, en)}</h2>{body}</section>"


def _h3(zh: str, en: str) -> str:
    return f"<h3>{_bi(zh, en)}</h3>"


PARTIAL = '<span class="mark partial">未完结 / partial</span>'


def _period(p: Json) -> _Raw:
    partial = f" {PARTIAL}" if p.get("partial") else ""
    return _Raw(
        f"{_h(p.get('from'))} 至 {_h(p.get('to'))} ({_h(p.get('timezone'))}){partial}"
        f'<span class="en">UTC [{_h(p.get("start"))}, {_h(p.get("end"))})</span>'
    )


# reports made before the report carried its own "notices" say the same on their face
_LEGACY_PARTIAL = (
    "partial_period",
    "统计期在报告生成时尚未结束。数值只含截至生成时刻的数据, 之后到达的数据会改变数值, "
    "本报告届时将不能通过验证。",
    "The period had not ended when this report was made: the figures cover the data up to "
    "then. Data arriving later will change the figures, and this report will then fail "
    "verification.",
)


def _notices(r: Json) -> list[tuple[str, str, str]]:
    """(code, Chinese, English) of each notice the report carries."""
    notices = r.get("notices")
    if isinstance(notices, list):
        return [(str(n.get("code")), str(n.get("text")), str(n.get("text_en"))) for n in notices]
    return [_LEGACY_PARTIAL] if (r.get("period") or {}).get("partial") else []


def _title_html(r: Json, ctx: _Ctx) -> str:
    ent, period = r.get("enterprise") or {}, r.get("period") or {}
    software, params = r.get("software") or {}, r.get("parameters") or {}
    marks = PARTIAL if period.get("partial") else ""
    if not r.get("signature"):
        marks += '<span class="mark draft">未签名草稿 / unsigned draft</span>'
    partial_note = "".join(
        f'<p class="warn" data-notice="{_h(zh_en[0])}">{_h(zh_en[1])}'
        f'<span class="en">{_h(zh_en[2])}</span></p>'
        for zh_en in _notices(r)
    )
    sites = "; ".join(
        f"{s.get('name') or ''} {s.get('name_en') or ''} "
        f"({s.get('timezone')}, 电网 grid {s.get('grid_region')})"
        for s in r.get("sites") or []
    )
    industry = str(params.get("industry"))
    generated = r.get("generated_at")
    meta = [
        ("企业名称", "Enterprise", _bi(ent.get("name"), ent.get("name_en"))),
        ("统一社会信用代码", "Unified social credit code", ent.get("credit_code")),
        ("统计期", "Period", _period(period)),
        ("生成时间", "Generated", _bi(f"{_local(generated, ctx.tz)} ({ctx.tz_name})", generated)),
        ("软件版本", "Software", f"{software.get('name')} {software.get('version')}"),
        ("报告编号", "Report ID", _Raw(f"<code>{_h(r.get('report_id'))}</code>")),
        ("厂区", "Sites", sites or None),
        ("计算参数", "Parameters",
         f"覆盖率阈值 coverage threshold {_percent(params.get('coverage_threshold'))}; "
         f"断线判定 gap after {params.get('gap_after_s')} s; "
         f"心跳 heartbeat {params.get('heartbeat_s')} s; "
         f"行业 industry {LABELS.get(industry, '')} {industry}"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{_bi(zh, en)}</th><td>{_h(v)}</td></tr>" for zh, en, v in meta)
    return (
        f'<header class="title keep"><div class="marks">{marks}</div><h1>{_h(TITLE)}</h1>'
        f'<p class="subtitle">{_h(TITLE_EN)}</p>{partial_note}'
        f'<table class="meta">{rows}</table></header>'
    )


def _kpis_html(kpis: Sequence[Json], ctx: _Ctx) -> str:
    rows = []
    for k in kpis:
        value = k.get("value")
        formula = _h(k.get("formula"))
        if k.get("numerator") is not None or k.get("denominator") is not None:
            ratio = f"= {_number(k.get('numerator'))} / {_number(k.get('denominator'))}"
            formula += f'<span class="en">{_h(ratio)}</span>'
        note = _h(k.get("note") or ("无法计算 / not computable" if value is None else ""))
        inputs = [str(i) for i in k.get("inputs") or []]
        if inputs:
            more = f" … (+{len(inputs) - 10})" if len(inputs) > 10 else ""
            note += f'<span class="en">输入 inputs: {_h(", ".join(inputs[:10]) + more)}</span>'
        rows.append([
            _Td(_bi(k.get("name") or k.get("id"), k.get("name_en"))),
            _Td(_kpi_value(value, k.get("unit")), "num value" if value is not None else "num null"),
            _Td(_Raw(formula)),
            _cover(k.get("coverage"), ctx.threshold),
            _Td(_Raw(note)),
        ])  # fmt: skip
    heads = [_bi("指标", "KPI"), _bi("数值", "Value"), _bi("公式", "Formula"),
             _bi("数据覆盖率", "Coverage"), _bi("说明", "Note")]  # fmt: skip
    return _section("关键指标", "Headline KPIs", _grid(heads, rows))


def _nc_html(r: Json, ctx: _Ctx) -> str:
    kpis = {k.get("id"): k for k in r.get("kpis") or []}
    equipment = r.get("equipment") or []
    key = [e for e in equipment if e.get("key_process")]
    sides = (
        ("申报", "Declared", "nc_rate_declared", [e for e in key if e.get("nc")],
         ("id", "process_name", "coverage", "delivered_data", "nc_measured")),
        ("实测", "Measured", "nc_rate_measured", [e for e in equipment if e.get("nc_measured")],
         ("id", "process_name", "coverage", "interface", "nc")),
    )  # fmt: skip
    body = []
    for zh, en, kpi_id, members, keys in sides:
        k = kpis.get(kpi_id) or {}
        ratio = f"{_number(k.get('numerator'))} / {_number(k.get('denominator'))}"
        ratio = f"{k.get('formula')} = {ratio}"
        body.append(
            f'<div class="side"><h3>{_bi(zh, en)} '
            f'<span class="figure">{_h(_kpi_value(k.get("value"), k.get("unit") or "%"))}</span>'
            f'</h3><p class="en">{_h(ratio)}</p>'
            f"{_list(_pick(EQUIPMENT, *keys), members, ctx)}</div>"
        )
    intro = (
        f"<p>关键工序设备 {len(key)} 台。申报为台账中标为数控的关键工序设备, 实测为其中数据证实的"
        f'设备。<span class="en">{len(key)} machines in key processes. Declared: those '
        "registered as NC; measured: those the data bears out.</span></p>"
    )
    return _section(
        "关键工序数控化率 申报与实测",
        "Key-process NC rate, declared and measured",
        intro + f'<div class="pair">{"".join(body)}</div>',
        "keep",
    )


def _meters_html(r: Json, ctx: _Ctx) -> str:
    columns = _pick(METERS, "id", "parent", "carrier", "quantity", "unit", "coverage",
                    "rollovers", "resets", "tce", "tco2", "top_level")  # fmt: skip
    note = _bi(
        "只有计入总量的表进入综合能耗与排放, 下级表用于分项。",
        "Only top-level meters count in the totals; sub-meters break them down.",
    )
    return _section("计量", "Meters", _list(columns, r.get("meters") or [], ctx) + f"<p>{note}</p>")


def _equipment_html(r: Json, ctx: _Ctx) -> str:
    equipment = r.get("equipment") or []
    times = _pick(EQUIPMENT, "id", "process_name", "key_process", "nc", "coverage",
                  *(f"time.{b}" for b in TIME_BUCKETS))  # fmt: skip
    ratios = _pick(EQUIPMENT, "id", "parts.produced", "parts.good", "parts.scrap",
                   "availability", "effectiveness", "quality_ratio", "oee", "utilisation",
                   "mtbf_s", "mttr_s", "down_events", "ideal_cycle_time_s")  # fmt: skip
    return _section(
        "设备",
        "Equipment",
        _h3("时间模型 (小时)", "Time model (hours), ISO 22400-2")
        + _list(times, equipment, ctx)
        + _h3("产量与效率", "Output and ratios")
        + _list(ratios, equipment, ctx),
        "landscape",
    )


def _baseline_html(r: Json, ctx: _Ctx) -> str:
    base = r.get("baseline")
    if not base:
        return _section(
            "基准期对比", "Baseline comparison", f"<p>{_bi('无基准期', 'No baseline')}</p>"
        )
    current = {k.get("id"): k for k in r.get("kpis") or []}
    rows = []
    for k in base.get("kpis") or []:
        now = current.get(k.get("id")) or {}
        change = current.get(f"{k.get('id')}_change") or {}
        rows.append([
            _Td(_bi(k.get("name") or k.get("id"), k.get("name_en"))),
            _Td(_kpi_value(k.get("value"), k.get("unit")), "num"),
            _Td(_kpi_value(now.get("value"), now.get("unit")), "num"),
            _Td(_kpi_value(change.get("value"), change.get("unit")), "num"),
            _cover(k.get("coverage"), ctx.threshold),
        ])  # fmt: skip
    heads = [_bi("指标", "KPI"), _bi("基准期", "Baseline"), _bi("本期", "This period"),
             _bi("变化", "Change"), _bi("基准覆盖率", "Baseline coverage")]  # fmt: skip
    return _section(
        "基准期对比",
        "Baseline comparison",
        f"<p>{_bi('基准期', 'Baseline period')} {_h(_period(base))}</p>{_grid(heads, rows)}",
    )


def _groups_html(r: Json) -> str:
    kpis = {k.get("id"): k for k in r.get("kpis") or []}
    groups, sites = r.get("groups") or {}, {s.get("id"): s for s in r.get("sites") or []}
    tables = []
    for kind, zh, en in (("site", "厂区", "Site"), ("process", "工序", "Process")):
        members: Mapping[str, Json] = groups.get(kind) or {}
        labels = ("name", "name_en", "key_process")
        ids = list(dict.fromkeys(k for g in members.values() for k in g if k not in labels))
        heads = [_bi(zh, en)]
        heads += [_bi((kpis.get(i) or {}).get("name") or i, (kpis.get(i) or {}).get("name_en") or i)
                  for i in ids]  # fmt: skip
        rows = []
        for gid, g in members.items():
            named = g if "name" in g else sites.get(gid) or {}
            key = " ★关键 key" if g.get("key_process") else ""
            label = f"<b>{_h(gid)}</b> {_h(named.get('name', ''))}{_h(key)}"
            label += f'<span class="en">{_h(named.get("name_en", ""))}</span>'
            rows.append([_Td(_Raw(label))] + [
                _Td(_kpi_value(g.get(i), (kpis.get(i) or {}).get("unit")), "num") for i in ids
            ])  # fmt: skip
        tables.append(_grid(heads, rows))
    return _section("分厂区与分工序", "By site and by process", "".join(tables))


def _quality_html(r: Json, ctx: _Ctx) -> str:
    q = r.get("quality") or {}
    # lowest coverage first: a verifier looks for the holes; unknown coverage before all
    tags = sorted(
        q.get("tags") or [],
        key=lambda t: (t.get("coverage") is not None, t.get("coverage") or 0.0),
    )
    return _section(
        "数据质量",
        "Data quality",
        _h3("标签覆盖率", "Tag coverage, lowest first")
        + _list(TAGS, tags, ctx, MAX_HTML_ROWS)
        + _h3("数据缺口", "Gaps")
        + _list(GAPS, q.get("gaps") or [], ctx, MAX_HTML_ROWS)
        + _h3("计数器异常", "Counter anomalies")
        + _list(ANOMALIES, q.get("counter_anomalies") or [], ctx, MAX_HTML_ROWS),
        "quality",
    )


def _factors_html(r: Json, ctx: _Ctx) -> str:
    f = r.get("factors") or {}
    body = ""
    for key, zh, en, columns in (
        ("energy", "能耗折标系数", "Energy conversion coefficients", ENERGY),
        ("emission", "二氧化碳排放因子", "CO2 emission factors", EMISSION),
    ):
        table = f.get(key) or {}
        body += (
            f"<h3>{_bi(zh, en)} <code>{_h(table.get('version'))}</code></h3>"
            f"<p>{_h(table.get('title'))}</p>{_list(columns, table.get('rows') or [], ctx)}"
        )
    return _section("折标系数与排放因子", "Coefficients and emission factors", body)


def _signature_html(r: Json) -> str:
    sig, digest = r.get("signature") or {}, r.get("digest") or {}
    draft = _bi("未签名草稿。不能作为证明。", "Unsigned draft: not evidence until signed.")
    status = "" if sig else f'<p class="warn">{draft}</p>'
    items = [
        ("签名算法", "Algorithm", sig.get("algorithm")),
        ("密钥编号", "Key ID", sig.get("key_id")),
        ("公钥", "Public key (base64)", sig.get("public_key")),
        ("签名值", "Signature (base64)", sig.get("value")),
        ("摘要算法", "Digest algorithm", digest.get("algorithm")),
        ("摘要行数", "Digest rows", _number(digest.get("rows"))),
        ("摘要值", "Digest", digest.get("value")),
    ]
    rows = "".join(
        f"<tr><th>{_bi(zh, en)}</th><td><code>{_h(v)}</code></td></tr>" for zh, en, v in items
    )
    verify = (
        "<p>用 <code>ingest-server verify report.json</code> 校验此签名, 并核对密钥编号与企业"
        '登记的公钥一致。<span class="en"><code>ingest-server verify report.json</code> '
        "checks this signature. Compare the key ID with the one the enterprise registered."
        "</span></p>"
    )
    return _section(
        "签名", "Signature", f'{status}<table class="meta">{rows}</table>{verify}', "keep"
    )


CSS = """
@page { size: A4; margin: 15mm 12mm 16mm; }
@page landscape { size: A4 landscape; margin: 12mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "PingFang SC",
  "Microsoft YaHei", "SimSun", sans-serif; font-size: 10pt; color: #111; line-height: 1.35; }
h1 { font-size: 18pt; margin: 4pt 0 0; }
h2 { font-size: 13pt; border-bottom: 1.5pt solid #1f3b63; margin: 16pt 0 6pt;
  padding-bottom: 2pt; color: #1f3b63; }
h3 { font-size: 10.5pt; margin: 10pt 0 4pt; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
.subtitle { font-size: 12pt; color: #444; margin: 0 0 8pt; }
.en { color: #555; font-size: 85%; }
td .en, th .en, p .en { display: block; }
h2 .en, h3 .en { display: inline; }
table { border-collapse: collapse; width: 100%; margin: 2pt 0 6pt; }
th, td { border: 0.5pt solid #9aa3ad; padding: 2pt 4pt; vertical-align: top; text-align: left; }
thead th { background: #e8edf3; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.meta th { width: 28%; background: #f3f5f8; }
section.landscape table { font-size: 8pt; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
.c { text-align: center; }
.value { font-weight: bold; }
.low { background: #fde2e2; }
.null, .none, .more { color: #666; font-style: italic; }
.mark { display: inline-block; border: 1.5pt solid; padding: 1pt 6pt; margin-right: 6pt;
  font-weight: bold; }
.partial { color: #b00020; }
.draft { color: #8a5a00; }
.warn { border-left: 3pt solid #b00020; padding-left: 6pt; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10pt; }
.figure { font-size: 13pt; }
code { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 8.5pt;
  word-break: break-all; }
section.landscape { page: landscape; }
@media screen { body { max-width: 1180px; margin: 16px auto; padding: 0 12px; } }
@media print {
  body { font-size: 9pt; }
  .keep { break-inside: avoid; page-break-inside: avoid; }
  section.landscape, section.quality { break-before: page; page-break-before: always; }
  thead th, .low { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def render_html(report: Json) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    _check(report)
    period = report.get("period") or {}
    ctx = _Ctx(
        _zone(period.get("timezone")),
        str(period.get("timezone") or "UTC"),
        (report.get("parameters") or {}).get("coverage_threshold"),
    )
    # the report id in every page's footer: a CSS string, so only characters safe in one
    ref = re.sub(r"[^0-9A-Za-z-]", "", str(report.get("report_id") or ""))
    footer = (
        f'@page {{ @bottom-left {{ content: "{ref}"; font-size: 7pt; color: #666; }}'
        ' @bottom-right { content: counter(page) " / " counter(pages); font-size: 7pt; } }'
    )
    body = (
        _title_html(report, ctx)
        + _kpis_html(report.get("kpis") or [], ctx)
        + _nc_html(report, ctx)
        + _baseline_html(report, ctx)
        + _section(
            "产量与工业增加值",
            "Output and value added",
            _list(PRODUCTION, report.get("production") or [], ctx),
        )
        + _meters_html(report, ctx)
        + _equipment_html(report, ctx)
        + _groups_html(report)
        + _quality_html(report, ctx)
        + _factors_html(report, ctx)
        + _signature_html(report)
    )
    ent = report.get("enterprise") or {}
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{_h(TITLE)} · {_h(ent.get('name'))} · {_h(period.get('from'))} 至 "
        f"{_h(period.get('to'))}</title><style>{CSS}{footer}</style></head>"
        f"<body>{body}</body></html>\n"
    )


# --- XLSX ----------------------------------------------------------------------------

XLSX_FORMATS = {
    "pct": "0.0%",
    "coverage": "0.0%",
    "tce": "0.000",
    "seconds": "#,##0",
    "count": "#,##0",
}
# a KPI in "%" carries percent (83.3): shown with a literal % sign, not multiplied
KPI_FORMATS = {"%": '0.0"%"', "tce": "0.000", "tCO2": "0.000", "h": "0.0"}
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="E8EDF3")


def _put(ws: Any, row: int, col: int, value: object, fmt: str | None = None) -> Any:
    """One cell with the JSON's value: numbers as numbers, text never a formula."""
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        value = str(dict(value))
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = ws.cell(row=row, column=col, value=value)
    if isinstance(value, str) and cell.data_type == "f":
        cell.data_type = "s"  # a name starting with "=" stays a name
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        cell.number_format = fmt
    return cell


def _bold(ws: Any, row: int, col: int, text: str, fill: bool = False) -> None:
    cell = _put(ws, row, col, text)
    cell.font = _BOLD
    if fill:
        cell.fill = _HEAD_FILL


def _records(ws: Any, row: int, col: int, columns: Sequence[Column], items: Sequence[Json]) -> None:
    """A bold header row at `row`, then one row per JSON object."""
    for i, c in enumerate(columns):
        suffix = {"seconds": " s", "instant": " (UTC)"}.get(c.kind, "")
        _bold(ws, row, col + i, f"{c.zh} {c.en}{suffix}", fill=True)
    for n, item in enumerate(items, start=row + 1):
        for i, c in enumerate(columns):
            fmt = KPI_FORMATS.get(str(item.get("unit"))) if c.kind == "kpi" else None
            _put(ws, n, col + i, _get(item, c.key), fmt or XLSX_FORMATS.get(c.kind))


def _pairs(ws: Any, row: int, items: Sequence[tuple[str, Sequence[object]]]) -> int:
    """Label and values, a row each; the next free row."""
    for label, values in items:
        _bold(ws, row, 1, label)
        for i, v in enumerate(values, start=2):
            _put(ws, row, i, v, "0.0%" if label.startswith("覆盖率阈值") else None)
        row += 1
    return row


def _period_pairs(p: Json) -> list[tuple[str, Sequence[object]]]:
    return [
        ("统计期 Period", [p.get("from"), p.get("to"), p.get("timezone")]),
        ("区间 Interval [start, end) UTC", [p.get("start"), p.get("end")]),
        ("未完结 Partial", [p.get("partial"), "未完结 / partial" if p.get("partial") else None]),
    ]


def _summary(ws: Any, r: Json) -> None:
    ent, software = r.get("enterprise") or {}, r.get("software") or {}
    params = r.get("parameters") or {}
    _put(ws, 1, 1, f"{TITLE} {TITLE_EN}").font = Font(bold=True, size=14)
    row = _pairs(ws, 2, [
        ("企业 Enterprise", [ent.get("name"), ent.get("name_en"), ent.get("id")]),
        ("统一社会信用代码 Credit code", [ent.get("credit_code")]),
        *_period_pairs(r.get("period") or {}),
        *(("注意 Notice", [zh, en]) for _code, zh, en in _notices(r)),
        ("生成时间 Generated (UTC)", [r.get("generated_at")]),
        ("软件 Software", [software.get("name"), software.get("version")]),
        ("报告编号 Report ID", [r.get("report_id")]),
        ("覆盖率阈值 Coverage threshold", [params.get("coverage_threshold")]),
        ("参数 gap_after_s, heartbeat_s, industry",
         [params.get("gap_after_s"), params.get("heartbeat_s"), params.get("industry")]),
    ])  # fmt: skip
    _records(ws, row + 1, 1, KPIS, r.get("kpis") or [])
    ws.freeze_panes = ws.cell(row=row + 2, column=1)


def _side_by_side(ws: Any, tables: Sequence[tuple[str, Sequence[Column], Sequence[Json]]]) -> None:
    """Tables next to each other: titles in row 1, headers in row 2, frozen below."""
    col = 1
    for title, columns, items in tables:
        _bold(ws, 1, col, title)
        _records(ws, 2, col, columns, items)
        col += len(columns) + 1
    ws.freeze_panes = "A3"


def _signature(ws: Any, r: Json) -> None:
    sig, digest = r.get("signature") or {}, r.get("digest") or {}
    _bold(ws, 1, 1, "项目 Item", fill=True)
    _bold(ws, 1, 2, "值 Value", fill=True)
    _pairs(ws, 2, [
        ("状态 Status", ["已签名 signed" if sig else "未签名草稿 unsigned draft"]),
        ("签名算法 Algorithm", [sig.get("algorithm")]),
        ("密钥编号 Key ID", [sig.get("key_id")]),
        ("公钥 Public key (base64)", [sig.get("public_key")]),
        ("签名值 Signature (base64)", [sig.get("value")]),
        ("摘要算法 Digest algorithm", [digest.get("algorithm")]),
        ("摘要行数 Digest rows", [digest.get("rows")]),
        ("摘要值 Digest", [digest.get("value")]),
        ("校验 Verify", ["ingest-server verify report.json"]),
    ])  # fmt: skip
    ws.freeze_panes = "A2"


def _fit(ws: Any) -> None:
    """Column widths from the longest entry (CJK characters are two wide), 8 to 60."""
    widths: dict[int, int] = {}
    for row in ws.iter_rows():
        for cell in row:
            if cell.value is not None:
                text = str(cell.value)[:60]
                wide = sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)
                widths[cell.column] = max(widths.get(cell.column, 0), wide)
    for col, width in widths.items():
        ws.column_dimensions[get_column_letter(col)].width = min(60, max(8, width + 2))


def render_xlsx(report: Json, out: Path | BinaryIO) -> None:
    """The report as a workbook whose cells hold the JSON's own values."""
    _check(report)
    wb = Workbook()
    wb.active.title = "概览 Summary"
    _summary(wb.active, report)
    for title, columns, key, freeze in (
        ("设备 Equipment", EQUIPMENT, "equipment", "B2"),
        ("计量 Meters", METERS, "meters", "B2"),
        ("产量 Production", PRODUCTION, "production", "A2"),
    ):
        ws = wb.create_sheet(title)
        _records(ws, 1, 1, columns, report.get(key) or [])
        ws.freeze_panes = freeze

    ws, base = wb.create_sheet("基准 Baseline"), report.get("baseline")
    if base:
        row = _pairs(ws, 1, _period_pairs(base)) + 1
        _records(ws, row, 1, KPIS, base.get("kpis") or [])
        ws.freeze_panes = ws.cell(row=row + 1, column=1)
    else:
        _bold(ws, 1, 1, "无基准期 No baseline")

    q, f = report.get("quality") or {}, report.get("factors") or {}
    energy, emission = f.get("energy") or {}, f.get("emission") or {}
    _side_by_side(wb.create_sheet("数据质量 Data quality"), [
        ("标签覆盖率 Tag coverage", TAGS, q.get("tags") or []),
        ("数据缺口 Gaps", GAPS, q.get("gaps") or []),
        ("计数器异常 Counter anomalies", ANOMALIES, q.get("counter_anomalies") or []),
    ])  # fmt: skip
    _side_by_side(wb.create_sheet("系数 Factors"), [
        (f"能耗折标系数 Energy coefficients {energy.get('version')}: {energy.get('title')}",
         ENERGY, energy.get("rows") or []),
        (f"排放因子 Emission factors {emission.get('version')}: {emission.get('title')}",
         EMISSION, emission.get("rows") or []),
    ])  # fmt: skip
    _signature(wb.create_sheet("签名 Signature"), report)
    for sheet in wb.worksheets:
        _fit(sheet)
    wb.save(out)
