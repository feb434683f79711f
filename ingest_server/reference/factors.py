"""Energy conversion coefficients and CO2 emission factors: versioned data with sources.

A report names the versions it used and carries their rows, so a verifier recomputes
with exactly the numbers the enterprise was measured with, and sees where each comes
from. A new edition of a standard or a new year's grid factor is a new version here
(never an edit of an old one: reports already signed cite it).

Comprehensive energy (综合能耗) converts each carrier to tonnes of standard coal
equivalent (tce) by its 当量值 (calorific equivalent), per GB/T 2589-2020 《综合能耗计算
通则》 Appendix A (the standard prefers a measured net calorific value; the tables have
no per-site value for one yet). Water is not an energy carrier here (its intensity is its own KPI);
compressed air made on site is already counted in the compressors' electricity, so it has
no coefficient (counting it again would count the energy twice).

Every row's `source` names the publication (issuer, title, number, date) and where in it
(table, appendix row, or the formula that derives the row from one); docs/kpi.md lists
them. Superseded versions stay, unchanged, for the reports that cite them:

- `gbt2589-2020.1`: its natural gas row paired 1.2143 kgce/m3 with a calorific value of
  38,931 kJ/m3, which gives 1.33; 1.2143 is 气田天然气 at 35,544 kJ/m3. Sources without
  date or row. Replaced by `gbt2589-2020.2` (same coefficients, basis and sources fixed).
- `cn-2023.1`: sources without date or table. Replaced by `cn-2023.2` (same numbers where
  both have a row, plus the other regional and provincial grids of the same notice).

The grid regions a site may name (`grid_regions()`) are the regions of the newest table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

GBT2589 = "GB/T 2589-2020 综合能耗计算通则, 附录A (当量值)"
MEE_2025_47 = "生态环境部 国家统计局公告2025年第47号 (2023年度电力二氧化碳排放因子)"
MEE_GUIDE = "生态环境部 企业温室气体排放核算与报告指南 (天然气缺省值)"

# cited by the current versions (docs/kpi.md, "Energy, water, carbon", says how each was
# traced and what could not be checked against the publication itself)
_GBT2589_2020 = (
    "GB/T 2589-2020《综合能耗计算通则》(国家市场监督管理总局 国家标准化管理委员会, "
    "2020-09-29 发布, 2021-04-01 实施), 附录A 常用能源折标准煤参考系数: "
)
_GBT2589_2008 = (
    "GB/T 2589-2008《综合能耗计算通则》(国家质量监督检验检疫总局 国家标准化管理委员会, "
    "2008 发布; 2021-04-01 起由 GB/T 2589-2020 代替), 附录A 各种能源折标准煤参考系数: "
)
_MEE_2023 = (
    "生态环境部 国家统计局《关于发布2023年电力二氧化碳排放因子的公告》(公告2025年第47号, "
    "2025-12-31), 附件《2023年电力二氧化碳排放因子》"
)
_NG_CO2 = (
    "GB/T 32151.22-2024《温室气体排放核算与报告要求》附录C 表C.1 常用化石燃料相关参数的"
    "缺省值 (天然气; 同值见 GB/T 32151.10-2023 表C.1): 2.1622 kgCO2/m3 = 389.31 GJ/10^4 Nm3 "
    "x 15.3 tC/TJ x 99% x 44/12"
)


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

    def find_noted(
        self, carrier: str, unit: str, region: str, year: int
    ) -> tuple[EmissionFactor | None, str]:
        """`find`, and a note when the factor is not the region's own for that year:
        "anhui 2026: no factor; used anhui 2023 (source)". A fuel's default ("*") is
        nobody's fallback: it has no region, and fuels do not change by year."""
        row = self.find(carrier, unit, region, year)
        if row is None or row.region == "*" or (row.region, row.year) == (region, year):
            return row, ""
        return row, f"{region} {year}: no factor; used {row.region} {row.year} ({row.source})"

    def regions(self) -> tuple[str, ...]:
        """The grid regions with a factor in this table, sorted."""
        return tuple(sorted({r.region for r in self.rows if r.region != "*"}))

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


