"""The GHG report: sources by category from the report's top-level meters, activity data
and factors with their publications, entered process emissions in tCO2e, and totals that
equal the report's own CO2 KPI bit for bit, on a report the engine computed from inputs
and on one made from samples stored in PostgreSQL."""

from __future__ import annotations

import copy
import datetime as dt
import io
from typing import Any

import psycopg
import pytest
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError

from ingest_server.evidence.columns import ReportFormatError
from ingest_server.evidence.ghg import ProcessEmission, ghg_report
from ingest_server.evidence.render_green import ghg_sheet
from ingest_server.evidence.report import Request, make_report
from tests.evidence.test_green import kpi, plant_report
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc
from tests.harness.pg import PgServer

SHIELDING_GAS = ProcessEmission(
    source="CO2 焊接保护气 welding shielding gas", activity=1.2, unit="t", factor=1.0,
    factor_source="企业台账: 采购量 x 纯度 99.5% (按 1.0 计)", evidence="2026-11 气瓶领用记录",
)  # fmt: skip
SF6 = ProcessEmission(
    source="SF6 开关柜泄漏 switchgear leak", gas="SF6", activity=0.001, unit="t", factor=1.0,
    factor_source="补气量 refill", gwp=23500, gwp_source="IPCC AR5 WG1 表8.A.1",
)  # fmt: skip


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return plant_report()


@pytest.fixture(scope="module")
def sampled(pg_server: PgServer) -> dict[str, Any]:
    """Two days of tests/harness/kpi.py's plant, stored through the real Store, reported
    (the database is dropped once the report is made)."""
    t0 = utc(2026, 11, 15, 16).timestamp()
    req = Request("hf", dt.date(2026, 11, 16), dt.date(2026, 11, 17))
    with pg_server.database() as dsn:
        prepare_kpi(dsn)
        store_samples(dsn, plant_samples(11, t0, t0 + 2 * 86400), 11)
        with psycopg.connect(dsn) as conn:
            return make_report(conn, req, key=None, as_of=utc(2026, 11, 25, 12))


def test_sources_activity_factors_and_publications(report: dict[str, Any]) -> None:
    g = ghg_report(report, [])
    by = {s.id: s for s in g.sources}
    # top-level energy meters only: water is no source, the PV submeter is inside em-main
    assert list(by) == ["em-main", "gm-main", "sm-main"]
    em, gm, sm = by["em-main"], by["gm-main"], by["sm-main"]
    assert (em.category, em.activity, em.unit) == ("purchased_electricity", 90000.0, "kWh")
    assert (em.factor, em.factor_unit) == (0.6553, "kgCO2/kWh")
    assert "公告2025年第47号" in em.factor_source
    assert "安徽 0.6553" in em.factor_source
    assert em.tco2e == pytest.approx(90000 * 0.6553 / 1000)
    assert (gm.category, gm.factor) == ("fuel_combustion", 2.1622)
    assert "GB/T 32151.22-2024" in gm.factor_source
    assert gm.tco2e == pytest.approx(2500.25 * 2.1622 / 1000)
    # steam has no factor in the table: listed with its activity data, counted nowhere
    assert (sm.category, sm.activity, sm.factor, sm.tco2e) == ("purchased_heat", 80.0, None, None)
    [gap] = g.gaps
    assert "sm-main" in gap.text
    assert "not in the total" in gap.text_en
    cats = {c.id: c.tco2e for c in g.categories}
    assert cats["purchased_heat"] is None
    assert cats["process"] is None
    assert g.process_tco2e is None
    # the boundary
    assert g.enterprise["id"] == "hf"
    assert [s["id"] for s in g.sites] == ["p1"]
    assert (g.period["from"], g.period["to"]) == ("2026-11-01", "2026-11-30")
    assert g.factor_table.startswith("cn-2023.2: ")


