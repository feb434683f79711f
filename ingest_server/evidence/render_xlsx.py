"""An evidence report as an XLSX workbook whose cells hold the JSON's own values.

Sheets: 概览 Summary, 设备 Equipment, 计量 Meters, 产量 Production, 基准 Baseline,
数据质量 Data quality (the data's origin by gateway beside it), 系数 Factors,
时间锚定 Anchoring (each day's anchor state, when the report states it), 计量器具 Meter
register (when the report states it: evidence/render_register.py), 目标 Targets, 绿色工厂
Green factory and 温室气体 GHG (when the report states them: evidence/render_targets.py,
evidence/render_green.py), 签名 Signature.
The workbook keeps the JSON's numbers as numbers, unrounded, so a verifier can recompute
from the sheets; only the number formats round what is displayed. (openpyxl writes a
double with 16 significant digits, Excel works with 15: a value may come back one unit in
its last place off; the JSON is exact.) The column tables of evidence/columns.py read each
list's entries by their JSON key, the KPIs too, so a cell holds what the document holds,
in one convention for every share: a real fraction with a percent format (0.833 shown
83.3 %), so a formula over it computes as Excel users expect. A KPI in "%" carries percent
in the JSON (83.3) and is written divided by 100; every coverage, share and ratio is a
fraction already. Dates and instants are date cells (instants in UTC, as the headers
say), not text. Names and notes are typed in by the enterprise: every string stays a
string (a name starting with "=" is not a formula).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

# openpyxl ships no type information; the ignores stay quiet should stubs be installed
from openpyxl import Workbook  # type: ignore[import-untyped,unused-ignore]
from openpyxl.styles import Font  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.columns import (
    ANCHOR_LABELS,
    ANCHORING_NOTE,
    ANOMALIES,
    EMISSION,
    ENERGY,
    EQUIPMENT,
    GAPS,
    KPI_ORIGIN,
    KPIS,
    METERS,
    ORIGIN,
    ORIGIN_NOTE,
    PRODUCTION,
    TAGS,
    TITLE,
    TITLE_EN,
    UNKNOWN,
    Column,
    Json,
    anchoring_of,
    check_format,
    gaps_line,
    notices_of,
    unknown_time,
    value_at,
)
from ingest_server.evidence.qr import paper_mark
from ingest_server.evidence.render_green import ghg_sheet_of, green_sheet_of
from ingest_server.evidence.render_register import SHEET_TITLE, register_of, write_meter_register
from ingest_server.evidence.render_targets import targets_sheet
from ingest_server.evidence.xlsx_cells import DATE, DATETIME, bold, fit, put

PERCENT = "0.0%"
XLSX_FORMATS = {
    "pct": PERCENT,
    "coverage": PERCENT,
    "tce": "0.000",
    "seconds": "#,##0",
    "count": "#,##0",
    "quantity": "#,##0.0",
    "reading": "#,##0.0###",
    "instant": DATETIME,
    "date": DATE,
}
# by the KPI's unit; a KPI in "%" is written as its fraction (`_kpi_cell`)
KPI_FORMATS = {"%": PERCENT, "tce": "0.000", "tCO2": "0.000", "h": "0.0"}
# summary rows whose figure is a share 0..1, shown as a percent
_SHARES = ("覆盖率阈值", "网关签名数据占比")


def when(value: object) -> object:
    """An ISO date as a date, an ISO instant as a naive UTC datetime (Excel has no time
    zones); anything else, an unparsable string too, as it is."""
    if not isinstance(value, str) or len(value) < 10:
        return value
    try:
        if len(value) == 10:
            return dt.date.fromisoformat(value)
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def _kpi_cell(value: object, unit: object) -> object:
    """A KPI's figure as the cell holds it: one in "%" as its fraction (83.3 → 0.833)."""
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    return value / 100 if unit == "%" and numeric else value  # type: ignore[operator]


def _records(ws: Any, row: int, col: int, columns: Sequence[Column], items: Sequence[Json]) -> None:
    """A bold header row at `row`, then one row per JSON object."""
    for i, c in enumerate(columns):
        suffix = {"seconds": " s", "instant": " (UTC)"}.get(c.kind, "")
        bold(ws, row, col + i, f"{c.zh} {c.en}{suffix}", fill=True)
    for n, item in enumerate(items, start=row + 1):
        for i, c in enumerate(columns):
            value = value_at(item, c.key)
            if c.kind == "kpi":
                unit = item.get("unit")
                put(ws, n, col + i, _kpi_cell(value, unit), KPI_FORMATS.get(str(unit)))
            elif c.kind in ("instant", "date"):
                put(ws, n, col + i, when(value))
            else:
                put(ws, n, col + i, value, XLSX_FORMATS.get(c.kind))


