"""The HTML the report page is built of: escaping (every string the enterprise typed is
escaped; `Raw` is markup built here), bilingual labels, a cell by its column's kind,
tables and sections.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ingest_server.evidence.columns import (
    DASH,
    LABELS,
    Column,
    Json,
    exact,
    fixed,
    hours,
    kpi_value,
    local_time,
    number,
    percent,
    quantity,
    reading,
    value_at,
)

HTML_NUMBERS: dict[str, Callable[[Any], str]] = {
    "pct": percent,
    "tce": lambda v: fixed(v, 3),
    "seconds": hours,
    "count": number,
    "number": number,
    "quantity": quantity,
    "reading": reading,
    "exact": exact,
}


class Raw(str):
    """Markup built here from escaped parts: inserted as is."""


class Td(NamedTuple):
    content: object
    cls: str = ""


class Ctx(NamedTuple):
    tz: ZoneInfo | None
    tz_name: str
    threshold: float | None


def esc(v: object) -> str:
    if isinstance(v, Raw):
        return v
    return html.escape(DASH if v is None else str(v))


def bi(zh: object, en: object) -> Raw:
    """Chinese first, English under it."""
    return Raw(f'{esc(zh)} <span class="en">{esc(en)}</span>')


def yes_no(v: object) -> str:
    return DASH if v is None else ("✓" if v else "✗")


def cover_cell(v: float | None, threshold: float | None) -> Td:
    low = v is not None and threshold is not None and v < threshold
    return Td(percent(v), "num low" if low else "num")


def head_cell(c: Column, ctx: Ctx) -> Raw:
    suffix = {"seconds": " h", "instant": f" ({ctx.tz_name})"}.get(c.kind, "")
    return bi(c.zh, c.en + suffix)


def data_cell(item: Json, c: Column, ctx: Ctx) -> Td:
    v = value_at(item, c.key)
    if c.kind == "entity":
        names = f'{esc(item.get("name", ""))}<span class="en">{esc(item.get("name_en", ""))}</span>'
        return Td(Raw(f"<b>{esc(v)}</b> {names}"))
    if c.kind == "coverage":
        return cover_cell(v, ctx.threshold)
    if c.kind == "bool":
        return Td(yes_no(v), "c")
    if c.kind == "enum":
        return Td(f"{LABELS.get(str(v), '')} {exact(v)}".strip())
    if c.kind == "instant":
        return Td(local_time(v, ctx.tz), "nowrap")
    if c.kind == "date":
        return Td(v, "nowrap")
    if c.kind == "scope":
        return Td("全部 all" if v is None else v)
    if c.kind == "kpi":
        return Td(kpi_value(v, item.get("unit")), "num")
    if c.kind in HTML_NUMBERS:
        return Td(HTML_NUMBERS[c.kind](v), "num")
    return Td(v)


def grid(
    heads: Sequence[object], rows: Sequence[Sequence[Td]], *, total: int = -1, cls: str = ""
) -> str:
    """A table; `total` above the rows given adds a line that points to the JSON."""
    head = "".join(f"<th>{esc(x)}</th>" for x in heads)
    body = [
        "<tr>" + "".join(f"<td{attr(td.cls)}>{esc(td.content)}</td>" for td in row) + "</tr>"
        for row in rows
    ]
    span = f'colspan="{len(heads)}"'
    if not rows:
        body.append(f'<tr><td {span} class="none">{bi("无", "none")}</td></tr>')
    if total > len(rows):
        more = total - len(rows)
        body.append(
            f'<tr><td {span} class="more">… 另有 {more} 行见 JSON / … {more} more in the JSON'
            "</td></tr>"
        )
    return f"<table{attr(cls)}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def rows_table(columns: Sequence[Column], items: Sequence[Json], ctx: Ctx, limit: int = -1) -> str:
    shown = items if limit < 0 else items[:limit]
    rows = [[data_cell(item, c, ctx) for c in columns] for item in shown]
    return grid([head_cell(c, ctx) for c in columns], rows, total=len(items))


def attr(cls: str) -> str:
    return f' class="{cls}"' if cls else ""


def section(zh: str, en: str, body: str, cls: str = "") -> str:
    return f"<section{attr(cls)}><h2>{bi(zh, en)}</h2>{body}</section>"


def h3(zh: str, en: str) -> str:
    return f"<h3>{bi(zh, en)}</h3>"