def test_totals_equal_the_reports_co2_exactly(report: dict[str, Any]) -> None:
    g = ghg_report(report, [SHIELDING_GAS, SF6])
    co2 = kpi(report, "carbon_tco2")["value"]
    assert g.energy_tco2 == co2  # bit for bit, not approximately
    energy_sources = [s.tco2e for s in g.sources if s.category != "process" and s.tco2e]
    assert sum(energy_sources) == co2
    # process: 1.2 t CO2; 0.001 t SF6 x GWP 23500 = 23.5 tCO2e
    proc = {s.id: s for s in g.sources if s.category == "process"}
    assert proc["process-1"].tco2e == pytest.approx(1.2)
    assert proc["process-2"].emission_t == 0.001
    assert proc["process-2"].tco2e == pytest.approx(23.5)
    assert "GWP 23500" in proc["process-2"].factor_source
    assert g.process_tco2e == pytest.approx(24.7)
    assert g.total_tco2e == co2 + g.process_tco2e
    cats = {c.id: c.tco2e for c in g.categories}
    assert sum(v for v in cats.values() if v is not None) == pytest.approx(g.total_tco2e)
    assert cats["purchased_electricity"] == pytest.approx(58.977)


def test_a_report_from_stored_samples_agrees_with_its_co2(sampled: dict[str, Any]) -> None:
    g = ghg_report(sampled, [SHIELDING_GAS])
    co2 = kpi(sampled, "carbon_tco2")["value"]
    assert co2 is not None
    assert co2 > 0
    assert g.energy_tco2 == co2
    # the submeter em-sub is inside em-main: one source
    assert [(s.id, s.category) for s in g.sources] == [
        ("em-main", "purchased_electricity"), ("process-1", "process")]  # fmt: skip
    main = next(m for m in sampled["meters"] if m["id"] == "em-main")
    assert g.sources[0].activity == main["quantity"]
    assert g.total_tco2e == co2 + 1.2


def test_a_report_that_disagrees_with_itself_is_refused(report: dict[str, Any]) -> None:
    bent = copy.deepcopy(report)
    next(m for m in bent["meters"] if m["id"] == "gm-main")["tco2"] += 0.001
    with pytest.raises(ReportFormatError, match="does not agree with itself"):
        ghg_report(bent, [])


def test_process_entries_are_checked() -> None:
    with pytest.raises(ValidationError, match="SF6 needs its GWP"):
        ProcessEmission(source="leak", gas="SF6", activity=1, unit="kg", factor=1,
                        factor_source="refill")  # fmt: skip
    with pytest.raises(ValidationError, match="factor_source"):
        ProcessEmission(source="gas", activity=1, unit="t", factor=1, factor_source="")
    with pytest.raises(ValidationError, match="activity"):
        ProcessEmission(source="gas", activity=-1, unit="t", factor=1, factor_source="x")


def test_the_sheet_holds_sources_and_totals_as_numbers(report: dict[str, Any]) -> None:
    g = ghg_report(report, [SHIELDING_GAS])
    wb = Workbook()
    ghg_sheet(wb, g)
    buf = io.BytesIO()
    wb.save(buf)
    ws = load_workbook(io.BytesIO(buf.getvalue()))["温室气体 GHG"]
    cells = {(c.row, c.column): c for row in ws.iter_rows() for c in row if c.value is not None}
    label = {c.value: c for c in cells.values() if isinstance(c.value, str)}
    period = label["核算期 Period"]
    assert ws.cell(period.row, 2).value == dt.datetime(2026, 11, 1)  # a date cell
    head = label["排放量 tCO2e"]
    assert ws.cell(head.row, 7).value == "活动数据 Activity data"
    em = next(r for r in range(head.row + 1, head.row + 6) if ws.cell(r, 2).value == "em-main")
    assert ws.cell(em, 1).value == "购入电力产生的排放 Purchased electricity"
    assert ws.cell(em, 7).value == 90000
    assert ws.cell(em, 13).value == pytest.approx(90000 * 0.6553 / 1000)
    assert ws.cell(em, 13).number_format == "#,##0.000"
    total = label["排放总量 Total"]
    assert ws.cell(total.row, 2).value == pytest.approx(g.total_tco2e)
    assert ws.cell(total.row, 2).number_format == "#,##0.000"
    energy = next(c for v, c in label.items() if v.startswith("能源活动排放"))
    assert ws.cell(energy.row, 2).value == kpi(report, "carbon_tco2")["value"]
    assert any("sm-main" in v for v in label)  # the gap is stated