def _pairs(ws: Any, row: int, items: Sequence[tuple[str, Sequence[object]]]) -> int:
    """Label and values, a row each; the next free row."""
    for label, values in items:
        bold(ws, row, 1, label)
        fmt = PERCENT if label.startswith(_SHARES) else None
        for i, v in enumerate(values, start=2):
            put(ws, row, i, v, fmt)
        row += 1
    return row


def _period_pairs(p: Json) -> list[tuple[str, Sequence[object]]]:
    return [
        ("统计期 Period", [when(p.get("from")), when(p.get("to")), p.get("timezone")]),
        ("区间 Interval [start, end) UTC", [when(p.get("start")), when(p.get("end"))]),
        ("未完结 Partial", [p.get("partial"), "未完结 / partial" if p.get("partial") else None]),
    ]


def _kpi_columns(r: Json) -> Sequence[Column]:
    """The KPI columns, with the gateway-signed share where the report states it."""
    return (*KPIS, *KPI_ORIGIN) if isinstance(r.get("attestation"), Mapping) else KPIS


def _origin_pairs(r: Json) -> list[tuple[str, Sequence[object]]]:
    """The report's gateway-signed share in all, when it states one (reports made before
    it was recorded do not)."""
    a = r.get("attestation")
    if not isinstance(a, Mapping):
        return []
    return [
        ("网关签名数据占比 Gateway-signed share", [a.get("share")]),
        ("网关签名样本 / 样本 Gateway-signed / samples", [a.get("attested"), a.get("samples")]),
        ("说明 About the share", list(ORIGIN_NOTE)),
    ]


def _summary(ws: Any, r: Json) -> None:
    ent, software = r.get("enterprise") or {}, r.get("software") or {}
    params = r.get("parameters") or {}
    put(ws, 1, 1, f"{TITLE} {TITLE_EN}").font = Font(bold=True, size=14)
    row = _pairs(ws, 2, [
        ("企业 Enterprise", [ent.get("name"), ent.get("name_en"), ent.get("id")]),
        ("统一社会信用代码 Credit code", [ent.get("credit_code")]),
        *_period_pairs(r.get("period") or {}),
        *(("注意 Notice", [zh, en]) for _code, zh, en in notices_of(r)),
        ("生成时间 Generated (UTC)", [when(r.get("generated_at"))]),
        ("数据缺口 Data gaps", list(gaps_line(r))),
        ("软件 Software", [software.get("name"), software.get("version")]),
        ("报告编号 Report ID", [r.get("report_id")]),
        ("覆盖率阈值 Coverage threshold", [params.get("coverage_threshold")]),
        ("参数 gap_after_s, heartbeat_s, industry",
         [params.get("gap_after_s"), params.get("heartbeat_s"), params.get("industry")]),
        *_origin_pairs(r),
    ])  # fmt: skip
    _records(ws, row + 1, 1, _kpi_columns(r), r.get("kpis") or [])
    ws.freeze_panes = ws.cell(row=row + 2, column=1)


def _side_by_side(ws: Any, tables: Sequence[tuple[str, Sequence[Column], Sequence[Json]]]) -> None:
    """Tables next to each other: titles in row 1, headers in row 2, frozen below."""
    col = 1
    for title, columns, items in tables:
        bold(ws, 1, col, title)
        _records(ws, 2, col, columns, items)
        col += len(columns) + 1
    ws.freeze_panes = "A3"


_ANCHOR_HEADS = (
    "日期 Day", "部分 Part", "状态 State", "状态 (中文)", "签名批次 Signed batches",
    "叶子数 Leaves", "Merkle 根 Merkle root (hex)", "建树时间 Built (UTC)",
    "时间戳服务 TSAs", "时间戳时间 TSA times (UTC)", "失败的时间戳服务 Failed TSAs",
    "最后错误 Last errors", "可锚定于 Due from (UTC)",
)  # fmt: skip


