"""The cells a report's workbook is built of, as every sheet writes them (evidence/
render_xlsx.py and the sheets of evidence/render_green.py): the JSON's value in a cell
(numbers as numbers, dates as date cells, text never a formula), a bold label or header,
and column widths fitted to the text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

# openpyxl ships no type information; the ignores stay quiet should stubs be installed
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE  # type: ignore[import-untyped,unused-ignore]
from openpyxl.styles import Font, PatternFill  # type: ignore[import-untyped,unused-ignore]
from openpyxl.utils import get_column_letter  # type: ignore[import-untyped,unused-ignore]

DATE = "yyyy-mm-dd"
DATETIME = "yyyy-mm-dd hh:mm:ss"
_BOLD = Font(bold=True)
_HEAD_FILL = PatternFill("solid", fgColor="E8EDF3")


def put(ws: Any, row: int, col: int, value: object, fmt: str | None = None) -> Any:
    """One cell with the JSON's value: numbers as numbers, dates as dates, text never a
    formula."""
    if isinstance(value, list | tuple):
        value = ", ".join(str(v) for v in value)
    elif isinstance(value, Mapping):
        value = str(dict(value))
    if isinstance(value, str):
        value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", value)
    cell = ws.cell(row=row, column=col, value=value)
    if isinstance(value, str) and cell.data_type == "f":
        cell.data_type = "s"  # a name starting with "=" stays a name
    if isinstance(value, dt.datetime | dt.date):
        cell.number_format = DATETIME if isinstance(value, dt.datetime) else DATE
    elif fmt and isinstance(value, int | float) and not isinstance(value, bool):
        cell.number_format = fmt
    return cell


def bold(ws: Any, row: int, col: int, text: str, fill: bool = False) -> None:
    """A label, or with `fill` a column header."""
    cell = put(ws, row, col, text)
    cell.font = _BOLD
    if fill:
        cell.fill = _HEAD_FILL


def fit(ws: Any) -> None:
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
