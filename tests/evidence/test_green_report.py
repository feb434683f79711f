"""The report's signed `green` and `ghg` blocks (docs/green-ghg.md), the methodology
section, who entered the output and when, and the declared changes in the period: on the
demo registry on a real PostgreSQL, with entries stored by repo/green.py. A block that
its figures or entries contradict fails verification with its reason code; a report made
before the blocks renders and verifies.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import load_workbook  # type: ignore[import-untyped,unused-ignore]

from ingest_server.db.schema import migrate
from ingest_server.evidence.canonical import sign
from ingest_server.evidence.ghg import ProcessEmission, ghg_problems
from ingest_server.evidence.green import green_problems, notes_zh
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_methods import methods_html
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import verify
from ingest_server.repo import green, production
from ingest_server.repo.equipment import edit_equipment
from ingest_server.repo.registry import import_registry, load_registry
from simulators.scenario import default_scenario_path
from tests.evidence.test_green import plant_report

DEMO = default_scenario_path().with_name("demo-registry.yaml")
ENT = "hf-precision"
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
AS_OF = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)
WELDING = ProcessEmission(source="CO2 焊接保护气", activity=1.2, unit="t", factor=1.0,
                          factor_source="购入量即排放量", evidence="采购台账")  # fmt: skip
SF6 = ProcessEmission(source="SF6 开关柜补气", gas="SF6", activity=0.002, unit="t", factor=1.0,
                      factor_source="补气量即排放量", gwp=23500, gwp_source="IPCC AR5")  # fmt: skip
ENTRIES = {
    "indicators": [
        {"id": "energy_per_unit", "baseline": 0.5, "leading": 0.3, "reference": "行业表A.1"},
        {"id": "solid_waste_reuse", "group": "resource_efficiency", "name": "固废综合利用率",
         "name_en": "Solid waste reused", "unit": "%", "direction": "higher", "value": 92.5,
         "evidence": "固废台账", "baseline": 80, "leading": 95},
    ],
    "pv": None,
}  # fmt: skip


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def made(pg_server: Any, key: Ed25519PrivateKey) -> Any:
    """The demo plant with the period's entries (a first set, then the one in force), a
    production entry by a clerk and an equipment attribute edited: its signed report."""
    with pg_server.database() as db:
        migrate(db)
        with psycopg.connect(db) as conn:
            import_registry(conn, load_registry(DEMO), {"gw-01": b"k" * 32})
            for by, process in (("张工", [WELDING]), ("李工", [WELDING, SF6])):
                green.add_entries(conn, green.NewGreenEntries(
                    ENT, SAT, SUN, ENTRIES, [p.model_dump(mode="json") for p in process],
                    "月度填报", by))  # fmt: skip
            production.add_entry(conn, production.NewEntry(
                ENT, None, SAT, SUN, 1200.0, "件", 35.0, "", "clerk-2"))  # fmt: skip
            edit_equipment(conn, enterprise=ENT, equipment="cnc-01", changes={"nc": False},
                           account="editor-7", note="控制器拆除")  # fmt: skip
            conn.commit()
            doc = make_report(conn, Request(ENT, SAT, SUN), key=key, as_of=AS_OF)
            conn.commit()
        yield db, doc


def test_the_blocks_hold_the_entries_in_force_with_who_and_when(made: Any) -> None:
    _, doc = made
    g, ghg = doc["green"], doc["ghg"]
    assert g["entered"]["by"] == ghg["entered"]["by"] == "李工"
    assert g["entered"]["at"].endswith("Z")
    assert g["entered"]["note"] == "月度填报"
    assert g["error"] is None
    rows = {r["id"]: r for r in g["rows"]}
    assert (rows["energy_per_unit"]["baseline"], rows["energy_per_unit"]["leading"]) == (0.5, 0.3)
    reuse = rows["solid_waste_reuse"]
    assert (reuse["value"], reuse["position"], reuse["origin"]) == (92.5, "between", "entered")
    report = ghg["report"]
    assert [s["id"] for s in report["sources"] if s["category"] == "process"] == [
        "process-1", "process-2"]  # fmt: skip
    assert report["process_tco2e"] == pytest.approx(1.2 + 0.002 * 23500)
    # the energy-related part is the CO2 KPI, bit for bit
    co2 = next(k["value"] for k in doc["kpis"] if k["id"] == "carbon_tco2")
    assert report["energy_tco2"] == co2
    assert green_problems(doc) == ghg_problems(doc) == []
    (entry,) = doc["production"]
    assert (entry["entered_by"], entry["entered_at"][-1]) == ("clerk-2", "Z")


def test_verify_recomputes_both_blocks_and_names_a_contradiction(
    made: Any, key: Ed25519PrivateKey
) -> None:
    db, doc = made
    with psycopg.connect(db) as conn:
        assert verify(doc, conn=conn).ok
    forged = copy.deepcopy(doc)
    row = next(r for r in forged["green"]["rows"] if r["id"] == "solid_waste_reuse")
    row["position"] = "leading"
    forged["ghg"]["report"]["total_tco2e"] = 1.0
    sign(forged, key)
    v = verify(forged)
    codes = [r.code for r in v.reasons]
    assert "green_differs" in codes
    assert "ghg_differs" in codes
    assert any("solid_waste_reuse: position 'leading' in the report" in p for p in v.green)
    assert any("total_tco2e" in p for p in v.ghg)
    # the entries themselves changed: the rows no longer follow from them
    moved = copy.deepcopy(doc)
    moved["green"]["entries"]["indicators"][1]["value"] = 99.0
    assert any("solid_waste_reuse: value 92.5" in p for p in green_problems(moved))
    # a report made before the blocks verifies as it did, and renders
    older = copy.deepcopy(doc)
    for name in ("green", "ghg", "signature"):
        older.pop(name)
    sign(older, key)
    with psycopg.connect(db) as conn:
        assert verify(older, conn=conn).ok
    page = render_html(older)
    assert "绿色工厂评价指标" not in page
    assert "方法依据" in page


def test_the_page_shows_blocks_methods_entries_and_changes(made: Any) -> None:
    _, doc = made
    page = render_html(doc)
    for text in (
        "绿色工厂评价指标", "Green-factory indicators", "固废综合利用率", "由 李工 于",
        "温室气体排放报告", "CO2 焊接保护气", "IPCC AR5", "核算边界",
        # methodology: the clauses checked, the factor publications the meters used
        "方法依据", "Methodology references", "ISO 22400-2:2014", "GB/T 2589-2020",
        "GB/T 32151.29-2024", "第4章 核算边界", "GB/T 32150-2015", "GB 17167-2006",
        "GB/T 36132-2025",
        # output and value added: who entered them
        "填报人", "clerk-2",
        # the declared changes in the period
        "期间内的申报变更", "Declared changes in the period", "editor-7", "控制器拆除",
    ):  # fmt: skip
        assert text in page, text
    methods = page[page.index("方法依据") :]
    assert "cn-2023.2" in methods  # the emission table the report names
    assert "5.5" not in methods  # no clause of ISO 22400-2 was checked
    order = [page.index(t) for t in ("温室气体排放报告", "方法依据", "盖章处")]
    assert order == sorted(order)


def test_a_measured_rows_note_is_shown_in_chinese_then_as_signed(made: Any) -> None:
    """The block keeps the KPI's English note it signed; the page and the sheet put the
    KPI's note_zh before it (the demo weekend has no samples, so its KPI notes are set
    here as a plant with gaps would have them)."""
    _, signed = made
    doc = copy.deepcopy(signed)
    kpi = next(k for k in doc["kpis"] if k["id"] == "water_per_unit")
    kpi["note"], kpi["note_zh"] = "no coefficient for: wm-1", "以下计量表无折标系数: wm-1"
    row = next(r for r in doc["green"]["rows"] if r["id"] == "water_per_unit")
    row["note"] = "no coefficient for: wm-1; 未填基准值或引领值 / no baseline or leading value"
    assert notes_zh(doc) == {"water_per_unit": "以下计量表无折标系数: wm-1; 未填基准值或引领值 / "
                             "no baseline or leading value"}  # fmt: skip
    sheet = render_html(doc)
    sheet = sheet[sheet.index("绿色工厂评价指标") : sheet.index("温室气体排放报告")]
    assert sheet.index("以下计量表无折标系数: wm-1") < sheet.index("no coefficient for: wm-1")
    out = io.BytesIO()
    render_xlsx(doc, out)
    ws = load_workbook(io.BytesIO(out.getvalue()))["绿色工厂 Green factory"]
    heads = [c.value for c in ws[5]]
    rows = {r[1]: dict(zip(heads, r, strict=True)) for r in ws.iter_rows(6, values_only=True)
            if r[1]}  # fmt: skip
    assert (
        rows["water_per_unit"]["说明 Note"] == f"{notes_zh(doc)['water_per_unit']} / {row['note']}"
    )
    # a note that is not its KPI's (the block's own words) is left as it is
    assert rows["carbon_per_unit"]["说明 Note"] == "报告中无二氧化碳排放量 / no CO2"


def test_the_workbook_has_both_sheets_and_the_entry_columns(made: Any) -> None:
    _, doc = made
    out = io.BytesIO()
    render_xlsx(doc, out)
    wb = load_workbook(io.BytesIO(out.getvalue()))
    assert {"绿色工厂 Green factory", "温室气体 GHG"} <= set(wb.sheetnames)
    assert wb.sheetnames[-1] == "签名 Signature"
    ws = wb["绿色工厂 Green factory"]
    heads = [c.value for c in ws[5]]
    rows = {r[1]: dict(zip(heads, r, strict=True)) for r in ws.iter_rows(6, values_only=True)
            if r[1]}  # fmt: skip
    assert rows["solid_waste_reuse"]["数值 Value"] == pytest.approx(0.925)  # a share: fraction
    assert any("李工" in str(c.value) for c in ws["A"])
    prod = wb["产量 Production"]
    heads = [c.value for c in prod[1]]
    entry = dict(zip(heads, next(prod.iter_rows(2, values_only=True)), strict=True))
    assert entry["填报人 Entered by"] == "clerk-2"
    assert isinstance(entry["填报时间 Entered at (UTC)"], dt.datetime)  # a date cell
    older = copy.deepcopy(doc)
    older.pop("green")
    older.pop("ghg")
    out = io.BytesIO()
    render_xlsx(older, out)
    assert "温室气体 GHG" not in load_workbook(io.BytesIO(out.getvalue())).sheetnames


def test_the_methods_cite_the_publications_the_meters_used() -> None:
    """test_green's plant (electricity in Anhui, natural gas, steam, water): the grid
    factor's notice and the gas default's standard, the coefficient rows of GB/T 2589."""
    methods = methods_html(plant_report())
    for text in ("公告2025年第47号", "GB/T 32151.22-2024", "电力", "GB/T 2589-2008"):
        assert text in methods, text
