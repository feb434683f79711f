"""The green-factory indicator sheet: measured indicators from a report the engine computed,
placed against the entered baseline and leading values (boundaries inclusive, the better
direction per indicator), the renewable share's arithmetic, the standard's group order,
refused entries, and the worksheet's cells."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError

from ingest_server.evidence.columns import ReportFormatError
from ingest_server.evidence.compute import Request, compute_report
from ingest_server.evidence.green import (
    GROUPS,
    GreenEntries,
    GreenRow,
    IndicatorEntry,
    PvEntry,
    indicators,
    position,
)
from ingest_server.evidence.render_green import green_sheet
from ingest_server.kpi.records import CounterSum, Inputs, Meter, ProductionEntry, Site, TagCoverage
from ingest_server.repo.registry_model import CARRIER_ROLES

FROM, TO = dt.date(2026, 11, 1), dt.date(2026, 11, 30)
AS_OF = dt.datetime(2026, 12, 5, tzinfo=dt.UTC)
# id, carrier, unit, parent, quantity; pv-roof stands for on-site PV: a submeter until the
# registry has a generation role (then it will be top-level and kept out of consumption)
METERS = (
    ("em-main", "electricity", "kWh", None, 90000.0),
    ("pv-roof", "electricity", "kWh", "em-main", 12000.0),
    ("gm-main", "gas", "m3", None, 2500.25),
    ("sm-main", "steam", "t", None, 80.0),
    ("wm-main", "water", "m3", None, 1500.0),
)
OUTPUT = 30000.0


def plant_report() -> dict[str, Any]:
    """A month of a small plant computed by the engine (compute_report) from its inputs:
    electricity (with a PV submeter), natural gas, steam and water; 30,000 pieces."""
    return compute_report(plant_inputs(), None, Request("hf", FROM, TO), AS_OF)


def plant_inputs() -> Inputs:
    """The inputs of `plant_report`."""
    start = dt.datetime(2026, 10, 31, 16, tzinfo=dt.UTC)
    site = Site("p1", "一厂", "Plant 1", "Asia/Shanghai", "anhui", None, start,
                start + dt.timedelta(days=30))  # fmt: skip
    meters = [Meter(m, m, m, "p1", carrier, unit, parent, (1, m))
              for m, carrier, unit, parent, _ in METERS]  # fmt: skip
    counters = {((1, m), CARRIER_ROLES[c]): CounterSum(q) for m, c, _, _, q in METERS}
    expected = 30 * 86400 / 300
    tags = [TagCoverage((1, m), CARRIER_ROLES[c], CARRIER_ROLES[c], 8000, 0.9 * expected,
                        expected) for m, c, _, _, _ in METERS]  # fmt: skip
    return Inputs(
        {"id": "hf", "name": "测试企业", "name_en": "Test Co", "credit_code": None}, "discrete",
        FROM, TO, AS_OF, [site], [], meters, counters=counters, tags=tags,
        production=[ProductionEntry(1, None, FROM, TO, OUTPUT, "件", 600.0, "")],
    )  # fmt: skip


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return plant_report()


def kpi(report: dict[str, Any], kid: str) -> dict[str, Any]:
    return next(k for k in report["kpis"] if k["id"] == kid)


def rows_by_id(rows: list[GreenRow]) -> dict[str, GreenRow]:
    return {r.id: r for r in rows}


def test_measured_indicators_are_the_reports_figures(report: dict[str, Any]) -> None:
    rows = rows_by_id(indicators(report, GreenEntries()))
    energy = rows["energy_per_unit"]
    assert energy.value == kpi(report, "energy_per_unit")["value"]
    # by hand: (90000 x 0.1229 + 2500.25 x 1.2143) kgce / 30000 pieces
    assert energy.value == pytest.approx((90000 * 0.1229 + 2500.25 * 1.2143) / OUTPUT)
    assert (energy.unit, energy.origin, energy.direction) == ("kgce/件", "measured", "lower")
    # carbon: the report's CO2 (electricity at Anhui's 0.6553, gas at 2.1622) per piece
    carbon = rows["carbon_per_unit"]
    assert carbon.value == pytest.approx((90000 * 0.6553 + 2500.25 * 2.1622) / OUTPUT)
    assert carbon.unit == "kgCO2/件"
    assert rows["water_per_unit"].value == pytest.approx(1500 / OUTPUT)
    assert rows["water_per_unit"].coverage == pytest.approx(0.9)
    # nothing entered: no position, and the row says why
    assert energy.position is None
    assert "baseline" in energy.note
    # no PV and no green power entered: the share is 0, not unknown
    assert rows["renewable_electricity_share"].value == 0.0


def test_pv_share_from_meters_with_export_and_bought_green_power(report: dict[str, Any]) -> None:
    pv = PvEntry(meters=["pv-roof"], exported_kwh=2000, purchased_renewable_kwh=5000)
    share = rows_by_id(indicators(report, GreenEntries(pv=pv)))["renewable_electricity_share"]
    # (12000 generated - 2000 exported + 5000 bought) / (90000 grid + 10000 used on site)
    assert share.value == pytest.approx(15.0)
    assert (share.unit, share.direction) == ("%", "higher")
    assert "pv-roof" in share.basis
    # entered instead of measured: the same arithmetic
    entered = PvEntry(generation_kwh=12000, exported_kwh=2000, purchased_renewable_kwh=5000,
                      evidence="逆变器月报 2026-11")  # fmt: skip
    again = rows_by_id(indicators(report, GreenEntries(pv=entered)))
    assert again["renewable_electricity_share"].value == pytest.approx(15.0)
    assert "逆变器月报" in again["renewable_electricity_share"].basis


@pytest.mark.parametrize(
    ("value", "baseline", "leading", "direction", "expected"),
    [
        (10.0, 10.0, 8.0, "lower", "between"),  # at the baseline: reached
        (10.000001, 10.0, 8.0, "lower", "below_baseline"),
        (8.0, 10.0, 8.0, "lower", "leading"),  # at the leading value: reached
        (8.000001, 10.0, 8.0, "lower", "between"),
        (15.0, 15.0, 30.0, "higher", "between"),
        (14.999999, 15.0, 30.0, "higher", "below_baseline"),
        (30.0, 15.0, 30.0, "higher", "leading"),
        (29.999999, 15.0, 30.0, "higher", "between"),
        (5.0, 5.0, 5.0, "lower", "leading"),  # equal references: reaching one reaches both
    ],
)
def test_position_boundaries(
    value: float, baseline: float, leading: float, direction: Any, expected: str
) -> None:
    assert position(value, baseline, leading, direction) == expected


def test_rows_place_the_figure_between_the_entered_values(report: dict[str, Any]) -> None:
    energy = kpi(report, "energy_per_unit")["value"]
    entries = GreenEntries(
        pv=PvEntry(meters=["pv-roof"], exported_kwh=2000, purchased_renewable_kwh=5000),
        indicators=[
            # the figure exactly at the baseline value: between, not below
            IndicatorEntry(id="energy_per_unit", baseline=energy, leading=energy / 2,
                           reference="行业绿色工厂评价要求 表A.1"),
            # the share exactly at the leading value: leading
            IndicatorEntry(id="renewable_electricity_share", baseline=5.0, leading=15.0),
            IndicatorEntry(id="water_per_unit", baseline=0.04, leading=0.02),
        ],
    )  # fmt: skip
    rows = rows_by_id(indicators(report, entries))
    assert rows["energy_per_unit"].position == "between"
    assert rows["energy_per_unit"].position_name == "达到基准值, 未达引领值"
    assert rows["energy_per_unit"].reference == "行业绿色工厂评价要求 表A.1"
    assert rows["renewable_electricity_share"].position == "leading"
    assert rows["renewable_electricity_share"].position_name_en == "at or beyond the leading value"
    assert rows["water_per_unit"].position == "below_baseline"  # 0.05 m3 > 0.04
    assert rows["carbon_per_unit"].position is None


def test_entered_indicators_take_their_group_in_the_standards_order(
    report: dict[str, Any],
) -> None:
    entries = GreenEntries(indicators=[
        IndicatorEntry(id="floor_area_ratio", group="land_intensive", name="容积率",
                       name_en="Floor area ratio", unit="", direction="higher", value=1.4,
                       evidence="规划许可证", baseline=1.0, leading=2.0),
        IndicatorEntry(id="solid_waste_reuse", group="resource_efficiency",
                       name="一般工业固体废物综合利用率", unit="%", direction="higher",
                       value=None),
        IndicatorEntry(id="clean_energy_share", group="energy_low_carbon", name="清洁能源占比",
                       unit="%", direction="higher", value=40.0, baseline=30.0, leading=60.0),
    ])  # fmt: skip
    rows = indicators(report, entries)
    assert [r.id for r in rows] == [
        "energy_per_unit", "carbon_per_unit", "renewable_electricity_share",
        "clean_energy_share", "water_per_unit", "solid_waste_reuse", "floor_area_ratio",
    ]  # fmt: skip
    order = list(GROUPS)
    assert [order.index(r.group) for r in rows] == sorted(order.index(r.group) for r in rows)
    by = rows_by_id(rows)
    assert (by["floor_area_ratio"].origin, by["floor_area_ratio"].position) == (
        "entered",
        "between",
    )
    assert by["floor_area_ratio"].basis == "规划许可证"
    assert by["floor_area_ratio"].name_en == "Floor area ratio"
    assert by["solid_waste_reuse"].value is None
    assert by["solid_waste_reuse"].note == "未填报 / not entered"
    assert by["clean_energy_share"].group_name == "能源低碳化"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (GreenEntries(indicators=[IndicatorEntry(id="energy_per_unit", baseline=1, leading=2)]),
         "leading value 2 is worse than the baseline value 1"),
        (GreenEntries(indicators=[IndicatorEntry(id="energy_per_unit", value=0.0)]),
         "energy_per_unit is measured: enter only its baseline"),
        (GreenEntries(indicators=[IndicatorEntry(id="land_use", value=3.0)]),
         "land_use: no meter measures it, so enter its group, name, unit and direction"),
        (GreenEntries(pv=PvEntry(meters=["em-main"])),
         "PV meter em-main is counted in this report as electricity consumed from the grid"),
        (GreenEntries(pv=PvEntry(meters=["pv-west"])), "PV meter pv-west is not a meter"),
        (GreenEntries(pv=PvEntry(meters=["wm-main"])), "PV meter wm-main has no electricity"),
        (GreenEntries(pv=PvEntry(generation_kwh=100, exported_kwh=200)),
         "200 kWh exported is more than the 100 kWh generated"),
        (GreenEntries(pv=PvEntry(purchased_renewable_kwh=90001)),
         "is more than the 90000 kWh of grid electricity"),
    ],
)  # fmt: skip
def test_entries_that_cannot_be_right_are_refused_naming_the_fix(
    report: dict[str, Any], entries: GreenEntries, message: str
) -> None:
    with pytest.raises(ReportFormatError, match="^.*" + message.replace("(", r"\(")):
        indicators(report, entries)


def test_entries_are_checked_when_read() -> None:
    with pytest.raises(ValidationError, match="not both"):
        PvEntry(meters=["pv-roof"], generation_kwh=5)
    with pytest.raises(ValidationError, match="entered twice"):
        GreenEntries(indicators=[IndicatorEntry(id="x"), IndicatorEntry(id="x")])
    with pytest.raises(ValidationError, match="direction"):
        IndicatorEntry(id="x", direction="sideways")
    with pytest.raises(ReportFormatError, match="expected format"):
        indicators({"format": "something else"}, GreenEntries())


def test_the_sheet_holds_numbers_with_formats_and_bilingual_headers(
    report: dict[str, Any],
) -> None:
    entries = GreenEntries(
        pv=PvEntry(meters=["pv-roof"], exported_kwh=2000, purchased_renewable_kwh=5000),
        indicators=[IndicatorEntry(id="renewable_electricity_share", baseline=5, leading=30)],
    )
    rows = indicators(report, entries)
    wb = Workbook()
    green_sheet(wb, rows)
    buf = io.BytesIO()
    wb.save(buf)
    ws = load_workbook(io.BytesIO(buf.getvalue()))["绿色工厂 Green factory"]
    heads = [c.value for c in ws[5]]
    assert heads[:6] == ["一级指标 Group", "编号 ID", "指标 Indicator",
                         "指标(英文) Indicator (English)", "单位 Unit", "数值 Value"]  # fmt: skip
    body = [list(row) for row in ws.iter_rows(min_row=6)]
    assert [r[1].value for r in body] == [r.id for r in rows]
    share = next(r for r in body if r[1].value == "renewable_electricity_share")
    # the workbook's convention: a share is its fraction, shown as a percent
    assert share[5].value == pytest.approx(0.15)
    assert share[5].number_format == "0.0%"
    assert (share[7].value, share[8].value) == (0.05, 0.3)
    assert share[7].number_format == "0.0%"
    assert share[10].value == "达到基准值, 未达引领值"
    assert share[0].value == "能源低碳化 Low-carbon energy"
    energy = next(r for r in body if r[1].value == "energy_per_unit")
    assert energy[5].value == kpi(report, "energy_per_unit")["value"]  # unrounded
    assert energy[5].number_format == "#,##0.0###"
    assert energy[12].number_format == "0.0%"
