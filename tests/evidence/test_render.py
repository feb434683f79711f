"""The evidence report as HTML and XLSX: what a verifier reads must be the JSON's figures,
every typed-in string must stay text, and a draft with nothing in it must still render."""

from __future__ import annotations

import datetime as dt
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.columns import ReportFormatError
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_summary import HEADLINE
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
    page = section(render_html(report), "关键指标")  # the detail (page one: its summary)
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
    assert "this draft is unsigned: no evidence yet" in page  # the claim on page one
    row = row_starting(section(page, "关键指标"), "综合能耗")
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
            # one convention for shares: a KPI in "%" (83.3) as its fraction, shown 83.3%
            value = k["value"] / 100 if k["unit"] == "%" else k["value"]
            assert cell.value == stored(value), k["id"]
            assert (cell.number_format == "0.0%") is (k["unit"] == "%"), k["id"]
        assert rows[k["id"]]["数据覆盖率 Coverage"].value == stored(k["coverage"])
        assert rows[k["id"]]["数据覆盖率 Coverage"].number_format == "0.0%"
    assert rows["nc_rate_declared"]["数值 Value"].value == pytest.approx(10 / 12)
    assert rows["energy_per_unit_change"]["数值 Value"].value == pytest.approx(-0.08222901588)
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


# --- page one, numbers for people, gaps stated truly ------------------------------------


def page_one(page: str) -> str:
    return page[page.index('<div class="page-one">') : page.index('<section class="keep"><h2>')]


def test_page_one_is_the_summary_and_the_detail_starts_on_page_two() -> None:
    report = example_report()
    page = render_html(report)
    one = page_one(page)
    # the claim: who, which period, what
    assert "合肥精工传动机械有限公司 声明" in one
    assert "from 2026-11-01 to 2026-11-30" in one
    # every headline figure with its coverage and change against the baseline, in the
    # programmes' order; the other figures are left to the KPI section, and counted
    figures = [k for k in report["kpis"] if not k["id"].endswith("_change")]
    headline = sorted((k for k in figures if k["id"] in HEADLINE), key=lambda k: HEADLINE.index(
        k["id"]))  # fmt: skip
    assert len(headline) >= 10
    table = one[one.index('<table class="headline') :]
    shown = [r[0] for r in rows_of(table[: table.index("</table>")]) if r][1:]  # the heads
    assert [x[: len(k["name"])] for x, k in zip(shown, headline, strict=True)] == [
        k["name"] for k in headline
    ]
    for k in headline:
        row = row_starting(one, k["name"])
        value = "—" if k["value"] is None else expected_value(k["value"], k["unit"])
        assert row[1] == value, k["id"]
        assert row[2] == f"{k['coverage'] * 100:.1f}%", k["id"]
    others = [k for k in figures if k["id"] not in HEADLINE]
    assert others, "the example has figures beyond the headline ones"
    assert f"其余 {len(others)} 项指标" in one
    for k in others:  # in the detail, not on page one
        assert not [r for r in rows_of(one) if r and r[0].startswith(k["name"])], k["id"]
        assert row_starting(section(page, "关键指标"), k["name"])
    assert row_starting(one, "单位产品综合能耗")[3] == "-8.2%基期 baseline 0.7530 kgce/件"
    assert row_starting(one, "综合能耗")[3] == "—"  # no change KPI for it
    assert "目标" not in one  # no target known yet: no target column
    # the gaps in one line, how to verify: the id, digest and QR code
    assert "15 machines with unknown state" in one
    assert "ingest-server verify report.json" in one
    assert report["report_id"] in one
    assert '<figure class="qr"><svg' in one
    assert "Generated" not in one  # the particulars follow on page two
    css = page[page.index("@media print") :]
    assert ".page-one { break-after: page;" in css


def test_numbers_show_no_binary_float_tail() -> None:
    report = example_report()
    report["quality"]["counter_anomalies"] = [
        {"device": "em-ht", "tag": "energy_kwh", "ts": "2026-11-24T22:01:10Z",
         "flag": "rollover", "prev_value": 6552.400000000001, "value": 0.30000000000000004,
         "delta": 1.4999999999997726},
    ]  # fmt: skip
    report["meters"][0]["quantity"] = 40172.30000000001
    report["meters"][1]["quantity"] = 12.349999999999
    page = render_html(report)
    assert not re.search(r"\d\.\d*0000000", page), "a binary-float tail is printed"
    assert row_starting(section(page, "数据质量"), "em-ht")[4:7] == ["6,552.4", "0.3", "1.5"]
    assert row_starting(page, report["meters"][0]["id"])[3] == "40,172"
    assert row_starting(page, report["meters"][1]["id"])[3] == "12.3"
    assert "gap after 900 s; 心跳 heartbeat 300 s" in page
    report["parameters"].update(gap_after_s=900.0, heartbeat_s=300.0)
    assert "gap after 900 s; 心跳 heartbeat 300 s" in render_html(report)


