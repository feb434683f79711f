"""The enterprise's declarations as the report shows them: the meter register (each
meter's nameplate and calibration certificate, a warning highlighted where the certificate
is out of date or missing) and the declaration (承诺) with its signature line and a box
for the seal. HTML fragments for evidence/render_html.py and a sheet for
evidence/render_xlsx.py; a report made before a block renders without it.

Both read the report's own blocks (evidence/declared.py `meter_register_block`,
`declaration_block`); nothing is computed here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from typing import Any

# openpyxl ships no type information; the ignores stay quiet should stubs be installed
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped,unused-ignore]
from openpyxl.styles import Font, PatternFill  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.columns import Column, Json, value_at
from ingest_server.evidence.markup import Ctx, Raw, Td, bi, data_cell, esc, grid, head_cell, section

# fmt: off
REGISTER = (
    Column("计量表", "Meter", "id", "entity"), Column("厂区", "Site", "site"),
    Column("介质", "Carrier", "carrier", "enum"), Column("出厂编号", "Serial number", "serial"),
    Column("型号", "Model", "model"), Column("准确度等级", "Accuracy class", "accuracy_class"),
    Column("证书编号", "Certificate", "certificate"),
    Column("检定/校准机构", "Issued by", "issued_by"),
    Column("检定/校准日期", "Calibrated on", "calibrated_on"),
    Column("有效期至", "Valid until", "valid_until"),
)
# fmt: on
STATUS_LABELS = {
    "valid": ("有效", "valid"),
    "expires_in_period": ("统计期内到期", "expires in the period"),
    "expired": ("已过期", "expired"),
    "missing": ("无证书", "missing"),
}
REGISTER_NOTE = (
    "下表为企业登记的计量器具及其检定/校准证书 (企业申报, 非测量结果); 状态按统计期末日判定。",
    "The meters and their calibration certificates as the enterprise registered them (its "
    "declaration, not a measurement); each state is as of the period's last day.",
)


def register_of(r: Json) -> Json | None:
    """The report's `meter_register` block; None for a report made before it."""
    block = r.get("meter_register")
    return block if isinstance(block, Mapping) else None


def declaration_of(r: Json) -> Json | None:
    """The report's `declaration` block; None for a report made before it."""
    block = r.get("declaration")
    return block if isinstance(block, Mapping) else None


def _status(m: Json) -> Raw:
    state = str(m.get("status"))
    zh, en = STATUS_LABELS.get(state, (state, state))
    warning = ""
    if m.get("warning") or m.get("warning_en"):
        warning = f'<div class="warning">{bi(m.get("warning"), m.get("warning_en"))}</div>'
    return Raw(f'<b>{esc(zh)}</b> <span class="en">{esc(en)}</span>{warning}')


def meter_register_html(r: Json, ctx: Ctx) -> str:
    """The meter register as a section: a row per meter, highlighted when its state is
    not valid; "" for a report made before the block."""
    block = register_of(r)
    if block is None:
        return ""
    meters = [m for m in block.get("meters") or [] if isinstance(m, Mapping)]
    rows = []
    for m in meters:
        cls = "" if m.get("status") == "valid" else "low"
        cells = [data_cell(m, c, ctx) for c in REGISTER] + [Td(_status(m))]
        rows.append([Td(td.content, f"{td.cls} {cls}".strip()) for td in cells])
    heads = [head_cell(c, ctx) for c in REGISTER] + [bi("状态", "Status")]
    summary = block.get("summary") or {}
    counts = " · ".join(f"{zh} {en} {esc(summary.get(k))}" for k, (zh, en) in STATUS_LABELS.items())
    note_zh, note_en = REGISTER_NOTE
    return section(
        "计量器具一览表",
        "Meter register",
        f"<p>{bi(note_zh, note_en)}</p>"
        f'<p class="basis">{bi(block.get("basis"), block.get("basis_en"))}</p>'
        f"{grid(heads, rows)}<p>{esc(counts)}</p>",
        "register",
    )