def _coefficients_2020() -> tuple[EnergyCoefficient, ...]:
    e, gas, diesel, heat = (
        _GBT2589_2020 + "电力(当量值) 3600 kJ/(kW·h) = 0.1229 kgce/(kW·h)",
        _GBT2589_2008 + "气田天然气 35544 kJ/m3 (8500 kcal/m3) = 1.2143 kgce/m3",
        _GBT2589_2020 + "柴油 42652 kJ/kg = 1.4571 kgce/kg",
        _GBT2589_2020 + "热力(当量值) 0.03412 kgce/MJ",
    )
    c = EnergyCoefficient
    return (
        c("electricity", "kWh", 0.1229, "kgce/kWh", "当量值 3600 kJ/kWh", e),
        c("electricity", "MWh", 122.9, "kgce/MWh", "当量值 3600 kJ/kWh", e),
        c("gas", "m3", 1.2143, "kgce/m3", "气田天然气 低位发热量 35544 kJ/m3", gas),
        c("diesel", "kg", 1.4571, "kgce/kg", "柴油 低位发热量 42652 kJ/kg", diesel),
        c("diesel", "t", 1457.1, "kgce/t", "柴油 低位发热量 42652 kJ/kg", diesel),
        c("heat", "GJ", 34.12, "kgce/GJ", "热力 当量值 0.03412 kgce/MJ", heat),
    )


ENERGY_TABLES["gbt2589-2020.2"] = EnergyTable(
    version="gbt2589-2020.2",
    title="GB/T 2589-2020 当量值 (calorific equivalent) defaults, sources by row",
    rows=_coefficients_2020(),
)

# 2023 average CO2 factors of the grid (电力平均二氧化碳排放因子), kgCO2/kWh, as the notice's
# attachment prints them: region id, name, table (表1 national, 表2 regional, 表3 provincial)
GRID_2023: tuple[tuple[str, str, str, float], ...] = (
    ("national", "全国", "表1", 0.5306),
    ("north_china", "华北", "表2", 0.6361),
    ("northeast_china", "东北", "表2", 0.5122),
    ("east_china", "华东", "表2", 0.5500),
    ("central_china", "华中", "表2", 0.5271),
    ("northwest_china", "西北", "表2", 0.5543),
    ("south_china", "南方", "表2", 0.4042),
    ("southwest_china", "西南", "表2", 0.2472),
    ("beijing", "北京", "表3", 0.5554),
    ("tianjin", "天津", "表3", 0.6796),
    ("hebei", "河北", "表3", 0.6516),
    ("shanxi", "山西", "表3", 0.6634),
    ("inner_mongolia", "内蒙古", "表3", 0.6479),
    ("liaoning", "辽宁", "表3", 0.4878),
    ("jilin", "吉林", "表3", 0.4671),
    ("heilongjiang", "黑龙江", "表3", 0.5229),
    ("shanghai", "上海", "表3", 0.5737),
    ("jiangsu", "江苏", "表3", 0.5827),
    ("zhejiang", "浙江", "表3", 0.4974),
    ("anhui", "安徽", "表3", 0.6553),
    ("fujian", "福建", "表3", 0.4211),
    ("jiangxi", "江西", "表3", 0.5836),
    ("shandong", "山东", "表3", 0.6191),
    ("henan", "河南", "表3", 0.5897),
    ("hubei", "湖北", "表3", 0.4044),
    ("hunan", "湖南", "表3", 0.4976),
    ("guangdong", "广东", "表3", 0.4419),
    ("guangxi", "广西", "表3", 0.4476),
    ("hainan", "海南", "表3", 0.3648),
    ("chongqing", "重庆", "表3", 0.5581),
    ("sichuan", "四川", "表3", 0.1564),
    ("guizhou", "贵州", "表3", 0.5683),
    ("yunnan", "云南", "表3", 0.1333),
    ("shaanxi", "陕西", "表3", 0.6335),
    ("gansu", "甘肃", "表3", 0.4471),
    ("qinghai", "青海", "表3", 0.1796),
    ("ningxia", "宁夏", "表3", 0.6187),
    ("xinjiang", "新疆", "表3", 0.6021),
)
_TABLE_NAMES = {
    "表1": "表1 全国电力平均二氧化碳排放因子",
    "表2": "表2 区域电力平均二氧化碳排放因子",
    "表3": "表3 省级电力平均二氧化碳排放因子",
}


