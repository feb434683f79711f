"""The report document as both renderings read it (evidence/render_html.py,
evidence/render_xlsx.py): the format check, the KPI entries parsed into `Kpi`, one column
table per list of the report, and how a figure or an instant is shown as text.

    report (dict, format "factory-evidence.report" v1: the signed JSON)
        │   column tables (EQUIPMENT, METERS, …): JSON key, bilingual header, kind
        ├── render_html → one self-contained page (inline CSS, A4) → render_pdf → PDF
        └── render_xlsx → 概览 Summary, 设备 Equipment, 计量 Meters, 产量 Production,
                          基准 Baseline, 数据质量 Data quality (with 数据来源 Data origin),
                          系数 Factors, 时间锚定 Anchoring (when the report has it),
                          签名 Signature

Both are views of the JSON, which is the evidence the signature covers. They compute
nothing: every figure shown is one of the report's own, at most converted in its unit
(seconds to hours, a fraction to a percent) or added up for the one-line summary of the
gaps. A KPI in "%" carries percent (83.3, as programmes state their targets);
per-equipment ratios and coverages are fractions. One column table per list drives both
renderings, so the page and the workbook cannot disagree on what a column is or how it is
shown, and one set of formatters below shows a number for people: a number of digits per
unit, never the tail of a binary double (6552.400000000001 is shown 6,552.4).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from ingest_server.errors import InvalidInputError
from ingest_server.kpi.results import FORMAT, FORMAT_VERSION, Kpi
from ingest_server.reference.factors import REGION_NAMES

TITLE = "智能工厂/绿色工厂关键指标测量证明"
TITLE_EN = "Measured KPI evidence"
MAX_HTML_ROWS = 200  # per data-quality list; the JSON and the workbook hold them all
DASH = "—"
LABELS = {  # Chinese for the format's enumerated values
    "electricity": "电力", "gas": "天然气", "water": "水", "diesel": "柴油", "heat": "热力",
    "steam": "蒸汽", "compressed_air": "压缩空气", "offline": "离线", "unknown": "状态未知",
    "no_data": "无数据", "rollover": "翻转", "reset": "复位", "discrete": "离散型",
    "process": "流程型", "consumption": "用能", "generation": "现场发电",
    # tag roles (edge_agent/contract/sample.py `Role`)
    "machine_state": "设备状态", "part_count_total": "总产量计数", "part_count_good": "合格品计数",
    "part_count_scrap": "废品计数", "energy_kwh": "电能", "power_kw": "功率", "water_m3": "水量",
    "gas_m3": "燃气量", "steam_t": "蒸汽量", "air_m3": "压缩空气量", "program": "加工程序",
    "alarm": "报警", "spindle_speed": "主轴转速", "feed_override": "进给倍率",
    "generic": "通用点位", "device_status": "设备通信状态",
    # grid regions (reference/factors.py)
    **{region: zh for region, (zh, _) in REGION_NAMES.items()},
}  # fmt: skip

Json = Mapping[str, Any]


class ReportFormatError(InvalidInputError, ValueError):
    """The document is not a report of the format and version rendered here."""


def check_format(report: Json) -> None:
    if report.get("format") != FORMAT or report.get("format_version") != FORMAT_VERSION:
        raise ReportFormatError(
            f"expected format {FORMAT!r} version {FORMAT_VERSION}, got "
            f"{report.get('format')!r} version {report.get('format_version')!r}"
        )


def kpis_of(entries: Sequence[object], where: str = "kpis") -> list[Kpi]:
    """A report's KPI entries (its `kpis`, its baseline's) as `Kpi`s; what an older
    version did not write takes the model's default. An entry that is no KPI of this
    format (not an object, a figure that is not a number) is refused, naming it."""
    out = []
    for i, entry in enumerate(entries):
        try:
            out.append(Kpi.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            # the field only: a number's error names the union's branch too (value.int)
            at = f"{where}[{i}]" + (f".{first['loc'][0]}" if first["loc"] else "")
            raise ReportFormatError(
                f"{at} does not fit format {FORMAT!r} version {FORMAT_VERSION}: {first['msg']}"
            ) from None
    return out


# --- columns: one table per list of the report, for both renderings --------------------


class Column(NamedTuple):
    zh: str
    en: str
    key: str  # "parent.key" reaches one object down
    # text, entity (id with its names), enum, bool, pct, coverage, tce, seconds (shown in
    # hours), count, number, quantity (a meter's kWh, m3: by size), reading (a counter's
    # reading or delta: its own decimals), exact (shown as stored: declared constants),
    # instant (ISO UTC), date (ISO local date), kpi (by its unit), scope (null: all sites)
    kind: str = "text"


TIME_BUCKETS = ("pot_s", "planned_downtime_s", "pbt_s", "apt_s", "setup_s", "idle_s",
                "down_s", "off_in_plan_s", "unknown_s", "running_outside_s")  # fmt: skip

# fmt: off
KPIS = (
    Column("编号", "ID", "id"), Column("指标", "KPI", "name"),
    Column("指标(英文)", "KPI (English)", "name_en"), Column("数值", "Value", "value", "kpi"),
    Column("单位", "Unit", "unit"), Column("公式", "Formula", "formula"),
    Column("分子", "Numerator", "numerator", "exact"),
    Column("分母", "Denominator", "denominator", "exact"),
    Column("数据覆盖率", "Coverage", "coverage", "coverage"), Column("说明", "Note", "note"),
    Column("输入", "Inputs", "inputs"),
)
KPI_ORIGIN = (  # after KPIS, in a report that states them (made since contract v2)
    Column("网关签名数据占比", "Gateway-signed share", "attested", "pct"),
    Column("样本数", "Samples", "samples", "count"),
    Column("网关签名样本数", "Gateway-signed samples", "samples_attested", "count"),
)
EQUIPMENT = (
    Column("设备", "Equipment", "id", "entity"), Column("名称", "Name", "name"),
    Column("名称(英文)", "Name (English)", "name_en"), Column("厂区", "Site", "site"),
    Column("工序", "Process", "process"), Column("工序名称", "Process name", "process_name"),
    Column("关键", "Key process", "key_process", "bool"),
    Column("数控", "NC declared", "nc", "bool"),
    Column("计入实测", "NC measured", "nc_measured", "bool"),
    Column("生产设备", "Production", "production", "bool"),
    Column("接口", "Interface", "interface"),
    Column("理想节拍", "Ideal cycle s", "ideal_cycle_time_s", "exact"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
    Column("有数据", "Data", "delivered_data", "bool"),
    Column("日历时间", "Calendar", "time.calendar_s", "seconds"),
    Column("计划运行", "POT", "time.pot_s", "seconds"),
    Column("计划停机", "Planned down", "time.planned_downtime_s", "seconds"),
    Column("计划占用", "PBT", "time.pbt_s", "seconds"),
    Column("实际生产", "APT", "time.apt_s", "seconds"),
    Column("调整", "Setup", "time.setup_s", "seconds"),
    Column("空闲", "Idle", "time.idle_s", "seconds"),
    Column("故障", "Down", "time.down_s", "seconds"),
    Column("计划内关机", "Off in plan", "time.off_in_plan_s", "seconds"),
    Column("未知", "Unknown", "time.unknown_s", "seconds"),
    Column("计划外运行", "Running outside", "time.running_outside_s", "seconds"),
    Column("产量", "Produced", "parts.produced", "count"),
    Column("合格", "Good", "parts.good", "count"), Column("废品", "Scrap", "parts.scrap", "count"),
    Column("可用率", "Availability", "availability", "pct"),
    Column("性能率", "Effectiveness", "effectiveness", "pct"),
    Column("质量率", "Quality", "quality_ratio", "pct"), Column("综合效率", "OEE", "oee", "pct"),
    Column("利用率", "Utilisation", "utilisation", "pct"),
    Column("平均故障间隔", "MTBF", "mtbf_s", "seconds"),
    Column("平均修复", "MTTR", "mttr_s", "seconds"),
    Column("故障次数", "Down events", "down_events", "count"),
)
METERS = (
    Column("计量表", "Meter", "id", "entity"), Column("名称", "Name", "name"),
    Column("名称(英文)", "Name (English)", "name_en"), Column("厂区", "Site", "site"),
    Column("上级表", "Parent", "parent"), Column("介质", "Carrier", "carrier", "enum"),
    Column("用量", "Quantity", "quantity", "quantity"), Column("单位", "Unit", "unit"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
    Column("翻转", "Rollovers", "rollovers", "count"), Column("复位", "Resets", "resets", "count"),
    Column("折标煤", "tce", "tce", "tce"), Column("二氧化碳", "tCO2", "tco2", "tce"),
    Column("计入总量", "Top level", "top_level", "bool"),
    Column("用途", "Role", "role", "enum"),  # reports made before roles: none (用能)
)
PRODUCTION = (
    Column("厂区", "Site", "site", "scope"), Column("起", "From", "from", "date"),
    Column("止", "To", "to", "date"), Column("产量", "Output", "output", "quantity"),
    Column("单位", "Unit", "output_unit"),
    Column("工业增加值 万元", "Value added, 10k CNY", "value_added_10k_cny", "number"),
    Column("计入比例", "Share in period", "share", "pct"), Column("说明", "Note", "note"),
    Column("填报人", "Entered by", "entered_by"),
    Column("填报时间", "Entered at", "entered_at", "instant"),
)
TAGS = (
    Column("设备", "Device", "device"), Column("标签", "Tag", "tag"),
    Column("用途", "Role", "role", "enum"), Column("收到", "Received", "received", "count"),
    Column("应收", "Expected", "expected", "count"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
)
GAPS = (
    Column("设备", "Device", "device"), Column("开始", "Start", "start", "instant"),
    Column("结束", "End", "end", "instant"), Column("时长", "Duration", "seconds", "seconds"),
    Column("类型", "Kind", "kind", "enum"),
)
ANOMALIES = (
    Column("设备", "Device", "device"), Column("标签", "Tag", "tag"),
    Column("时间", "Time", "ts", "instant"), Column("类型", "Flag", "flag", "enum"),
    Column("前值", "Previous", "prev_value", "reading"),
    Column("值", "Value", "value", "reading"), Column("计入增量", "Delta", "delta", "reading"),
)
UNKNOWN = (  # rows of `unknown_time`: each machine's unknown time, as its KPIs count it
    Column("设备", "Equipment", "id", "entity"),
    Column("覆盖率", "Coverage", "coverage", "coverage"),
    Column("统计期内", "In the period", "unknown_period_s", "seconds"),
    Column("计划运行内", "In planned operation", "unknown_pot_s", "seconds"),
    Column("计划占用内", "In planned busy time", "unknown_s", "seconds"),
)
ORIGIN = (  # the report's `attestation.gateways`
    Column("网关", "Gateway", "gateway"), Column("厂区", "Site", "site"),
    Column("协议版本", "Contract", "contract", "exact"),
    Column("样本数", "Samples", "samples", "count"),
    Column("网关签名", "Gateway-signed", "attested", "count"),
    Column("未经网关签名", "Not gateway-signed", "not_attested", "count"),
    Column("网关签名数据占比", "Gateway-signed share", "share", "pct"),
)
CHANGES = (  # an edit of the registry_audit block (kpi/columnar.py registry_edit)
    Column("时间", "At", "at", "instant"), Column("类别", "Kind", "kind"),
    Column("对象", "Entity", "entity"), Column("字段", "Field", "field"),
    Column("原值", "Old", "old", "exact"), Column("新值", "New", "new", "exact"),
    Column("账号", "Account", "account"), Column("说明", "Note", "note"),
)
ENERGY = (
    Column("介质", "Carrier", "carrier", "enum"), Column("单位", "Unit", "unit"),
    Column("系数", "Coefficient", "coefficient", "exact"),
    Column("系数单位", "Coefficient unit", "coefficient_unit"),
    Column("依据", "Basis", "basis"), Column("来源", "Source", "source"),
)
EMISSION = (
    Column("介质", "Carrier", "carrier", "enum"), Column("区域", "Region", "region", "enum"),
    Column("年份", "Year", "year"), Column("单位", "Unit", "unit"),
    Column("因子", "Factor", "factor", "exact"), Column("因子单位", "Factor unit", "factor_unit"),
    Column("来源", "Source", "source"),
)
# fmt: on


def pick(columns: Sequence[Column], *keys: str) -> list[Column]:
    by_key = {c.key: c for c in columns}
    return [by_key[k] for k in keys]


def value_at(item: Json, key: str) -> Any:
    head, _, tail = key.partition(".")
    value = item.get(head)
    if tail:
        return value.get(tail) if isinstance(value, Mapping) else None
    return value


# --- numbers and times, as shown -------------------------------------------------------


def fixed(v: float | None, digits: int) -> str:
    return DASH if v is None else f"{v:,.{digits}f}"


def percent(v: float | None) -> str:
    """A share 0..1 as a percent, 1 decimal."""
    return DASH if v is None else f"{v * 100:.1f}%"


def hours(seconds: float | None) -> str:
    return fixed(None if seconds is None else seconds / 3600, 1)


def number(v: float | None) -> str:
    """Counts as integers; other numbers with four significant digits, 1 to 6 decimals."""
    if v is None:
        return DASH
    if isinstance(v, int) or (math.isfinite(v) and v.is_integer()):
        return f"{int(v):,}"
    if not math.isfinite(v):
        return str(v)
    return fixed(v, min(6, max(1, 3 - math.floor(math.log10(abs(v))))))


def quantity(v: float | None) -> str:
    """A metered quantity (kWh, m3) or an output: whole units from 1,000 up, 1 decimal
    below, and significant digits under 1 (0.0042 m3 is not 0.0)."""
    if v is None or not math.isfinite(v) or abs(v) < 1:
        return number(v)
    return fixed(v, 0 if abs(v) >= 1000 else 1)


def reading(v: float | None) -> str:
    """A counter's reading or delta with the decimals its register has (at most 6): the
    binary double's tail dropped, so 6552.400000000001 reads 6,552.4 and a rollover's
    delta can be checked against the two readings by hand."""
    if v is None or not math.isfinite(v):
        return number(v)
    return f"{v:,.6f}".rstrip("0").rstrip(".")


def exact(v: object) -> str:
    """A declared constant (a factor, a cycle time) as the document holds it."""
    return DASH if v is None else str(v)


def kpi_value(value: float | None, unit: str | None) -> str:
    if value is None:
        return DASH
    if unit == "%":  # a KPI in "%" carries percent already (83.3)
        return f"{value:.1f}%"
    if unit in ("tce", "tCO2"):
        return f"{fixed(value, 3)} {unit}"
    if unit == "h":
        return f"{fixed(value, 1)} h"
    return f"{number(value)} {unit or ''}".rstrip()


def zone(name: object) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_time(ts: object, tz: ZoneInfo | None) -> str:
    """An ISO instant in the report's local time, to the second; unparsable: as given."""
    if not isinstance(ts, str):
        return DASH
    try:
        t = dt.datetime.fromisoformat(ts)
    except ValueError:
        return ts
    if tz is not None and t.tzinfo is not None:
        t = t.astimezone(tz)
    return t.strftime("%Y-%m-%d %H:%M:%S")