def unknown_49h(report: dict[str, Any]) -> dict[str, Any]:
    """Every machine with 49 h of unknown time, no gap interval (silent from the start of
    the period: time with no state at all), every tag in good order."""
    for e in report["equipment"]:
        e["time"].update(unknown_period_s=49 * 3600.0, unknown_pot_s=49 * 3600.0,
                         unknown_s=45 * 3600.0)  # fmt: skip
    report["quality"] = {
        "tags": [dict(t, coverage=1.0) for t in report["quality"]["tags"]],
        "gaps": [],
        "counter_anomalies": [],
    }
    return report


def test_gaps_state_the_unknown_time_the_kpis_count() -> None:
    report = unknown_49h(example_report())
    n = len(report["equipment"])
    page = render_html(report)
    line = f"{n} machines with unknown state, {49 * n:,}.0 h in all (most: cnc-01 49.0 h)"
    assert line in page_one(page)
    quality = section(page, "数据质量")
    assert '数据缺口 <span class="en">Data gaps</span></b> 无' not in quality
    assert line in quality
    for e in report["equipment"]:
        row = row_starting(quality, e["id"])
        assert row[2:5] == ["49.0", "49.0", "45.0"], e["id"]
    # a report whose machines' time has only the planned busy time's unknown (older ones)
    old = example_report()
    old_quality = section(render_html(old), "数据质量")
    assert row_starting(old_quality, "cnc-08")[2:5] == ["—", "—", "375.0"]
    # nothing unknown, no gap, no anomaly, every tag covered: "none" only then
    clean = unknown_49h(example_report())
    for e in clean["equipment"]:
        e["time"].update(unknown_period_s=0.0, unknown_pot_s=0.0, unknown_s=0.0)
    clean_page = render_html(clean)
    assert 'data-gaps="none"' in page_one(clean_page)
    wb = workbook(report)
    summary = wb["概览 Summary"]
    gaps = summary.cell(row=header_row(summary, "数据缺口 Data gaps"), column=3).value
    assert gaps.startswith(f"{n} machines with unknown state")
    ws = wb["数据质量 Data quality"]
    assert ws["A1"].value == "状态未知时间 Unknown state time by machine"
    unknown = by_id(ws, 2)
    assert unknown["cnc-01"]["统计期内 In the period s"].value == 49 * 3600


def test_xlsx_one_percent_convention_and_real_dates() -> None:
    report = example_report()
    wb = workbook(report)
    percent_heads = (
        "覆盖率",
        "占比",
        "可用率",
        "性能率",
        "质量率",
        "综合效率",
        "利用率",
        "计入比例",
    )
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                head = ws.cell(row=1, column=cell.column).value or ""
                if isinstance(cell.value, float) and cell.number_format == "0.0%":
                    assert -1.5 <= cell.value <= 1.5, (ws.title, cell.coordinate, cell.value)
                numeric = isinstance(cell.value, int | float)
                if numeric and str(head).startswith(percent_heads) and cell.row > 1:
                    assert cell.number_format == "0.0%", (ws.title, cell.coordinate)
    production = wb["产量 Production"]
    assert production["B2"].value == dt.datetime(2026, 11, 1)
    assert production["B2"].is_date
    assert production["B2"].number_format == "yyyy-mm-dd"
    summary = wb["概览 Summary"]
    period = header_row(summary, "统计期 Period")
    assert summary.cell(row=period, column=2).value == dt.datetime(2026, 11, 1)
    generated = summary.cell(row=header_row(summary, "生成时间 Generated (UTC)"), column=2)
    assert generated.value == dt.datetime(2026, 12, 1, 1, 30, 12)
    assert generated.number_format == "yyyy-mm-dd hh:mm:ss"
    gaps = wb["数据质量 Data quality"]
    starts = [c.value for c in gaps[3] if isinstance(c.value, dt.datetime)]
    assert dt.datetime(2026, 11, 9, 1, 12) in starts  # the first gap's start, UTC
