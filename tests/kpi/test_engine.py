"""The engine's rate, energy and intensity formulas on hand-made inputs (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest_server.kpi.energy import (
    MeterResult,
    Production,
    change_kpis,
    energy_kpis,
    production_of,
)
from ingest_server.kpi.equipment import EquipmentResult, nc_kpis, networking_kpi
from ingest_server.kpi.records import CounterSum, Equipment, Inputs, ProductionEntry
from ingest_server.kpi.results import Kpi
from ingest_server.kpi.timemodel import TimeBuckets
from ingest_server.reference.factors import emission_table, energy_table


def machine(
    id: str, process: str, *, key: bool, nc: bool, coverage: float, production: bool = True
) -> EquipmentResult:
    eq = Equipment(
        id, id, id, "p1", process, process, process, key, nc, production, "opcua", 60.0,
        (1, id) if coverage > 0 else None,
    )  # fmt: skip
    return EquipmentResult(eq, TimeBuckets(), coverage > 0, None, None, coverage, coverage > 0)


PLANT = [
    machine("a1", "turning", key=True, nc=True, coverage=1.0),
    machine("a2", "turning", key=True, nc=True, coverage=0.79),  # below 80 %: not measured
    machine("a3", "turning", key=True, nc=False, coverage=1.0),
    machine("b1", "milling", key=True, nc=True, coverage=0.95),
    machine("c1", "heat", key=True, nc=True, coverage=0.0),  # declared NC, never networked
    machine("w1", "washing", key=False, nc=True, coverage=1.0),  # not a key process
    machine("x1", "washing", key=False, nc=False, coverage=0.0, production=False),
]


def by_id(kpis: list[Kpi]) -> dict[str, Kpi]:
    return {k.id: k for k in kpis}


def test_discrete_nc_rates_count_equipment() -> None:
    k = by_id(nc_kpis(PLANT, "discrete", 0.8))
    assert k["nc_rate_declared"].value == pytest.approx(100 * 4 / 5)
    assert k["nc_rate_declared"].inputs == ["a1", "a2", "b1", "c1"]
    assert k["nc_rate_measured"].value == pytest.approx(100 * 2 / 5)
    assert k["nc_rate_measured"].inputs == ["a1", "b1"]
    assert k["nc_rate_measured"].coverage == pytest.approx((1 + 0.79 + 0.95 + 0) / 4)
    lower = by_id(nc_kpis(PLANT, "discrete", 0.75))
    assert lower["nc_rate_measured"].inputs == ["a1", "a2", "b1"]


def test_process_industry_nc_rates_count_key_processes() -> None:
    k = by_id(nc_kpis(PLANT, "process", 0.8))
    # turning has a manual unit: not NC; milling and heat are declared NC
    assert k["nc_rate_declared"].inputs == ["heat", "milling"]
    assert k["nc_rate_declared"].value == pytest.approx(100 * 2 / 3)
    # heat never delivered data: only milling is measured NC
    assert k["nc_rate_measured"].inputs == ["milling"]
    assert k["nc_rate_measured"].value == pytest.approx(100 / 3)


def test_networking_rate_counts_production_equipment_that_delivered() -> None:
    k = networking_kpi(PLANT)
    assert (k.numerator, k.denominator) == (5, 6)  # x1 is not production equipment
    assert k.value == pytest.approx(100 * 5 / 6)


def meter(id: str, carrier: str, unit: str, q: float, *, top: bool = True) -> MeterResult:
    e, c = energy_table(), emission_table()
    coef = e.find(carrier, unit)
    ef = c.find(carrier, unit, "anhui", 2026)
    return MeterResult(
        id, carrier, unit, top, q, 1.0, CounterSum(q, 10, 0, 0),
        q * coef.coefficient / 1000 if coef else None,
        q * ef.factor / 1000 if ef else None,
    )  # fmt: skip


def test_energy_tce_carbon_and_intensities() -> None:
    meters = [
        meter("em-main", "electricity", "kWh", 100_000.0),
        meter("em-sub", "electricity", "kWh", 40_000.0, top=False),  # inside em-main
        meter("gm", "gas", "m3", 2_000.0),
        meter("wm", "water", "m3", 500.0),
    ]
    k = by_id(energy_kpis(meters, Production(10_000.0, 250.0, "件", [])))
    tce = 100_000 * 0.1229 / 1000 + 2_000 * 1.2143 / 1000
    assert k["energy_tce"].value == pytest.approx(tce)
    assert k["energy_tce"].inputs == ["em-main", "gm"]
    assert k["consumption_electricity"].value == 100_000.0  # the submeter not again
    # Anhui 2023 is the newest grid factor not after 2026
    co2 = 100_000 * 0.6553 / 1000 + 2_000 * 2.1622 / 1000
    assert k["carbon_tco2"].value == pytest.approx(co2)
    assert k["energy_per_unit"].value == pytest.approx(tce * 1000 / 10_000)
    assert k["energy_per_value_added"].value == pytest.approx(tce / 250)
    assert k["water_per_unit"].value == pytest.approx(500 / 10_000)
    assert k["carbon_per_value_added"].value == pytest.approx(co2 / 250)
    none = by_id(energy_kpis(meters, Production(None, None, "件", [])))
    assert none["energy_per_unit"].value is None
    assert "production add" in none["energy_per_unit"].note
    base = by_id(energy_kpis(meters, Production(8_000.0, 250.0, "件", [])))
    change = by_id(change_kpis(list(k.values()), list(base.values())))
    was, now = base["energy_per_unit"].value, k["energy_per_unit"].value
    assert change["energy_per_unit_change"].value == pytest.approx((now - was) / was * 100)
    assert change["energy_per_unit_change"].value == pytest.approx(-20.0)


def test_production_entries_count_by_their_share_of_days() -> None:
    inputs = Inputs(
        {}, "discrete", dt.date(2026, 11, 1), dt.date(2026, 11, 10),
        dt.datetime(2026, 12, 1, tzinfo=dt.UTC), [], [], [],
    )  # fmt: skip
    d = dt.date
    inputs.production = [
        ProductionEntry(1, None, d(2026, 11, 1), d(2026, 11, 30), 3000.0, "件", 90.0, ""),
        ProductionEntry(2, None, d(2026, 10, 27), d(2026, 11, 2), 700.0, "件", None, ""),
    ]
    p = production_of(inputs)
    assert p.output == pytest.approx(3000 * 10 / 30 + 700 * 2 / 7)
    assert p.value_added == pytest.approx(90 * 10 / 30)
    assert [r["share"] for r in p.rows] == pytest.approx([1 / 3, 2 / 7])


def test_emission_factor_falls_back_to_national_and_to_the_nearest_year() -> None:
    table = emission_table()
    later = table.find("electricity", "kWh", "anhui", 2030)
    elsewhere = table.find("electricity", "kWh", "tibet", 2023)
    earlier = table.find("electricity", "kWh", "anhui", 2019)
    assert later is not None
    assert later.factor == 0.6553
    assert elsewhere is not None
    assert elsewhere.region == "national"
    assert earlier is not None
    assert earlier.year == 2023
    assert table.find("steam", "t", "anhui", 2023) is None
    with pytest.raises(ValueError, match="known"):
        energy_table("nope")