def _grid_2023() -> tuple[EmissionFactor, ...]:
    rows: list[EmissionFactor] = []
    for region, name, table, kg_per_kwh in GRID_2023:
        source = f"{_MEE_2023} {_TABLE_NAMES[table]}: {name} {kg_per_kwh:.4f} kgCO2/kWh"
        rows.append(
            EmissionFactor("electricity", region, 2023, "kWh", kg_per_kwh, "kgCO2/kWh", source)
        )
        rows.append(
            EmissionFactor(
                "electricity", region, 2023, "MWh", round(kg_per_kwh * 1000, 1), "kgCO2/MWh",
                source,
            )
        )  # fmt: skip
    rows.append(EmissionFactor("gas", "*", 2023, "m3", 2.1622, "kgCO2/m3", _NG_CO2))
    return tuple(rows)


EMISSION_TABLES["cn-2023.2"] = EmissionTable(
    version="cn-2023.2",
    title="China grid CO2 factors 2023 (MEE/NBS 2025 No. 47: national, regional, "
    "provincial) and the natural gas default",
    rows=_grid_2023(),
)

# The names people read beside a version and a region id, Chinese and English. Not part of
# a table's content (`as_json`, which reports sign and bundles carry): a better name
# changes no report.
TITLES_ZH: dict[str, str] = {
    "gbt2589-2020.1": "GB/T 2589-2020 当量值默认折标系数",
    "gbt2589-2020.2": "GB/T 2589-2020 当量值默认折标系数 (逐行注明来源)",
    "cn-2023.1": "2023年全国及省级电网二氧化碳排放因子与燃料缺省值",
    "cn-2023.2": "2023年电力二氧化碳排放因子 (生态环境部 国家统计局公告2025年第47号: 全国、区域、"
    "省级)与天然气缺省值",
}
_REGIONS_EN = {
    "national": "National", "north_china": "North China", "northeast_china": "Northeast China",
    "east_china": "East China", "central_china": "Central China",
    "northwest_china": "Northwest China", "south_china": "China Southern", "southwest_china":
    "Southwest China", "inner_mongolia": "Inner Mongolia",
}  # fmt: skip
REGION_NAMES: dict[str, tuple[str, str]] = {
    "*": ("各地通用", "any region"),
    **{r: (zh, _REGIONS_EN.get(r, r.capitalize())) for r, zh, _, _ in GRID_2023},
}


def region_name(region: str) -> tuple[str, str]:
    """A region id's name (Chinese, English); the id itself for one this table lacks."""
    return REGION_NAMES.get(region, (region, region))


def names_json() -> dict[str, Any]:
    """The tables' Chinese titles by version and the regions' names by id, for the API."""
    return {
        "titles_zh": TITLES_ZH,
        "regions": {r: {"name": zh, "name_en": en} for r, (zh, en) in REGION_NAMES.items()},
    }


DEFAULT_ENERGY = "gbt2589-2020.2"
DEFAULT_EMISSION = "cn-2023.2"


def grid_regions() -> tuple[str, ...]:
    """The `grid_region` values a site may name: the regions of the newest table."""
    return emission_table().regions()


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
