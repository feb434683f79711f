"""The coefficient and emission factor tables: every row traceable to a publication, the
grid regions the registry accepts, and the note a CO2 figure carries when it had to fall
back to another region's or year's factor (pure: no database)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from pydantic import ValidationError

from ingest_server.kpi.energy import Production, energy_kpis, meter_results
from ingest_server.kpi.records import CounterSum, Inputs, Meter, Site
from ingest_server.kpi.results import Kpi
from ingest_server.reference import factors
from ingest_server.reference.factors import (
    DEFAULT_EMISSION,
    DEFAULT_ENERGY,
    EmissionFactor,
    EmissionTable,
    emission_table,
    energy_table,
)
from ingest_server.repo.registry import SiteDef

# a publication: a standard's number, or a notice's number with its date
_PUBLICATION = re.compile(r"(GB/T \d+(\.\d+)?-\d{4})|(公告\d{4}年第\d+号.*\d{4}-\d{2}-\d{2})")
# where in it: a table, an appendix, or the formula that derives the row from one
_LOCATOR = re.compile(r"表\s*[A-Z]?\.?\d|附录|=")
# 1 kgce = 7000 kcal = 29,307.6 kJ; GB/T 2589 rounds its coefficients from kcal
_KJ_PER_KGCE = 29.3076


def test_the_default_tables_are_the_newest_versions() -> None:
    assert energy_table().version == DEFAULT_ENERGY == max(factors.ENERGY_TABLES)
    assert emission_table().version == DEFAULT_EMISSION == max(factors.EMISSION_TABLES)


@pytest.mark.parametrize("kind", ["energy", "emission"])
def test_every_row_of_the_current_tables_cites_a_publication_and_where_in_it(kind: str) -> None:
    table = energy_table() if kind == "energy" else emission_table()
    assert table.rows
    for row in table.rows:
        assert row.source.strip(), row
        assert _PUBLICATION.search(row.source), f"no publication number/date: {row}"
        assert _LOCATOR.search(row.source), f"no table or appendix: {row}"


def test_each_coefficient_agrees_with_the_calorific_value_its_basis_states() -> None:
    checked = 0
    for row in energy_table().rows:
        found = re.search(r"([\d,]+) kJ/", row.basis)
        if found is None:
            continue
        kj = float(found.group(1).replace(",", ""))
        per_unit = row.coefficient / (1000 if row.unit in ("MWh", "t") else 1)
        # within the standard's rounding (its coefficients come from kcal, 7000 per kgce)
        assert per_unit == pytest.approx(kj / 1000 / _KJ_PER_KGCE, rel=0.005), row
        checked += 1
    assert checked >= 3  # electricity, gas, diesel


def test_the_published_2023_grid_factors_national_east_china_anhui() -> None:
    table = emission_table()

    def grid(region: str) -> EmissionFactor:
        row = table.find("electricity", "kWh", region, 2023)
        assert row is not None
        assert (row.region, row.year) == (region, 2023)
        return row

    national, east, anhui = grid("national"), grid("east_china"), grid("anhui")
    assert (national.factor, east.factor, anhui.factor) == (0.5306, 0.5500, 0.6553)
    assert "表1 全国电力平均二氧化碳排放因子" in national.source
    assert "表2 区域电力平均二氧化碳排放因子" in east.source
    assert "表3 省级电力平均二氧化碳排放因子" in anhui.source
    for row in (national, east, anhui):
        assert "公告2025年第47号" in row.source
        assert "2025-12-31" in row.source
        mwh = table.find("electricity", "MWh", row.region, 2023)
        assert mwh is not None
        assert mwh.factor == pytest.approx(row.factor * 1000)


def test_the_regions_the_registry_accepts_are_the_tables_regions() -> None:
    table_regions = {r.region for r in emission_table().rows if r.carrier == "electricity"}
    assert set(factors.grid_regions()) == table_regions
    assert {"national", "east_china", "anhui"} <= table_regions
    for region in sorted(table_regions):
        assert SiteDef(id="s", name="S", grid_region=region).grid_region == region
    with pytest.raises(ValidationError, match="grid_region 'atlantis' is not a grid region"):
        SiteDef(id="s", name="S", grid_region="atlantis")


# -- the fallback note ------------------------------------------------------------------


def _inputs(region: str, first: dt.date) -> Inputs:
    tz = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai has no daylight saving
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    site = Site("p1", "一厂", "Plant 1", "Asia/Shanghai", region, None, start,
                start + dt.timedelta(days=31))  # fmt: skip
    inputs = Inputs({}, "discrete", first, first + dt.timedelta(days=30),
                    start + dt.timedelta(days=40), [site], [], [
                        Meter("em-main", "", "", "p1", "electricity", "kWh", None, (1, "em")),
                        Meter("gm", "", "", "p1", "gas", "m3", None, (1, "gm")),
                    ])  # fmt: skip
    inputs.counters[((1, "em"), "energy_kwh")] = CounterSum(10_000.0, 100, 0, 0)
    inputs.counters[((1, "gm"), "gas_m3")] = CounterSum(500.0, 100, 0, 0)
    return inputs


def _carbon(inputs: Inputs, table: EmissionTable) -> Kpi:
    meters, _ = meter_results(inputs, energy_table(), table)
    return next(k for k in energy_kpis(meters, Production(None, None, "件", [])) if
                k.id == "carbon_tco2")  # fmt: skip


def test_a_period_without_its_years_factor_says_which_factor_it_used() -> None:
    # January 2026 in Shanghai starts on 2025-12-31 in UTC: the year is the local one
    k = _carbon(_inputs("anhui", dt.date(2026, 1, 1)), emission_table())
    assert k.value == pytest.approx(10_000 * 0.6553 / 1000 + 500 * 2.1622 / 1000)
    assert "anhui 2026: no factor; used anhui 2023 (" in k.note
    assert "公告2025年第47号" in k.note
    assert "gas" not in k.note  # the fuel default is not a fallback


def test_a_region_without_factors_in_the_table_falls_back_to_national_and_says_so() -> None:
    national = next(r for r in emission_table().rows if
                    (r.region, r.unit) == ("national", "kWh"))  # fmt: skip
    gas = next(r for r in emission_table().rows if r.carrier == "gas")
    table = EmissionTable("t", "national only", (national, gas))
    k = _carbon(_inputs("anhui", dt.date(2026, 3, 1)), table)
    assert k.value == pytest.approx(10_000 * 0.5306 / 1000 + 500 * 2.1622 / 1000)
    assert f"anhui 2026: no factor; used national 2023 ({national.source})" in k.note


def test_a_factor_of_the_periods_own_year_and_region_adds_no_note() -> None:
    k = _carbon(_inputs("anhui", dt.date(2023, 5, 1)), emission_table())
    assert k.note == ""
