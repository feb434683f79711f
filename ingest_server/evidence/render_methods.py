"""The methodology a report's figures follow, by standard and, where it was checked, by
clause: a section near the end of the HTML page (evidence/render_html.py).

Only what the sources checked allow is cited (docs/green-ghg.md, docs/kpi.md, reference/
factors.py): GB/T 2589-2020's Appendix A (the coefficient rows name it); GB/T
32151.29-2024's chapters 4, 5 and 7 and Annex B (its table of contents); GB 17167 as the
meter register's basis states it. ISO 22400-2, GB/T 32150-2015 and GB/T 36132-2025 are
named without a clause: no clause of theirs was checked against the text. The factor
publications are the report's own rows, those its meters used, so a report cites what it
computed with, by name and year, whatever table it names.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest_server.evidence.columns import Json
from ingest_server.evidence.ghg import publication
from ingest_server.evidence.markup import Raw, Td, bi, esc, grid, section

TIME_MODEL = (
    "ISO 22400-2:2014 (制造运行管理的关键绩效指标 第2部分: 定义和描述): 时间模型 "
    "(计划运行时间、计划停机、实际生产时间等) 及可用率、性能效率、质量率、OEE、"
    "MTBF、MTTR 的定义。",
    "ISO 22400-2:2014, Key performance indicators (KPIs) for manufacturing operations "
    "management, Part 2: Definitions and descriptions: the time model (planned operation "
    "time, planned downtime, actual production time, ...) and availability, effectiveness, "
    "quality ratio, OEE, MTBF and MTTR.",
)
ENERGY = (
    "GB/T 2589-2020《综合能耗计算通则》: 综合能耗按各能源实物量乘以折标准煤系数 (当量值) "
    "求和; 系数取自附录A, 本报告使用的各行及其出处:",
    "GB/T 2589-2020, General principles for calculation of the comprehensive energy "
    "consumption: comprehensive energy is the sum of each carrier's quantity times its "
    "coefficient (calorific equivalent); the coefficients are Appendix A's, the rows this "
    "report used and their sources:",
)
CARBON = (
    "GB/T 32151.29-2024《温室气体排放核算与报告要求 第29部分: 机械设备制造企业》(2025-04-01 "
    "实施), 第4章 核算边界、第5章 核算步骤与核算方法、第7章 报告内容和格式及附录B 报告格式"
    "模板; 依 GB/T 32150-2015《工业企业温室气体排放核算和报告通则》的排放源类别: 化石燃料"
    "燃烧、购入电力和热力、工业生产过程排放 (企业依台账填报)。本报告使用的排放因子及其出处:",
    "GB/T 32151.29-2024, Requirements of the greenhouse gas emission accounting and "
    "reporting, Part 29: machinery and equipment manufacturing enterprise (in force "
    "2025-04-01), chapter 4 (boundary), chapter 5 (steps and methods), chapter 7 (report "
    "contents and format) and Annex B (report template); the source categories of GB/T "
    "32150-2015 (general rules): fuel combustion, purchased electricity and heat, and "
    "process emissions (entered by the enterprise from its ledger). The emission factors "
    "this report used and their publications:",
)
METERING = (
    "GB 17167《用能单位能源计量器具配备和管理通则》",
    "GB 17167, General principle for equipping and managing of the measuring instrument "
    "of energy in organization of energy using",
)
GREEN = (
    "GB/T 36132-2025《绿色工厂评价通则》(2025-12-31 实施): 一级指标的顺序, 以基准值与引领值"
    "衡量定量指标 (基准值与引领值由企业按所属行业填报; 未计算得分)。",
    "GB/T 36132-2025, General principles for green factory evaluation (in force "
    "2025-12-31): the order of the first-level indicators, quantitative indicators held "
    "against a baseline and a leading value (entered by the enterprise for its sector; no "
    "score computed).",
)


def _rows(table: object) -> list[Mapping[str, object]]:
    rows = table.get("rows") if isinstance(table, Mapping) else None
    return [r for r in rows or [] if isinstance(r, Mapping)]


def _used(r: Json) -> tuple[list[str], list[str]]:
    """The sources of the coefficient rows and of the emission factor rows the report's
    meters used, each once, in the order met."""
    factors = r.get("factors") or {}
    energy, emission = _rows(factors.get("energy")), _rows(factors.get("emission"))
    meters = [m for m in r.get("meters") or [] if isinstance(m, Mapping)]
    coef = [
        str(row.get("source"))
        for m in meters
        if m.get("tce") is not None
        for row in energy
        if (row.get("carrier"), row.get("unit")) == (m.get("carrier"), m.get("unit"))
    ]
    ef = [publication(m, emission) for m in meters if m.get("tco2") is not None]
    return list(dict.fromkeys(coef)), list(dict.fromkeys(x for x in ef if x))


def _cited(text: tuple[str, str], table: object, sources: list[str]) -> Raw:
    """The method, the factor table the report names, and the sources of its rows that
    the report's meters used (none when no meter had a quantity)."""
    t = table if isinstance(table, Mapping) else {}
    named = f"<p><code>{esc(t.get('version'))}</code> {esc(t.get('title'))}</p>"
    listed = "".join(f"<li>{esc(s)}</li>" for s in sources) or f"<li>{bi('无', 'none')}</li>"
    return Raw(bi(*text) + named + f"<ul>{listed}</ul>")


def methods_html(r: Json) -> str:
    """The methodology references as a section: what each group of figures follows."""
    coef, ef = _used(r)
    factors = r.get("factors") or {}
    register = r.get("meter_register")
    basis = (
        (str(register.get("basis")), str(register.get("basis_en")))
        if isinstance(register, Mapping) and register.get("basis")
        else METERING
    )
    rows = [
        (("设备时间与效率", "Equipment time and ratios"), bi(*TIME_MODEL)),
        (
            ("综合能耗 (吨标准煤)", "Comprehensive energy (tce)"),
            _cited(ENERGY, factors.get("energy"), coef),
        ),
        (("温室气体排放", "Greenhouse gases"), _cited(CARBON, factors.get("emission"), ef)),
        (("能源计量", "Energy metering"), bi(*basis)),
    ]
    if isinstance(r.get("green"), Mapping):
        rows.append((("绿色工厂评价", "Green-factory evaluation"), bi(*GREEN)))
    table = grid(
        [bi("数据", "Figures"), bi("方法依据", "Method and reference")],
        [[Td(bi(*what)), Td(ref)] for what, ref in rows],
    )
    note = bi(
        "仅引用已对照标准文本或其目录核实的条款; 未能核实的只列标准名称 (docs/green-ghg.md)。",
        "Clauses are cited only where they were checked against the standard's text or "
        "table of contents; otherwise the standard is named without one (docs/green-ghg.md).",
    )
    return section("方法依据", "Methodology references", f"{table}<p>{note}</p>", "keep")