def declaration_html(r: Json) -> str:
    """The declaration with its signatory, position and date, a line to sign on and a box
    for the seal (盖章处); a signatory not entered is a blank line to fill in by hand; ""
    for a report made before the block."""
    d = declaration_of(r)
    if d is None:
        return ""
    blank = '<span class="blank"></span>'
    items = [
        ("签署人", "Signatory", d.get("signatory")),
        ("职务", "Position", d.get("position")),
        ("日期", "Date", d.get("date")),
    ]
    rows = "".join(
        f"<tr><th>{bi(zh, en)}</th><td>{blank if v is None else esc(v)}</td></tr>"
        for zh, en, v in items
    )
    return section(
        "承诺",
        "Declaration",
        f'<p class="declaration-text">{bi(d.get("text"), d.get("text_en"))}</p>'
        f'<div class="sign"><div class="sign-lines"><table class="meta">{rows}</table>'
        f'<p class="signature-line">{bi("签字", "Signature")}{blank}</p></div>'
        f'<div class="seal">{bi("盖章处", "Seal")}</div></div>',
        "declaration keep",
    )


# appended to the page's stylesheet (evidence/render_html.py CSS)
REGISTER_CSS = """
section.register tr.low td, section.register td.low { background: #fde2e2; }
section.register .warning { color: #b00020; }
.basis { color: #444; }
.sign { display: flex; gap: 12pt; align-items: flex-end; margin-top: 10pt; }
.sign-lines { flex: 1; }
.blank { display: inline-block; min-width: 50mm; border-bottom: 0.75pt solid #111;
  height: 1.2em; vertical-align: bottom; }
.signature-line .blank { min-width: 70mm; margin-left: 6pt; }
.signature-line .en { display: inline; }
.seal { flex: none; width: 42mm; height: 42mm; border: 1pt dashed #666; color: #666;
  display: flex; flex-direction: column; align-items: center; justify-content: center; }
.seal .en { display: block; }
"""


# --- the workbook's sheet ---------------------------------------------------------------

_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="E8EDF3")
_WARN_FILL = PatternFill("solid", fgColor="FDE2E2")
_SHEET_COLUMNS = (
    *REGISTER[:1],
    Column("名称", "Name", "name"),
    Column("名称(英文)", "Name (English)", "name_en"),
    *REGISTER[1:],
    Column("状态", "Status", "status"),
    Column("警示", "Warning", "warning"),
    Column("警示(英文)", "Warning (English)", "warning_en"),
)
SHEET_TITLE = "计量器具 Meter register"
_DATES = ("calibrated_on", "valid_until")  # written as date cells


def _text(ws: Any, row: int, col: int, value: object) -> Any:
    """One cell with the JSON's value; a text never becomes a formula (as render_xlsx
    writes every cell)."""
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = ws.cell(row=row, column=col, value=value)
    if isinstance(value, str) and cell.data_type == "f":
        cell.data_type = "s"
    return cell


def write_meter_register(ws: Any, r: Json) -> bool:
    """The meter register on the worksheet `ws`: basis, the count by state, then a row
    per meter (the JSON's own values; a certificate's dates as date cells), a row not
    valid filled red. False (nothing written) for a report made before the block."""
    block = register_of(r)
    if block is None:
        return False
    _text(ws, 1, 1, "计量器具一览表 Meter register").font = _BOLD
    _text(ws, 2, 1, block.get("basis"))
    _text(ws, 3, 1, block.get("basis_en"))
    summary = block.get("summary") or {}
    for i, (state, (zh, en)) in enumerate(STATUS_LABELS.items()):
        _text(ws, 4, 1 + 2 * i, f"{zh} {en}").font = _BOLD
        _text(ws, 4, 2 + 2 * i, summary.get(state))
    head = 6
    for i, c in enumerate(_SHEET_COLUMNS, start=1):
        cell = _text(ws, head, i, f"{c.zh} {c.en}")
        cell.font, cell.fill = _BOLD, _HEAD_FILL
    meters = [m for m in block.get("meters") or [] if isinstance(m, Mapping)]
    for n, m in enumerate(meters, start=head + 1):
        for i, c in enumerate(_SHEET_COLUMNS, start=1):
            value = value_at(m, c.key)
            if c.key in _DATES and isinstance(value, str):
                with contextlib.suppress(ValueError):  # not a date: shown as the text it is
                    value = dt.date.fromisoformat(value)
            cell = _text(ws, n, i, value)
            if isinstance(value, dt.date):
                cell.number_format = "yyyy-mm-dd"
            if m.get("status") != "valid":
                cell.fill = _WARN_FILL
    ws.freeze_panes = ws.cell(row=head + 1, column=2)
    return True
