"""The evidence report as HTML and XLSX: what a verifier reads must be the JSON's figures,
every typed-in string must stay text, and a draft with nothing in it must still render."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.columns import ReportFormatError
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_xlsx import render_xlsx
from tests.harness.kpi_example import example_report

SHEETS = [
    "概览 Summary",
    "设备 Equipment",
    "计量 Meters",
    "产量 Production",
    "基准 Baseline",
    "数据质量 Data quality",
    "系数 Factors",
    "签名 Signature",
]


class _Rows(HTMLParser):
    """Each table row of a page as the texts of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rows_of(page: str) -> list[list[str]]:
    parser = _Rows()
    parser.feed(page)
    return parser.rows


def row_starting(page: str, text: str) -> list[str]:
    matches = [r for r in rows_of(page) if r and r[0].startswith(text)]
    assert len(matches) >= 1, f"no table row starts with {text!r}"
    return matches[0]


def section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title} <span")  # the heading, not the word elsewhere
    end = page.find("<section", start)
    return page[start : end if end >= 0 else len(page)]


def minimal_report() -> dict[str, Any]:
    """An unsigned draft: nulls everywhere they may be, every list empty, no baseline."""
    r = example_report()
    del r["signature"]
    r["baseline"] = None
    r["enterprise"]["credit_code"] = None
    r["factors"]["energy"]["rows"] = []
    r["factors"]["emission"]["rows"] = []
    for key in ("sites", "equipment", "meters", "production"):
        r[key] = []
    r["quality"] = {"tags": [], "gaps": [], "counter_anomalies": []}
    r["groups"] = {"site": {}, "process": {}}
    for k in r["kpis"]:
        k.update(value=None, numerator=None, denominator=None, inputs=[])
        k["note"] = "无数据 / no data"
    return r


def expected_value(value: float, unit: str) -> str:
    """The rule, written out independently: percents and hours 1 decimal, tce/tCO2 3."""
    if unit == "%":  # the value is percent already
        return f"{value:.1f}%"
    if unit in ("tce", "tCO2"):
        return f"{value:,.3f} {unit}"
    if unit == "h":
        return f"{value:.1f} h"
    return {"kgce/件": "0.6911 kgce/件", "tce/万元": "0.02654 tce/万元"}[unit]


def test_html_shows_every_kpi_bilingual_with_its_formatted_value() -> None:
    report = example_report()
    page = render_html(report)
    for k in report["kpis"]:
        row = row_starting(page, k["name"])
        assert k["name_en"] in row[0]
        if k["value"] is None:
            assert row[1] == "—"
            assert k["note"] in row[4]
        else:
            assert row[1] == expected_value(k["value"], k["unit"]), k["id"]
    assert row_starting(page, "关键工序数控化率(申报)")[1] == "83.3%"
    assert row_starting(page, "综合能耗")[1] == "33.172 tce"
    assert row_starting(page, "单位产品综合能耗变化")[1] == "-8.2%"


def test_html_sets_declared_nc_equipment_beside_the_measured() -> None:
    report = example_report()
    page = render_html(report)
    for e in report["equipment"]:
        assert e["id"] in page
    nc = section(page, "关键工序数控化率 申报与实测")
    declared, measured = nc.split('<div class="side">')[1:3]
    assert "83.3%" in declared
    assert "66.7%" in measured
    in_declared = {e["id"] for e in report["equipment"] if e["key_process"] and e["nc"]}
    in_measured = {e["id"] for e in report["equipment"] if e["nc_measured"]}
    assert in_declared - in_measured == {"cnc-04", "cnc-08"}
    for eid in in_declared:
        assert f"<b>{eid}</b>" in declared
    for eid in in_measured:
        assert f"<b>{eid}</b>" in measured
    assert "<b>cnc-04</b>" not in measured
    # cnc-04's coverage is shown (and marked low) beside it
    assert row_starting(declared, "cnc-04")[2] == "70.0%"
    assert 'class="num low">70.0%' in declared