LEGACY_PARTIAL = (
    "partial_period",
    "统计期在报告生成时尚未结束。数值只含截至生成时刻的数据, 之后到达的数据会改变数值, "
    "本报告届时将不能通过验证。",
    "The period had not ended when this report was made: the figures cover the data up to "
    "then. Data arriving later will change the figures, and this report will then fail "
    "verification.",
)


CONTRACTS = {  # a gateway's contract, as the renderings name it
    1: ("v1 HMAC, 服务器可伪造", "v1 HMAC: the server could have made its data"),
    2: ("v2 Ed25519, 网关签名", "v2 Ed25519: signed by the gateway"),
}
ORIGIN_NOTE = (
    "网关签名数据占比: 指标所依据的样本中, 由网关以自身私钥签名 (协议 v2) 的比例。签名证明数据"
    "确由该网关发出且未被改动, 不证明传感器或设备读数真实。协议 v1 (HMAC) 的密钥由服务器签发"
    "并保存, 此类样本服务器本可自行生成, 故不计为网关签名。",
    "Gateway-signed share: of the samples a KPI rests on, those its gateway signed with its "
    "own key (contract v2). The signature proves the gateway sent them unchanged; it does "
    "not prove that the sensor or the machine told the truth. Contract v1 (HMAC) uses a "
    "key the server issued and keeps: the server could have made those samples, so they "
    "are not gateway-signed.",
)