def _anchoring(ws: Any, block: Json) -> None:
    """One row per day of the block, the JSON's own values; lists joined by "; "."""
    bold(ws, 1, 1, "时间锚定 Anchoring in time")
    put(ws, 2, 1, ANCHORING_NOTE[0])
    put(ws, 3, 1, ANCHORING_NOTE[1])
    summary = block.get("summary") or {}
    row = _pairs(ws, 4, [
        *((f"{zh} {en.split(':')[0]}", [summary.get(k)]) for k, (zh, en) in ANCHOR_LABELS.items()),
        ("读取时间 Read at (UTC)", [when(block.get("read_at"))]),
    ]) + 1  # fmt: skip
    for i, head in enumerate(_ANCHOR_HEADS, start=1):
        bold(ws, row, i, head, fill=True)
    ws.freeze_panes = ws.cell(row=row + 1, column=1)
    for n, d in enumerate((d for d in block.get("days") or [] if isinstance(d, Mapping)),
                          start=row + 1):  # fmt: skip
        tsas = [t for t in d.get("tsas") or [] if isinstance(t, Mapping)]
        errors = [e for e in d.get("errors") or [] if isinstance(e, Mapping)]
        values = [
            when(d.get("day")), d.get("part"), d.get("state"),
            ANCHOR_LABELS.get(str(d.get("state")), ("",))[0], d.get("batches"),
            d.get("leaves"), d.get("root"), when(d.get("built_at")),
            "; ".join(f"{t.get('name')} {t.get('url')}" for t in tsas) or None,
            "; ".join(str(t.get("gen_time")) for t in tsas) or None,
            "; ".join(str(e.get("url")) for e in errors) or None,
            "; ".join(str(e.get("error")) for e in errors) or None,
            when(d.get("due_at")),
        ]  # fmt: skip
        for i, v in enumerate(values, start=1):
            put(ws, n, i, v, "#,##0" if i in (5, 6) else None)


def _signature(ws: Any, r: Json) -> None:
    sig, digest = r.get("signature") or {}, r.get("digest") or {}
    mark = paper_mark(dict(r))  # what the printed page shows: a paper copy matches this sheet
    bold(ws, 1, 1, "项目 Item", fill=True)
    bold(ws, 1, 2, "值 Value", fill=True)
    _pairs(ws, 2, [
        ("状态 Status", ["已签名 signed" if sig else "未签名草稿 unsigned draft"]),
        ("签名算法 Algorithm", [sig.get("algorithm")]),
        ("密钥编号 Key ID", [sig.get("key_id")]),
        ("公钥 Public key (base64)", [sig.get("public_key")]),
        ("签名值 Signature (base64)", [sig.get("value")]),
        ("报告摘要 Report digest (SHA-256)", [mark.digest if mark else None]),
        ("二维码内容 QR text", [mark.qr_text if mark else None]),
        ("输入数据摘要算法 Input-rows digest algorithm", [digest.get("algorithm")]),
        ("输入数据摘要行数 Input-rows digest rows", [digest.get("rows")]),
        ("输入数据摘要值 Input-rows digest", [digest.get("value")]),
        ("校验 Verify", ["ingest-server verify report.json"]),
    ])  # fmt: skip
    ws.freeze_panes = "A2"


def render_xlsx(report: Json, out: Path | BinaryIO) -> None:
    """The report as a workbook whose cells hold the JSON's own values."""
    check_format(report)
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
        _records(ws, row, 1, _kpi_columns(report), base.get("kpis") or [])
        ws.freeze_panes = ws.cell(row=row + 1, column=1)
    else:
        bold(ws, 1, 1, "无基准期 No baseline")

    q, f = report.get("quality") or {}, report.get("factors") or {}
    energy, emission = f.get("energy") or {}, f.get("emission") or {}
    origin = report.get("attestation")
    _side_by_side(wb.create_sheet("数据质量 Data quality"), [
        ("状态未知时间 Unknown state time by machine", UNKNOWN, unknown_time(report)),
        ("缺口区间 Gap intervals", GAPS, q.get("gaps") or []),
        ("标签覆盖率 Tag coverage", TAGS, q.get("tags") or []),
        ("计数器异常 Counter anomalies", ANOMALIES, q.get("counter_anomalies") or []),
        *([("数据来源 Data origin (contract 1: v1 HMAC, 2: v2 Ed25519, gateway-signed)",
            ORIGIN, origin.get("gateways") or [])] if isinstance(origin, Mapping) else []),
    ])  # fmt: skip
    _side_by_side(wb.create_sheet("系数 Factors"), [
        (f"能耗折标系数 Energy coefficients {energy.get('version')}: {energy.get('title')}",
         ENERGY, energy.get("rows") or []),
        (f"排放因子 Emission factors {emission.get('version')}: {emission.get('title')}",
         EMISSION, emission.get("rows") or []),
    ])  # fmt: skip
    block = anchoring_of(report)
    if block is not None:  # reports made before it have none: no sheet
        _anchoring(wb.create_sheet("时间锚定 Anchoring"), block)
    if register_of(report) is not None:  # nor the meter register
        write_meter_register(wb.create_sheet(SHEET_TITLE), report)
    targets_sheet(wb, report)  # reports made before the block have none: no sheet
    green_sheet_of(wb, report)  # nor these two
    ghg_sheet_of(wb, report)
    _signature(wb.create_sheet("签名 Signature"), report)
    for sheet in wb.worksheets:
        fit(sheet)
    wb.save(out)
