"""Programme targets: the thresholds a figure is held against, each with its source.

A report names the table version it used and carries its rows and the enterprise's own
targets (evidence/targets.py), so a reader sees what each figure was held against and
where the threshold comes from, and a verifier re-evaluates with exactly those rows. As
with the factor tables (reference/factors.py), a version is never edited once a report
cites it: a new publication, or a correction, is a new version.

Built in is only what was read in a source text: the issuer, the title, the date and the
sentence's place, and where the text was read when it was not the publication itself
(docs/kpi.md, "Targets", says how each was traced). A threshold that could not be
confirmed is not built in; the enterprise enters it in its registry with its source
(`targets:` of the enterprise; the same `TargetDef`).

Two kinds of target, by `scope`:

- "enterprise": a level the enterprise's own figure can meet: the key-process NC rates
  the national plans aim the population of industrial enterprises at. Its figure is held
  against the level: met or not met.
- "region": a province's or the country's reduction of an intensity over a five-year
  plan (GDP energy intensity 2020 -> 2025, industrial water per value added). It binds
  the region, not an enterprise, and its quantity is not the enterprise's (GDP at
  constant prices against the enterprise's value added; a fixed 2020 base against the
  report's baseline). It is shown beside the enterprise's change vs its baseline for
  reference, with the difference, and never called met or not met.

Carbon intensity has no built-in target: Anhui's plan sets its 2025 reduction as
"完成国家下达目标" (the national allocation), with no figure in the text read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class TargetDef(BaseModel):
    """One threshold for one KPI: built in (a programme's published target) or entered
    by the enterprise in its registry (its chosen programme's or grade's threshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kpi: str = Field(description="the KPI's id, as in kpi/labels.py (e.g. nc_rate_measured)")
    comparison: Literal[">=", ">", "<=", "<"] = Field(
        description="how the figure must compare with the threshold to meet it"
    )
    threshold: float
    unit: str = Field(description="the KPI's unit (e.g. %), checked against the KPI's own")
    by: dt.date | None = Field(default=None, description="the date the target is due by")
    programme: str = Field(min_length=1, description="the programme or grade that sets it")
    programme_en: str = ""
    source: str = Field(min_length=1, description="the publication and where in it")
    scope: Literal["enterprise", "region"] = Field(
        default="enterprise",
        description="enterprise: a level the enterprise's figure meets or not; region: a "
        "province's or the country's target, shown beside the figure for reference only",
    )
    note: str = Field(default="", description="how the target applies to the figure")
    note_en: str = ""


@dataclass(frozen=True, slots=True)
class TargetTable:
    version: str
    title: str
    rows: tuple[TargetDef, ...]

    def as_json(self) -> dict[str, Any]:
        """What a report carries of the table: its version, title and every row."""
        return {
            "version": self.version,
            "title": self.title,
            "rows": [r.model_dump(mode="json") for r in self.rows],
        }


def targets_from_json(doc: dict[str, Any]) -> TargetTable:
    """A table as a report carries it (`TargetTable.as_json`) read back."""
    return TargetTable(
        doc["version"], doc["title"], tuple(TargetDef.model_validate(r) for r in doc["rows"])
    )


# -- the sources, as read (docs/kpi.md, "Targets") ----------------------------------------

_RENEWAL_2024 = (
    "工业和信息化部 国家发展改革委 财政部 中国人民银行 税务总局 市场监管总局 金融监管总局"
    "《推动工业领域设备更新实施方案》(经国务院同意, 2024-03-27 印发), 一、总体要求: "
    "“到2027年, ……规模以上工业企业数字化研发设计工具普及率、关键工序数控化率分别超过"
    "90%、75%”"
)
_RENEWAL_NOTE = (
    "目标针对全国规模以上工业企业的总体水平, 本企业数值对照该水平; “超过”按严格大于判定。"
    "安徽省《推动大规模设备更新和消费品以旧换新实施方案》(皖政秘〔2024〕95号) 经其各市方案"  # noqa: RUF001
    "(马鞍山市 2024-07-29 一、工作目标; 芜湖市 2024-05-30 一、总体要求) 引用同一目标, "
    "省方案原文未核对。"
)
_RENEWAL_NOTE_EN = (
    "Set for the country's industrial enterprises above designated size as a whole; the "
    "enterprise's figure is held against that level. 超过 (exceed) is read as strictly "
    "greater. Anhui's implementation plan (皖政秘〔2024〕95号) states the same target as "  # noqa: RUF001
    "quoted by its cities' plans (Ma'anshan, Wuhu); the provincial text itself was not read."
)
_FUSION_2021 = (
    "工业和信息化部《“十四五”信息化和工业化深度融合发展规划》(2021-11-30 发布), 发展目标: "
    "“到2025年, ……关键工序数控化率达68%” (据工业和信息化部 2021-11-30 新闻发布会及"
    "人民政协网 2021-12-02 报道所引原句; 规划全文未逐字核对)"
)
_FUSION_NOTE = "目标针对全国工业企业的总体水平, 本企业数值对照该水平。"
_FUSION_NOTE_EN = (
    "Set for the country's industrial enterprises as a whole; the enterprise's figure is "
    "held against that level."
)
_ANHUI_PEAK_2022 = (
    "安徽省人民政府《安徽省碳达峰实施方案》(2022-09-23 印发), 一、总体要求 (二)主要目标: "
    "“到2025年, 非化石能源消费比重达到15.5%以上, 单位地区生产总值能耗比2020年下降14%, "
    "单位地区生产总值二氧化碳排放降幅完成国家下达目标”"
)
_ANHUI_PEAK_NOTE = (
    "省级目标 (全省单位地区生产总值能耗 2020→2025 下降14%), 不是对企业的考核值; 仅作参照: "
    "与本企业万元增加值综合能耗较基期的变化并列, 不判定达标。基期为2020年、统计期为2025年时"
    "口径最接近。"
)
_ANHUI_PEAK_NOTE_EN = (
    "The province's target (its GDP energy intensity down 14 % from 2020 to 2025), not an "
    "enterprise's threshold: shown beside the enterprise's energy per value added vs its "
    "baseline for reference, never called met. Closest when the baseline is 2020 and the "
    "period 2025."
)
_WATER_2021 = (
    "国家发展改革委 水利部 住房城乡建设部 工业和信息化部 农业农村部《“十四五”节水型社会建设"
    "规划》(国家发展改革委 2021-11-09 公布), 主要目标: “到2025年, ……万元工业增加值用水量比"
    "2020年下降16.0%” (据其公布时的报道所引原句)"
)
_WATER_NOTE = (
    "全国目标 (万元工业增加值用水量 2020→2025 下降16.0%), 安徽省的目标未找到原文; 仅作参照: "
    "与本企业万元增加值取水量较基期的变化并列, 不判定达标。"
)
_WATER_NOTE_EN = (
    "The country's target (industrial water per 10,000 CNY value added down 16.0 % from "
    "2020 to 2025; Anhui's own was not found in a text read): shown beside the enterprise's "
    "water per value added vs its baseline for reference, never called met."
)


def _nc(target: TargetDef) -> tuple[TargetDef, ...]:
    """The same NC-rate target for the declared and the measured rate."""
    return tuple(
        target.model_copy(update={"kpi": kpi}) for kpi in ("nc_rate_declared", "nc_rate_measured")
    )


TARGET_TABLES: dict[str, TargetTable] = {
    "cn-anhui.1": TargetTable(
        version="cn-anhui.1",
        title="国家及安徽省规划目标 National and Anhui programme targets",
        rows=(
            *_nc(TargetDef(
                kpi="nc_rate_*", comparison=">", threshold=75.0, unit="%",
                by=dt.date(2027, 12, 31),
                programme="推动工业领域设备更新实施方案 (2027年目标)",
                programme_en="Industrial equipment renewal plan (2027 target)",
                source=_RENEWAL_2024, note=_RENEWAL_NOTE, note_en=_RENEWAL_NOTE_EN,
            )),
            *_nc(TargetDef(
                kpi="nc_rate_*", comparison=">=", threshold=68.0, unit="%",
                by=dt.date(2025, 12, 31),
                programme="“十四五”两化深度融合发展规划 (2025年目标)",
                programme_en="14th Five-Year IT-industry integration plan (2025 target)",
                source=_FUSION_2021, note=_FUSION_NOTE, note_en=_FUSION_NOTE_EN,
            )),
            TargetDef(
                kpi="energy_per_value_added_change", comparison="<=", threshold=-14.0,
                unit="%", by=dt.date(2025, 12, 31), scope="region",
                programme="安徽省碳达峰实施方案 (2025年 单位地区生产总值能耗)",
                programme_en="Anhui carbon peaking plan (2025, GDP energy intensity)",
                source=_ANHUI_PEAK_2022, note=_ANHUI_PEAK_NOTE, note_en=_ANHUI_PEAK_NOTE_EN,
            ),
            TargetDef(
                kpi="water_per_value_added_change", comparison="<=", threshold=-16.0,
                unit="%", by=dt.date(2025, 12, 31), scope="region",
                programme="“十四五”节水型社会建设规划 (全国 2025年 万元工业增加值用水量)",
                programme_en="14th Five-Year water-saving society plan (national, 2025, "
                "industrial water intensity)",
                source=_WATER_2021, note=_WATER_NOTE, note_en=_WATER_NOTE_EN,
            ),
        ),
    ),
}  # fmt: skip

DEFAULT_TARGETS = "cn-anhui.1"


def target_table(version: str | None = None) -> TargetTable:
    version = version or DEFAULT_TARGETS
    try:
        return TARGET_TABLES[version]
    except KeyError:
        raise ValueError(f"no target table {version!r}; known: {sorted(TARGET_TABLES)}") from None