ANCHOR_LABELS = {  # a day's state in the report's `anchoring` block
    "anchored": ("已锚定", "anchored"),
    "pending": ("待重试", "pending: every TSA failed; retried"),
    "not_anchored": ("未锚定", "not anchored"),
    "not_due": ("未到期", "not due yet: the day was not over"),
}
ANCHOR_PARTS = {"period": ("统计期", "period"), "baseline": ("基期", "baseline")}
ANCHORING_NOTE = (
    "每个自然日, 服务器以当天收到的网关签名批次 (协议 v2) 的摘要构建 Merkle 树, 并请时间戳服务 "
    "(TSA, RFC 3161) 对树根加盖时间戳。签名证明数据由谁发出, 时间戳证明数据最晚何时已经存在: "
    "此后改写当天的数据, 树根即与时间戳不符。下表为生成报告时服务器所存的状态; 无签名批次的日期"
    "无需锚定。",
    "For each local day, the server builds a Merkle tree over the digests of the "
    "gateway-signed (contract v2) batches received that day, and a time-stamping authority "
    "(TSA, RFC 3161) stamps its root. A signature proves who sent the data; the time-stamp "
    "proves it existed by then: a day's data rewritten later no longer matches its stamp. "
    "The table gives what the server held when the report was made; a day without a "
    "signed batch has nothing to anchor.",
)


