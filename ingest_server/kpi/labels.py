"""The labels of every KPI, in one table keyed by the KPI's id: its names in Chinese and
English, its unit and the formula a report states beside the figure (docs/kpi.md).

The engine (kpi/engine.py) takes each KPI's labels from here, so the formulas it
computes and the texts it writes stay apart; the page renderer (evidence/render_html.py)
reads the same table where a document lacks a KPI's unit. A key
with format fields names a family of KPIs ("consumption_{carrier}", "{kpi}_change"):
the KPI's id is the key filled in. A label may hold format fields as well (the coverage
threshold, a carrier, the unit of output), which the engine fills in per report.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KpiDef:
    name: str  # Chinese, as the programmes name the KPI
    name_en: str
    unit: str
    formula: str

    def filled(self, **values: object) -> KpiDef:
        """The labels with their format fields filled in (str.format)."""
        return KpiDef(
            self.name.format(**values),
            self.name_en.format(**values),
            self.unit.format(**values),
            self.formula.format(**values),
        )


_PCT = "%"

# fmt: off
KPI_LABELS: dict[str, KpiDef] = {
    # key-process NC rates, discrete industry (离散型): equipment counted
    "nc_rate_declared": KpiDef(
        "关键工序数控化率(申报)", "Key-process NC rate (declared)", _PCT,
        "NC equipment in key processes / equipment in key processes (declared)"),
    "nc_rate_measured": KpiDef(
        "关键工序数控化率(实测)", "Key-process NC rate (measured)", _PCT,
        "NC equipment in key processes that delivered data for >= {threshold:.0%} of "
        "its planned operation time / equipment in key processes"),
    "networking_rate": KpiDef(
        "设备联网率", "Equipment networking rate", _PCT,
        "production equipment that delivered data in the period / production equipment"),
    # ISO 22400-2 over the production equipment
    "availability": KpiDef(
        "设备可用率", "Availability (ISO 22400-2)", _PCT,
        "APT / (PBT - unknown); PBT = POT - planned downtime"),
    "effectiveness": KpiDef(
        "性能效率", "Effectiveness", _PCT, "sum(ideal cycle time x produced) / running time"),
    "quality_ratio": KpiDef("质量合格率", "Quality ratio", _PCT, "good / produced"),
    "oee": KpiDef(
        "设备综合效率 OEE", "OEE", _PCT, "availability x effectiveness x quality ratio"),
    "utilisation": KpiDef("设备利用率", "Utilisation", _PCT, "RUNNING time / calendar time"),
    "mtbf": KpiDef("平均故障间隔时间 MTBF", "MTBF", "h", "running time / DOWN events"),
    "mttr": KpiDef("平均修复时间 MTTR", "MTTR", "h", "DOWN time / DOWN events"),
    # energy, water, carbon
    "consumption_{carrier}": KpiDef(
        "{carrier_zh}消耗量", "{carrier_en} consumption", "{units}",
        "sum of top-level meters (submeters are inside their parent)"),
    "energy_tce": KpiDef(
        "综合能耗", "Comprehensive energy consumption", "tce",
        "sum(quantity_i x coefficient_i), GB/T 2589-2020 当量值"),
    "carbon_tco2": KpiDef(
        "二氧化碳排放量", "CO2 emissions", "tCO2", "sum(activity_i x emission factor_i)"),
    "energy_per_unit": KpiDef(
        "单位产品综合能耗", "Energy per unit of good product", "kgce/{output_unit}",
        "energy_tce x 1000 / output"),
    "energy_per_value_added": KpiDef(
        "万元增加值综合能耗", "Energy per 10,000 CNY value added", "tce/万元",
        "energy_tce / value added (10k CNY)"),
    "water_per_unit": KpiDef(
        "单位产品取水量", "Water per unit of product", "m3/{output_unit}", "water / output"),
    "water_per_value_added": KpiDef(
        "万元增加值取水量", "Water per 10,000 CNY value added", "m3/万元",
        "water / value added (10k CNY)"),
    "carbon_per_value_added": KpiDef(
        "万元增加值二氧化碳排放", "CO2 per 10,000 CNY value added", "tCO2/万元",
        "carbon_tco2 / value added (10k CNY)"),
    # an intensity against the baseline period's
    "{kpi}_change": KpiDef(
        "{name}较基期变化", "{name_en}: change vs baseline", _PCT,
        "(period - baseline) / baseline"),
}

# process industry (流程型): the NC rates count key processes, not machines
PROCESS_INDUSTRY_LABELS: dict[str, KpiDef] = {
    "nc_rate_declared": KpiDef(
        "关键工序数控化率(申报)", "Key-process NC rate (declared)", _PCT,
        "key processes under PLC/DCS control / key processes (declared)"),
    "nc_rate_measured": KpiDef(
        "关键工序数控化率(实测)", "Key-process NC rate (measured)", _PCT,
        "key processes whose every unit is controlled and delivered data for >= "
        "{threshold:.0%} of its planned time / key processes"),
}
# fmt: on

CARRIER_ZH = {"electricity": "电力", "water": "水", "gas": "天然气", "steam": "蒸汽",
              "heat": "热力", "air": "压缩空气", "diesel": "柴油"}  # fmt: skip