def test_html_equipment_table_in_hours_and_percents() -> None:
    report = example_report()
    page = render_html(report)
    cnc01 = next(e for e in report["equipment"] if e["id"] == "cnc-01")
    times = next(r for r in rows_of(page) if r and r[0].startswith("cnc-01") and len(r) == 15)
    assert times[4] == "95.0%"
    assert times[8] == f"{cnc01['time']['apt_s'] / 3600:,.1f}" == "270.0"
    ratios = next(r for r in rows_of(page) if r and r[0].startswith("cnc-01") and len(r) == 13)
    assert ratios[1] == "9,954"
    assert ratios[7] == f"{cnc01['oee'] * 100:.1f}%" == "68.9%"
    meter = row_starting(page, "em-main")
    assert meter[8] == "22.911"
    assert meter[9] == "122.161"


def test_html_signature_block_names_key_digest_and_the_verify_command() -> None:
    report = example_report()
    page = render_html(report)
    sig = section(page, "签名")
    assert report["signature"]["key_id"] in sig
    assert report["signature"]["public_key"] in sig
    assert report["digest"]["value"] in sig
    assert "1,284,311" in sig
    assert "ingest-server verify report.json" in sig
    assert "未签名" not in page


def test_html_escapes_what_the_enterprise_typed() -> None:
    report = example_report()
    report["enterprise"]["name"] = '<script>alert("x")</script>'
    report["equipment"][0]["name"] = "<img src=x onerror=alert(1)>"
    report["kpis"][0]["note"] = "</td></tr></table><b>forged</b>"
    report["meters"][0]["name_en"] = "Main & <i>incomer</i>"
    report["report_id"] = 'x"; } body { display: none'
    page = render_html(report)
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img" not in page
    assert "<b>forged</b>" not in page
    assert "&lt;/td&gt;" in page
    assert "Main &amp; &lt;i&gt;incomer&lt;/i&gt;" in page
    style = page[page.index("<style>") : page.index("</style>")]
    assert "display: none" not in style  # the id in the page footer: safe characters only
    assert "x&quot;; } body { display: none" in page


def test_html_marks_a_partial_period() -> None:
    report = example_report()
    assert "未完结" not in render_html(report)
    report["period"]["partial"] = True
    page = render_html(report)
    assert "未完结 / partial" in page
    assert page.index("未完结 / partial") < page.index("Headline KPIs")  # in the title block


def test_html_is_self_contained_and_printable() -> None:
    page = render_html(example_report())
    assert not re.search(r"<(script|link|img|iframe)\b", page)
    assert "http://" not in page
    assert "https://" not in page
    assert "size: A4" in page
    assert "@media print" in page
    assert "display: table-header-group" in page  # headers repeat on each printed page


def test_html_caps_long_lists_and_points_to_the_json() -> None:
    report = example_report()
    gap = report["quality"]["gaps"][0]
    report["quality"]["gaps"] = [dict(gap, device=f"dev-{i:03d}") for i in range(250)]
    page = render_html(report)
    assert "dev-199" in page
    assert "dev-200" not in page
    assert "50 more in the JSON" in page


def test_html_renders_an_empty_unsigned_draft() -> None:
    page = render_html(minimal_report())
    assert "未签名草稿 / unsigned draft" in page
    assert "No baseline" in page
    row = row_starting(page, "综合能耗")
    assert row[1] == "—"
    assert "no data" in row[4]
    assert row_starting(page, "统一社会信用代码")[1] == "—"


def test_renderers_refuse_another_format_version() -> None:
    report = example_report()
    report["format_version"] = 2
    with pytest.raises(ReportFormatError, match="version 2"):
        render_html(report)
    with pytest.raises(ReportFormatError):
        render_xlsx(report, io.BytesIO())


def stored(value: float) -> float:
    """A number as openpyxl writes it: 16 significant digits (Excel itself works to 15),
    so a double may come back one unit in the last place off; nothing else may change."""
    return float(f"{value:.16g}")


def workbook(report: dict[str, Any]) -> Any:
    buf = io.BytesIO()
    render_xlsx(report, buf)
    buf.seek(0)
    return load_workbook(buf)


def header_row(ws: Any, first: str) -> int:
    for row in ws.iter_rows(max_col=1):
        if row[0].value == first:
            return int(row[0].row)
    raise AssertionError(f"{ws.title}: no row starts with {first!r}")


def by_id(ws: Any, header: int) -> dict[str, dict[str, Any]]:
    heads = [c.value for c in ws[header]]
    out = {}
    for row in ws.iter_rows(min_row=header + 1):
        if row[0].value is not None:
            out[row[0].value] = {h: c for h, c in zip(heads, row, strict=False) if h}
    return out