def declared_changes(r: Json) -> list[dict[str, Any]] | None:
    """The declared attribute edits a report signs in its `registry_audit` block (those
    since the period began, until the registry was read), oldest first: the equipment
    trail's as kind "equipment", then the other trail's; None for a report without the
    block."""
    block = r.get("registry_audit")
    if not isinstance(block, Mapping):
        return None
    edits = [{**e, "kind": "equipment", "entity": e.get("equipment")}
             for e in block.get("edits") or [] if isinstance(e, Mapping)]  # fmt: skip
    other = block.get("registry")
    if isinstance(other, Mapping):
        edits += [dict(e) for e in other.get("edits") or [] if isinstance(e, Mapping)]
    return sorted(edits, key=lambda e: (str(e.get("at")), str(e.get("kind")), e.get("id") or 0))


def anchoring_of(r: Json) -> Json | None:
    """The report's `anchoring` block; None for a report made before it."""
    block = r.get("anchoring")
    return block if isinstance(block, Mapping) else None


def notices_of(r: Json) -> list[tuple[str, str, str]]:
    """(code, Chinese, English) of each notice the report carries."""
    notices = r.get("notices")
    if isinstance(notices, list):
        return [(str(n.get("code")), str(n.get("text")), str(n.get("text_en"))) for n in notices]
    return [LEGACY_PARTIAL] if (r.get("period") or {}).get("partial") else []


