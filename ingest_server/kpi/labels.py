"""The labels of every KPI, in one table keyed by the KPI's id: its names in Chinese and
English, its unit and the formula a report states beside the figure, in English and in
Chinese (docs/kpi.md); and the notes a KPI may carry, in both languages (`KPI_NOTES`).

The engine (kpi/engine.py) takes each KPI's labels from here, so the formulas it
computes and the texts it writes stay apart; the page renderer (evidence/render_html.py)
reads the same table where a document lacks a KPI's unit, and the console shows the
Chinese or the English the report carries (`formula_zh`, `note_zh` beside `formula`,
`note`). A key with format fields names a family of KPIs ("consumption_{carrier}",
"{kpi}_change"): the KPI's id is the key filled in. A label may hold format fields as
well (the coverage threshold, a carrier, the unit of output), which the engine fills in
per report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingest_server.reference.factors import region_name


@dataclass(frozen=True, slots=True)
class KpiDef:
    name: str  # Chinese, as the programmes name the KPI
    name_en: str
    unit: str
    formula: str  # English, as reports always wrote it
    formula_zh: str

    def filled(self, **values: object) -> KpiDef:
        """The labels with their format fields filled in (str.format)."""
        return KpiDef(
            self.name.format(**values),
            self.name_en.format(**values),
            self.unit.format(**values),
            self.formula.format(**values),
            self.formula_zh.format(**values),
        )


@dataclass(frozen=True, slots=True)
class Note:
    """What a reader must know about a figure, in Chinese and English (a report's
    `note_zh` and `note`)."""

    zh: str
    en: str

    def filled(self, **values: object) -> Note:
        return Note(self.zh.format(**values), self.en.format(**values))

    @staticmethod
    def join(notes: Iterable[Note]) -> Note:
        """Several notes as one, each once, in order."""
        kept = list(dict.fromkeys(n for n in notes if n.en))
        return Note("; ".join(n.zh for n in kept), "; ".join(n.en for n in kept))


NO_NOTE = Note("", "")

_PCT = "%"

# fmt: off
KPI_LABELS: dict[str, KpiDef] = {
    # key-process NC rates, discrete industry (离散型): equipment counted
    "nc_rate_declared": KpiDef(
        "关键工序数控化率(申报)", "Key-process NC rate (declared)", _PCT,
        "NC equipment in key processes / equipment in key processes (declared)",
        "关键工序数控设备数 / 关键工序设备数 (申报)"),
    "nc_rate_measured": KpiDef(
        "关键工序数控化率(实测)", "Key-process NC rate (measured)", _PCT,
        "NC equipment in key processes that delivered data for >= {threshold:.0%} of "
        "its planned operation time / equipment in key processes",
        "计划运行时间中有数据时间 >= {threshold:.0%} 的关键工序数控设备数 / 关键工序设备数"),
    "networking_rate": KpiDef(
        "设备联网率", "Equipment networking rate", _PCT,
        "production equipment that delivered data in the period / production equipment",
        "统计期内有数据上传的生产设备数 / 生产设备数"),
    # ISO 22400-2 over the production equipment
    "availability": KpiDef(
        "设备可用率", "Availability (ISO 22400-2)", _PCT,
        "APT / (PBT - unknown); PBT = POT - planned downtime",
        "实际生产时间 APT / (计划运行时间 PBT - 未知时间); PBT = 计划时间 POT - 计划停机"),
    "effectiveness": KpiDef(
        "性能效率", "Effectiveness", _PCT, "sum(ideal cycle time x produced) / running time",
        "Σ(理论节拍 x 产量) / 运行时间"),
    "quality_ratio": KpiDef(
        "质量合格率", "Quality ratio", _PCT, "good / produced", "合格品数 / 产量"),
    "oee": KpiDef(
        "设备综合效率 OEE", "OEE", _PCT, "availability x effectiveness x quality ratio",
        "设备可用率 x 性能效率 x 质量合格率"),
    "utilisation": KpiDef(
        "设备利用率", "Utilisation", _PCT, "RUNNING time / calendar time", "运行时间 / 日历时间"),
    "mtbf": KpiDef(
        "平均故障间隔时间 MTBF", "MTBF", "h", "running time / DOWN events", "运行时间 / 故障次数"),
    "mttr": KpiDef(
        "平均修复时间 MTTR", "MTTR", "h", "DOWN time / DOWN events", "故障时间 / 故障次数"),
    # energy, water, carbon
    "consumption_{carrier}": KpiDef(
        "{carrier_zh}消耗量", "{carrier_en} consumption", "{units}",
        "sum of top-level meters (submeters are inside their parent)",
        "一级计量表之和 (分表计入其上级表)"),
    "energy_tce": KpiDef(
        "综合能耗", "Comprehensive energy consumption", "tce",
        "sum(quantity_i x coefficient_i), GB/T 2589-2020 当量值",
        "Σ(用量_i x 折标系数_i), GB/T 2589-2020 当量值"),
    "carbon_tco2": KpiDef(
        "二氧化碳排放量", "CO2 emissions", "tCO2", "sum(activity_i x emission factor_i)",
        "Σ(活动数据_i x 排放因子_i)"),
    "energy_per_unit": KpiDef(
        "单位产品综合能耗", "Energy per unit of good product", "kgce/{output_unit}",
        "energy_tce x 1000 / output", "综合能耗 (tce) x 1000 / 产量"),
    "energy_per_value_added": KpiDef(
        "万元增加值综合能耗", "Energy per 10,000 CNY value added", "tce/万元",
        "energy_tce / value added (10k CNY)", "综合能耗 (tce) / 增加值 (万元)"),
    "water_per_unit": KpiDef(
        "单位产品取水量", "Water per unit of product", "m3/{output_unit}", "water / output",
        "取水量 / 产量"),
    "water_per_value_added": KpiDef(
        "万元增加值取水量", "Water per 10,000 CNY value added", "m3/万元",
        "water / value added (10k CNY)", "取水量 / 增加值 (万元)"),
    "carbon_per_value_added": KpiDef(
        "万元增加值二氧化碳排放", "CO2 per 10,000 CNY value added", "tCO2/万元",
        "carbon_tco2 / value added (10k CNY)", "二氧化碳排放量 (tCO2) / 增加值 (万元)"),
    # an intensity against the baseline period's
    "{kpi}_change": KpiDef(
        "{name}较基期变化", "{name_en}: change vs baseline", _PCT,
        "(period - baseline) / baseline", "(统计期 - 基期) / 基期"),
}

# process industry (流程型): the NC rates count key processes, not machines
PROCESS_INDUSTRY_LABELS: dict[str, KpiDef] = {
    "nc_rate_declared": KpiDef(
        "关键工序数控化率(申报)", "Key-process NC rate (declared)", _PCT,
        "key processes under PLC/DCS control / key processes (declared)",
        "由 PLC/DCS 控制的关键工序数 / 关键工序数 (申报)"),
    "nc_rate_measured": KpiDef(
        "关键工序数控化率(实测)", "Key-process NC rate (measured)", _PCT,
        "key processes whose every unit is controlled and delivered data for >= "
        "{threshold:.0%} of its planned time / key processes",
        "每台设备均受控且计划时间中有数据时间 >= {threshold:.0%} 的关键工序数 / 关键工序数"),
}
# fmt: on

# the notes a KPI carries, by what they say; the English is what reports always wrote
# fmt: off
KPI_NOTES: dict[str, Note] = {
    "declared": Note(
        "企业在登记中申报 (非实测): 实测值见旁边的指标",
        "declared in the registry (not measured): see the measured rate beside it"),
    "no_state_data": Note("以下设备无状态数据: {ids}", "no state data from: {ids}"),
    "networking_coverage": Note(
        "数据覆盖率: 已联网设备计划时间中有数据的平均占比",
        "coverage: the mean share of planned time with data of the networked equipment"),
    "counter_anomalies": Note(
        "{meter}: 翻转 {rollovers} 次, 清零 {resets} 次",
        "{meter}: {rollovers} rollover(s), {resets} reset(s)"),
    "no_coefficient": Note("以下计量表无折标系数: {ids}", "no coefficient for: {ids}"),
    "factor_fallback": Note(
        "{region_zh} {year} 年无排放因子; 采用 {used_zh} {used_year} 年的 ({source})",
        "{region} {year}: no factor; used {used} {used_year} ({source})"),
    "no_output": Note(
        "请录入产量 (控制台能源页, 或命令行 production add)",
        "enter output with `ingest-server production add`"),
    "no_value_added": Note(
        "请录入增加值 (控制台能源页, 或命令行 production add)",
        "enter value added with `ingest-server production add`"),
    "needs_both_periods": Note("需要统计期与基期的数值", "needs the value in both periods"),
}
# fmt: on


def factor_fallback(region: str, year: int, used: str, used_year: int, source: str) -> Note:
    """The note of an emission factor that is not the region's own for the year."""
    return KPI_NOTES["factor_fallback"].filled(
        region=region, region_zh=region_name(region)[0], year=year, used=used,
        used_zh=region_name(used)[0], used_year=used_year, source=source,
    )  # fmt: skip


CARRIER_ZH = {"electricity": "电力", "water": "水", "gas": "天然气", "steam": "蒸汽",
              "heat": "热力", "air": "压缩空气", "diesel": "柴油"}  # fmt: skip