def test_xlsx_holds_the_json_kpi_values_as_numbers() -> None:
    report = example_report()
    ws = workbook(report)["概览 Summary"]
    header = header_row(ws, "编号 ID")
    rows = by_id(ws, header)
    assert list(rows) == [k["id"] for k in report["kpis"]]
    for k in report["kpis"]:
        cell = rows[k["id"]]["数值 Value"]
        if k["value"] is None:
            assert cell.value is None
        else:
            assert isinstance(cell.value, int | float)
            assert cell.value == stored(k["value"]), k["id"]
        assert rows[k["id"]]["数据覆盖率 Coverage"].value == stored(k["coverage"])
    assert rows["nc_rate_declared"]["数值 Value"].number_format == '0.0"%"'
    assert rows["energy_tce"]["数值 Value"].number_format == "0.000"
    assert rows["nc_rate_declared"]["分子 Numerator"].value == 10
    assert ws.freeze_panes == f"A{header + 1}"


def test_xlsx_equipment_and_meters_carry_the_json_figures() -> None:
    report = example_report()
    wb = workbook(report)
    assert wb.sheetnames == SHEETS
    equipment = by_id(wb["设备 Equipment"], 1)
    assert list(equipment) == [e["id"] for e in report["equipment"]]
    for e in report["equipment"]:
        row = equipment[e["id"]]
        assert row["实际生产 APT s"].value == stored(e["time"]["apt_s"])
        assert row["覆盖率 Coverage"].value == stored(e["coverage"])
        assert row["综合效率 OEE"].value == (None if e["oee"] is None else stored(e["oee"]))
        assert row["计入实测 NC measured"].value is e["nc_measured"]
    assert equipment["cnc-01"]["综合效率 OEE"].number_format == "0.0%"
    meters = by_id(wb["计量 Meters"], 1)
    for m in report["meters"]:
        assert meters[m["id"]]["折标煤 tce"].value == (
            None if m["tce"] is None else stored(m["tce"])
        )
        assert meters[m["id"]]["用量 Quantity"].value == stored(m["quantity"])
    assert meters["em-main"]["折标煤 tce"].number_format == "0.000"
    factors = wb["系数 Factors"]
    assert factors["C3"].value == report["factors"]["energy"]["rows"][0]["coefficient"]
    assert report["factors"]["energy"]["version"] in factors["A1"].value


def test_xlsx_header_rows_are_bold_and_frozen() -> None:
    wb = workbook(example_report())
    for title, header, freeze in (
        ("设备 Equipment", 1, "B2"),
        ("计量 Meters", 1, "B2"),
        ("产量 Production", 1, "A2"),
        ("数据质量 Data quality", 2, "A3"),
        ("系数 Factors", 2, "A3"),
        ("签名 Signature", 1, "A2"),
    ):
        ws = wb[title]
        cells = [c for c in ws[header] if c.value is not None]
        assert len(cells) >= 2, title
        assert all(c.font.b for c in cells), title
        assert ws.freeze_panes == freeze, title
        assert not ws[header + 1][1].font.b, title
        assert ws.column_dimensions["A"].width >= 8, title
    summary = wb["概览 Summary"]
    assert all(c.font.b for c in summary[header_row(summary, "编号 ID")] if c.value)
    assert wb["签名 Signature"]["B4"].value == example_report()["signature"]["key_id"]


def test_xlsx_keeps_typed_in_text_as_text() -> None:
    report = example_report()
    report["equipment"][0]["name"] = '=HYPERLINK("http://example.invalid","x")'
    report["meters"][0]["name"] = "bad\x01char"
    ws = workbook(report)["设备 Equipment"]
    cell = ws["B2"]
    assert cell.value == '=HYPERLINK("http://example.invalid","x")'
    assert cell.data_type == "s"


def test_xlsx_renders_an_empty_unsigned_draft_to_a_path(tmp_path: Path) -> None:
    out = tmp_path / "report.xlsx"
    render_xlsx(minimal_report(), out)
    wb = load_workbook(out)
    assert wb.sheetnames == SHEETS
    assert wb["基准 Baseline"]["A1"].value == "无基准期 No baseline"
    assert wb["签名 Signature"]["B2"].value == "未签名草稿 unsigned draft"
    assert wb["设备 Equipment"].max_row == 1
    summary = wb["概览 Summary"]
    rows = by_id(summary, header_row(summary, "编号 ID"))
    assert all(r["数值 Value"].value is None for r in rows.values())