# --- gaps: the unknown time the KPIs count, per machine --------------------------------


def unknown_time(r: Json) -> list[dict[str, Any]]:
    """Each machine with unknown state time in the period (offline, unknown, no data, and
    time with no state at all, e.g. before its first sample), most first: the figures of
    its `time` the KPIs count (availability leaves out the unknown planned busy time, the
    coverage the unknown planned operation time). A report's `gaps` list only the
    intervals of those states, so a machine silent from the start of the period has
    unknown time and no gap interval. Reports whose `time` predates the period and
    planned-operation figures show what they hold."""
    out = []
    for e in r.get("equipment") or []:
        t = e.get("time") if isinstance(e, Mapping) else None
        if not isinstance(t, Mapping):
            continue
        row = {
            "id": e.get("id"), "name": e.get("name"), "name_en": e.get("name_en"),
            "coverage": e.get("coverage"), "unknown_period_s": t.get("unknown_period_s"),
            "unknown_pot_s": t.get("unknown_pot_s"), "unknown_s": t.get("unknown_s"),
        }  # fmt: skip
        if _most_unknown(row) > 0:
            out.append(row)
    return sorted(out, key=_most_unknown, reverse=True)


def _most_unknown(row: Json) -> float:
    keys = ("unknown_period_s", "unknown_pot_s", "unknown_s")
    return max((float(row[k]) for k in keys if isinstance(row.get(k), int | float)), default=0)


def gaps_line(r: Json) -> tuple[str, str]:
    """The data gaps in one line (Chinese, English): machines with unknown time, tags
    under the coverage threshold, gap intervals, counter anomalies; "无" / "none" only
    when there is none of them."""
    q = r.get("quality") or {}
    threshold = (r.get("parameters") or {}).get("coverage_threshold")
    zh, en = [], []
    machines = unknown_time(r)
    if machines:
        total = hours(sum(_most_unknown(m) for m in machines))
        worst = f"{machines[0]['id']} {hours(_most_unknown(machines[0]))} h"
        zh.append(f"{len(machines)} 台设备状态未知共 {total} h (最多 {worst})")
        en.append(f"{len(machines)} machines with unknown state, {total} h in all (most: {worst})")
    tags = q.get("tags") or []
    if isinstance(threshold, int | float):
        low = [t for t in tags if isinstance(t.get("coverage"), int | float)
               and t["coverage"] < threshold]  # fmt: skip
        if low:
            zh.append(f"覆盖率低于 {percent(threshold)} 的标签 {len(low)} 个")
            en.append(f"{len(low)} tags under {percent(threshold)} coverage")
    gaps = q.get("gaps") or []
    if gaps:
        zh.append(f"离线/未知/无数据区间 {len(gaps)} 段")
        en.append(f"{len(gaps)} offline, unknown or no-data intervals")
    anomalies = q.get("counter_anomalies") or []
    if anomalies:
        zh.append(f"计数器翻转或复位 {len(anomalies)} 次")
        en.append(f"{len(anomalies)} counter rollovers or resets")
    if not zh:
        return "无", "none"
    return "; ".join(zh), "; ".join(en)
