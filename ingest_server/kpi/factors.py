"""Energy conversion coefficients and CO2 emission factors: versioned data with sources.

A report names the versions it used and carries their rows, so a verifier recomputes
with exactly the numbers the enterprise was measured with, and sees where each comes
from. A new edition of a standard or a new year's grid factor is a new version here
(never an edit of an old one: reports already signed cite it).

Comprehensive energy (综合能耗) converts each carrier to tonnes of standard coal
equivalent (tce) by its 当量值 (calorific equivalent), per GB/T 2589-2020 《综合能耗计算
通则》 Appendix A; a measured net calorific value replaces the default where the
enterprise has one. Water is not an energy carrier here (its intensity is its own KPI);
compressed air made on site is already counted in the compressors' electricity, so it has
no coefficient (counting it again would count the energy twice).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GBT2589 = "GB/T 2589-2020 综合能耗计算通则, 附录A (当量值)"
MEE_2025_47 = "生态环境部 国家统计局公告2025年第47号 (2023年度电力二氧化碳排放因子)"
MEE_GUIDE = "生态环境部 企业温室气体排放核算与报告指南 (天然气缺省值)"


@dataclass(frozen=True, slots=True)
class EnergyCoefficient:
    carrier: str
    unit: str  # the meter's unit
    coefficient: float  # kgce per unit
    coefficient_unit: str
    basis: str
    source: str


@dataclass(frozen=True, slots=True)
class EmissionFactor:
    carrier: str
    region: str  # national, anhui, ... (grid factors); "*" for fuels
    year: int
    unit: str
    factor: float  # kgCO2 per unit
    factor_unit: str
    source: str


@dataclass(frozen=True, slots=True)
class EnergyTable:
    version: str
    title: str
    rows: tuple[EnergyCoefficient, ...]

    def find(self, carrier: str, unit: str) -> EnergyCoefficient | None:
        for r in self.rows:
            if r.carrier == carrier and r.unit == unit:
                return r
        return None

    def as_json(self) -> dict[str, Any]:
        return _table_json(self.version, self.title, self.rows)


@dataclass(frozen=True, slots=True)
class EmissionTable:
    version: str
    title: str
    rows: tuple[EmissionFactor, ...]

    def find(self, carrier: str, unit: str, region: str, year: int) -> EmissionFactor | None:
        """The factor of the region for the year, else the latest earlier year, else the
        earliest later one; a region without factors falls back to "national"."""
        for reg in dict.fromkeys((region, "national", "*")):
            rows = [r for r in self.rows if (r.carrier, r.unit, r.region) == (carrier, unit, reg)]
            if rows:
                earlier = [r for r in rows if r.year <= year]
                if earlier:
                    return max(earlier, key=lambda r: r.year)
                return min(rows, key=lambda r: r.year)
        return None

    def as_json(self) -> dict[str, Any]:
        return _table_json(self.version, self.title, self.rows)


def _table_json(version: str, title: str, rows: tuple[Any, ...]) -> dict[str, Any]:
    """What a report carries of a table: its version, title and every row."""
    return {"version": version, "title": title, "rows": [asdict(r) for r in rows]}


ENERGY_TABLES: dict[str, EnergyTable] = {
    "gbt2589-2020.1": EnergyTable(
        version="gbt2589-2020.1",
        title="GB/T 2589-2020 当量值 (calorific equivalent) defaults",
        rows=(
            EnergyCoefficient("electricity", "kWh", 0.1229, "kgce/kWh", "当量值", GBT2589),
            EnergyCoefficient("electricity", "MWh", 122.9, "kgce/MWh", "当量值", GBT2589),
            EnergyCoefficient(
                "gas", "m3", 1.2143, "kgce/m3", "天然气 平均低位发热量 38931 kJ/m3", GBT2589
            ),
            EnergyCoefficient("diesel", "kg", 1.4571, "kgce/kg", "柴油 42652 kJ/kg", GBT2589),
            EnergyCoefficient("diesel", "t", 1457.1, "kgce/t", "柴油 42652 kJ/kg", GBT2589),
            EnergyCoefficient("heat", "GJ", 34.12, "kgce/GJ", "热力 0.03412 tce/GJ", GBT2589),
        ),
    ),
}

EMISSION_TABLES: dict[str, EmissionTable] = {
    "cn-2023.1": EmissionTable(
        version="cn-2023.1",
        title="China grid CO2 factors 2023 (national, provincial) and fuel defaults",
        rows=(
            EmissionFactor(
                "electricity", "national", 2023, "kWh", 0.5306, "kgCO2/kWh", MEE_2025_47
            ),
            EmissionFactor("electricity", "anhui", 2023, "kWh", 0.6553, "kgCO2/kWh", MEE_2025_47),
            EmissionFactor("electricity", "national", 2023, "MWh", 530.6, "kgCO2/MWh", MEE_2025_47),
            EmissionFactor("electricity", "anhui", 2023, "MWh", 655.3, "kgCO2/MWh", MEE_2025_47),
            EmissionFactor("gas", "*", 2023, "m3", 2.1622, "kgCO2/m3", MEE_GUIDE),
        ),
    ),
}

DEFAULT_ENERGY = "gbt2589-2020.1"
DEFAULT_EMISSION = "cn-2023.1"


def energy_table(version: str | None = None) -> EnergyTable:
    version = version or DEFAULT_ENERGY
    try:
        return ENERGY_TABLES[version]
    except KeyError:
        raise ValueError(
            f"no energy coefficient table {version!r}; known: {sorted(ENERGY_TABLES)}"
        ) from None


def emission_table(version: str | None = None) -> EmissionTable:
    version = version or DEFAULT_EMISSION
    try:
        return EMISSION_TABLES[version]
    except KeyError:
        raise ValueError(
            f"no emission factor table {version!r}; known: {sorted(EMISSION_TABLES)}"
        ) from None


def energy_from_json(doc: dict[str, Any]) -> EnergyTable:
    return EnergyTable(
        doc["version"], doc["title"], tuple(EnergyCoefficient(**r) for r in doc["rows"])
    )


def emission_from_json(doc: dict[str, Any]) -> EmissionTable:
    return EmissionTable(
        doc["version"], doc["title"], tuple(EmissionFactor(**r) for r in doc["rows"])
    )
