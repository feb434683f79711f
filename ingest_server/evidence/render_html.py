"""An evidence report as a printable HTML page: one self-contained page (inline CSS, A4,
no scripts, no external resources) that a browser prints to PDF (evidence/render_pdf.py).

Page one is the summary a reader takes in at once (evidence/render_summary.py): title
and notices, the claim (who, which period, what), the report id, its digest and a QR
code of both with the signature (evidence/qr.py: a paper copy is matched to its file by
them), each headline figure with its target, coverage and change against the baseline,
the data gaps in one line and how to verify. The detail follows from page two: the
report's particulars, the KPIs with formulas and each one's gateway-signed share, the
targets (evidence/render_targets.py), the data's origin by gateway and each day's
anchoring in time (evidence/render_provenance.py), the NC rates declared and measured,
the baseline, output, meters and their register (nameplates and calibration
certificates, evidence/render_register.py), the declared changes in the period (the
signed `registry_audit` block's edits), equipment, groups, data quality (the unknown
time per machine the KPIs count, the gap intervals), factors, the green-factory
indicators and the GHG report (evidence/render_green.py), the methodology references
(evidence/render_methods.py), the enterprise's declaration with a box for its seal, and
the signature. Output and value added say who entered them and when (reports made before
that was recorded show a dash).
Every figure is the report's own (evidence/columns.py); names and notes are typed in by
the enterprise and escaped (evidence/markup.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ingest_server.evidence.columns import (
    ANOMALIES,
    EMISSION,
    ENERGY,
    EQUIPMENT,
    GAPS,
    LABELS,
    MAX_HTML_ROWS,
    METERS,
    PRODUCTION,
    TAGS,
    TIME_BUCKETS,
    TITLE,
    UNKNOWN,
    Json,
    check_format,
    gaps_line,
    kpi_value,
    kpis_of,
    local_time,
    number,
    percent,
    pick,
    unknown_time,
    zone,
)
from ingest_server.evidence.markup import (
    Ctx,
    Raw,
    Td,
    bi,
    cover_cell,
    esc,
    grid,
    h3,
    rows_table,
    section,
)
from ingest_server.evidence.qr import paper_mark
from ingest_server.evidence.render_green import ghg_html, green_html
from ingest_server.evidence.render_methods import methods_html
from ingest_server.evidence.render_provenance import (
    anchoring_html,
    changes_html,
    origin_html,
    signature_html,
)
from ingest_server.evidence.render_register import (
    REGISTER_CSS,
    declaration_html,
    meter_register_html,
)
from ingest_server.evidence.render_summary import page_one, period_cell
from ingest_server.evidence.render_targets import targets_html
from ingest_server.kpi.labels import KPI_LABELS
from ingest_server.kpi.results import Kpi
from ingest_server.reference.factors import TITLES_ZH


def _details_html(r: Json, ctx: Ctx) -> str:
    """What page one leaves out: when and by which software, the sites, the parameters."""
    software, params = r.get("software") or {}, r.get("parameters") or {}
    sites = "; ".join(
        f"{s.get('name') or ''} {s.get('name_en') or ''} "
        f"({s.get('timezone')}, 电网 grid {s.get('grid_region')})"
        for s in r.get("sites") or []
    )
    industry = str(params.get("industry"))
    generated = r.get("generated_at")
    made = local_time(generated, ctx.tz)
    meta = [
        ("生成时间", "Generated", bi(f"{made} ({ctx.tz_name})", generated)),
        ("软件版本", "Software", f"{software.get('name')} {software.get('version')}"),
        ("厂区", "Sites", sites or None),
        ("计算参数", "Parameters",
         f"覆盖率阈值 coverage threshold {percent(params.get('coverage_threshold'))}; "
         f"断线判定 gap after {number(params.get('gap_after_s'))} s; "
         f"心跳 heartbeat {number(params.get('heartbeat_s'))} s; "
         f"行业 industry {LABELS.get(industry, '')} {industry}"),
    ]  # fmt: skip
    rows = "".join(f"<tr><th>{bi(zh, en)}</th><td>{esc(v)}</td></tr>" for zh, en, v in meta)
    return section("报告信息", "Report details", f'<table class="meta">{rows}</table>', "keep")


def _attested_cell(k: Kpi) -> Td:
    """The KPI's gateway-signed share, with the counts under it."""
    if k.samples is None:
        return Td(bi("— 不依据采集数据", "rests on no samples"), "num null")
    if k.attested is None:
        return Td(bi("— 无样本", "no samples in the period"), "num null")
    counts = f"{number(k.samples_attested)} / {number(k.samples)}"
    return Td(Raw(f'{esc(percent(k.attested))}<span class="en">{esc(counts)}</span>'), "num")


def _kpis_html(kpis: Sequence[Kpi], ctx: Ctx, attested: bool) -> str:
    """`attested`: the report states each KPI's gateway-signed share (reports made before
    it was recorded do not: no column for them)."""
    rows = []
    for k in kpis:
        value = k.value
        # Chinese first, the English under it (reports made before `formula_zh` lack it)
        formula = esc(k.formula_zh or k.formula)
        if k.formula_zh:
            formula += f'<span class="en">{esc(k.formula)}</span>'
        if k.numerator is not None or k.denominator is not None:
            ratio = f"= {number(k.numerator)} / {number(k.denominator)}"
            formula += f'<span class="en">{esc(ratio)}</span>'
        note = esc(k.note_zh or k.note or ("无法计算 / not computable" if value is None else ""))
        if k.note_zh:
            note += f'<span class="en">{esc(k.note)}</span>'
        inputs = k.inputs
        if inputs:
            more = f" … (+{len(inputs) - 10})" if len(inputs) > 10 else ""
            note += f'<span class="en">输入 inputs: {esc(", ".join(inputs[:10]) + more)}</span>'
        rows.append([
            Td(bi(k.name or k.id, k.name_en)),
            Td(kpi_value(value, k.unit), "num value" if value is not None else "num null"),
            Td(Raw(formula)),
            cover_cell(k.coverage, ctx.threshold),
            Td(Raw(note)),
            *([_attested_cell(k)] if attested else []),
        ])  # fmt: skip
    heads = [bi("指标", "KPI"), bi("数值", "Value"), bi("公式", "Formula"),
             bi("数据覆盖率", "Coverage"), bi("说明", "Note")]  # fmt: skip
    if attested:
        heads.append(bi("网关签名数据占比", "Gateway-signed share"))
    return section("关键指标", "Headline KPIs", grid(heads, rows))


def _nc_html(r: Json, kpis: Mapping[str, Kpi], ctx: Ctx) -> str:
    equipment = r.get("equipment") or []
    key = [e for e in equipment if e.get("key_process")]
    sides = (
        ("申报", "Declared", "nc_rate_declared", [e for e in key if e.get("nc")],
         ("id", "process_name", "coverage", "delivered_data", "nc_measured")),
        ("实测", "Measured", "nc_rate_measured", [e for e in equipment if e.get("nc_measured")],
         ("id", "process_name", "coverage", "interface", "nc")),
    )  # fmt: skip
    body = []
    for zh, en, kpi_id, members, keys in sides:
        k = kpis.get(kpi_id) or Kpi(id=kpi_id)
        ratio = f"{number(k.numerator)} / {number(k.denominator)}"
        ratio = f"{k.formula} = {ratio}"
        figure = kpi_value(k.value, k.unit or KPI_LABELS[kpi_id].unit)
        body.append(
            f'<div class="side"><h3>{bi(zh, en)} <span class="figure">{esc(figure)}</span>'
            f'</h3><p class="en">{esc(ratio)}</p>'
            f"{rows_table(pick(EQUIPMENT, *keys), members, ctx)}</div>"
        )
    intro = (
        f"<p>关键工序设备 {len(key)} 台。申报为台账中标为数控的关键工序设备, 实测为其中数据证实的"
        f'设备。<span class="en">{len(key)} machines in key processes. Declared: those '
        "registered as NC; measured: those the data bears out.</span></p>"
    )
    return section(
        "关键工序数控化率 申报与实测",
        "Key-process NC rate, declared and measured",
        intro + f'<div class="pair">{"".join(body)}</div>',
        "keep",
    )


def _meters_html(r: Json, ctx: Ctx) -> str:
    columns = pick(METERS, "id", "parent", "carrier", "quantity", "unit", "coverage",
                    "rollovers", "resets", "tce", "tco2", "top_level")  # fmt: skip
    note = bi(
        "只有计入总量的表进入综合能耗与排放, 下级表用于分项。",
        "Only top-level meters count in the totals; sub-meters break them down.",
    )
    return section(
        "计量", "Meters", rows_table(columns, r.get("meters") or [], ctx) + f"<p>{note}</p>"
    )


def _equipment_html(r: Json, ctx: Ctx) -> str:
    equipment = r.get("equipment") or []
    times = pick(EQUIPMENT, "id", "process_name", "key_process", "nc", "coverage",
                  *(f"time.{b}" for b in TIME_BUCKETS))  # fmt: skip
    ratios = pick(EQUIPMENT, "id", "parts.produced", "parts.good", "parts.scrap",
                   "availability", "effectiveness", "quality_ratio", "oee", "utilisation",
                   "mtbf_s", "mttr_s", "down_events", "ideal_cycle_time_s")  # fmt: skip
    return section(
        "设备",
        "Equipment",
        h3("时间模型 (小时)", "Time model (hours), ISO 22400-2")
        + rows_table(times, equipment, ctx)
        + h3("产量与效率", "Output and ratios")
        + rows_table(ratios, equipment, ctx),
        "landscape",
    )


def _baseline_html(r: Json, current: Mapping[str, Kpi], ctx: Ctx) -> str:
    base = r.get("baseline")
    if not base:
        return section(
            "基准期对比", "Baseline comparison", f"<p>{bi('无基准期', 'No baseline')}</p>"
        )
    rows = []
    for k in kpis_of(base.get("kpis") or [], "baseline.kpis"):
        now = current.get(k.id) or Kpi(id=k.id)
        change = current.get(f"{k.id}_change") or Kpi(id=f"{k.id}_change")
        rows.append([
            Td(bi(k.name or k.id, k.name_en)),
            Td(kpi_value(k.value, k.unit), "num"),
            Td(kpi_value(now.value, now.unit), "num"),
            Td(kpi_value(change.value, change.unit), "num"),
            cover_cell(k.coverage, ctx.threshold),
        ])  # fmt: skip
    heads = [bi("指标", "KPI"), bi("基准期", "Baseline"), bi("本期", "This period"),
             bi("变化", "Change"), bi("基准覆盖率", "Baseline coverage")]  # fmt: skip
    return section(
        "基准期对比",
        "Baseline comparison",
        f"<p>{bi('基准期', 'Baseline period')} {esc(period_cell(base))}</p>{grid(heads, rows)}",
    )


def _groups_html(r: Json, kpis: Mapping[str, Kpi]) -> str:
    groups, sites = r.get("groups") or {}, {s.get("id"): s for s in r.get("sites") or []}
    tables = []
    for kind, zh, en in (("site", "厂区", "Site"), ("process", "工序", "Process")):
        members: Mapping[str, Json] = groups.get(kind) or {}
        labels = ("name", "name_en", "key_process")
        ids = list(dict.fromkeys(k for g in members.values() for k in g if k not in labels))
        heads = [bi(zh, en)]
        named_kpis = [kpis.get(i) or Kpi(id=i) for i in ids]
        heads += [bi(k.name or k.id, k.name_en or k.id) for k in named_kpis]
        rows = []
        for gid, g in members.items():
            named = g if "name" in g else sites.get(gid) or {}
            key = " ★关键 key" if g.get("key_process") else ""
            label = f"<b>{esc(gid)}</b> {esc(named.get('name', ''))}{esc(key)}"
            label += f'<span class="en">{esc(named.get("name_en", ""))}</span>'
            rows.append([Td(Raw(label))] + [
                Td(kpi_value(g.get(k.id), k.unit), "num") for k in named_kpis
            ])  # fmt: skip
        tables.append(grid(heads, rows))
    return section("分厂区与分工序", "By site and by process", "".join(tables))


def _quality_html(r: Json, ctx: Ctx) -> str:
    q = r.get("quality") or {}
    # lowest coverage first: a verifier looks for the holes; unknown coverage before all
    tags = sorted(
        q.get("tags") or [],
        key=lambda t: (t.get("coverage") is not None, t.get("coverage") or 0.0),
    )
    gaps_zh, gaps_en = gaps_line(r)
    unknown_note = bi(
        "设备状态未知 (离线、状态未知、无数据, 以及没有任何状态的时间, 如首个数据之前) 的小时数, "
        "即指标所扣除的时间: 可用率的分母不含计划占用内的未知时间, 覆盖率为计划运行内已知时间"
        "的比例。下表的区间只列出前三种状态, 没有任何状态的时间不成区间, 只计入此表。",
        "Hours of unknown machine state (offline, unknown, no data, and time with no state at "
        "all, e.g. before the first sample): the time the KPIs leave out. Availability's "
        "denominator excludes the unknown planned busy time; coverage is the known share of "
        "planned operation. The intervals below list the first three states only: time with "
        "no state at all forms no interval and counts in this table.",
    )
    return section(
        "数据质量",
        "Data quality",
        f"<p><b>{bi('数据缺口', 'Data gaps')}</b> {bi(gaps_zh, gaps_en)}</p>"
        + h3("状态未知时间 (小时)", "Unknown state time by machine (hours)")
        + f"<p>{unknown_note}</p>"
        + rows_table(UNKNOWN, unknown_time(r), ctx, MAX_HTML_ROWS)
        + h3("缺口区间", "Gap intervals: offline, unknown, no data")
        + rows_table(GAPS, q.get("gaps") or [], ctx, MAX_HTML_ROWS)
        + h3("标签覆盖率", "Tag coverage, lowest first")
        + rows_table(TAGS, tags, ctx, MAX_HTML_ROWS)
        + h3("计数器异常", "Counter anomalies")
        + rows_table(ANOMALIES, q.get("counter_anomalies") or [], ctx, MAX_HTML_ROWS),
        "quality",
    )


def _factors_html(r: Json, ctx: Ctx) -> str:
    f = r.get("factors") or {}
    body = ""
    for key, zh, en, columns in (
        ("energy", "能耗折标系数", "Energy conversion coefficients", ENERGY),
        ("emission", "二氧化碳排放因子", "CO2 emission factors", EMISSION),
    ):
        table = f.get(key) or {}
        body += (
            f"<h3>{bi(zh, en)} <code>{esc(table.get('version'))}</code></h3>"
            f"<p>{esc(TITLES_ZH.get(str(table.get('version')), table.get('title')))}"
            f'<span class="en">{esc(table.get("title"))}</span></p>'
            f"{rows_table(columns, table.get('rows') or [], ctx)}"
        )
    return section("折标系数与排放因子", "Coefficients and emission factors", body)


CSS = """
@page { size: A4; margin: 15mm 12mm 16mm; }
@page landscape { size: A4 landscape; margin: 12mm; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
  "PingFang SC", "Microsoft YaHei", "SimSun", sans-serif; font-size: 10pt; color: #111;
  line-height: 1.35; }
h1 { font-size: 18pt; margin: 4pt 0 0; }
h2 { font-size: 13pt; border-bottom: 1.5pt solid #1f3b63; margin: 16pt 0 6pt;
  padding-bottom: 2pt; color: #1f3b63; }
h3 { font-size: 10.5pt; margin: 10pt 0 4pt; }
h2, h3 { break-after: avoid; page-break-after: avoid; }
.subtitle { font-size: 12pt; color: #444; margin: 0 0 8pt; }
.en { color: #555; font-size: 85%; }
td .en, th .en, p .en { display: block; }
h2 .en, h3 .en { display: inline; }
table { border-collapse: collapse; width: 100%; margin: 2pt 0 6pt; }
th, td { border: 0.5pt solid #9aa3ad; padding: 2pt 4pt; vertical-align: top; text-align: left; }
thead th { background: #e8edf3; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
table.meta th { width: 28%; background: #f3f5f8; }
section.landscape table { font-size: 8pt; }
.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.nowrap { white-space: nowrap; }
.c { text-align: center; }
.value { font-weight: bold; }
.low { background: #fde2e2; }
.null, .none, .more { color: #666; font-style: italic; }
.mark { display: inline-block; border: 1.5pt solid; padding: 1pt 6pt; margin-right: 6pt;
  font-weight: bold; }
.partial { color: #b00020; }
tr.ok td:nth-child(2) b { color: #1b6e3a; }
.draft { color: #8a5a00; }
.warn { border-left: 3pt solid #b00020; padding-left: 6pt; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10pt; }
.ident { display: flex; gap: 8pt; align-items: flex-start; }
.ident table.meta { flex: 1; }
figure.qr { flex: none; width: 36mm; margin: 2pt 0 0; text-align: center; font-size: 7pt; }
figure.qr svg { display: block; margin: 0 auto; }
figure.qr .en { display: block; }
figure.qr.none { border: 0.5pt dashed #9aa3ad; padding: 6pt 2pt; color: #666; }
.claim { font-size: 10.5pt; margin: 4pt 0 8pt; }
.gapline, .howto { margin: 5pt 0; }
.gapline .en, .howto .en { display: block; }
table.headline td { padding: 1.5pt 4pt; }
table.headline td .en { display: inline; margin-left: 4pt; }
table.headline td.num .en { display: block; margin-left: 0; }
table.headline td.target { text-align: left; }
/* page one on one A4 page: fixed columns, the English beside the Chinese where it fits */
.page-one h1 { font-size: 16pt; }
.page-one .subtitle { margin: 0 0 4pt; }
.page-one .claim { font-size: 9.5pt; margin: 2pt 0 4pt; }
.page-one table.meta th .en, .page-one table.meta td .en { display: inline; margin-left: 4pt; }
.page-one table.meta th, .page-one table.meta td { padding: 1pt 4pt; }
table.headline { font-size: 8.5pt; table-layout: fixed; }
table.headline td, table.headline th { padding: 1pt 3pt; }
table.headline th:nth-child(1) { width: 38%; }
table.headline th:nth-child(2), table.headline th:nth-child(3) { width: 15%; }
table.headline.targets th:nth-child(1) { width: 31%; }
table.headline.targets th:nth-child(2) { width: 13%; }
table.headline.targets th:nth-child(3) { width: 28%; }
table.headline.targets th:nth-child(4) { width: 8%; }
code.short { font-size: 11pt; font-weight: bold; word-break: normal; white-space: nowrap; }
.figure { font-size: 13pt; }
code { font-family: "DejaVu Sans Mono", Consolas, monospace; font-size: 8.5pt;
  word-break: break-all; }
section.landscape { page: landscape; }
@media screen { body { max-width: 1180px; margin: 16px auto; padding: 0 12px; } }
@media print {
  body { font-size: 9pt; }
  .keep { break-inside: avoid; page-break-inside: avoid; }
  .page-one { break-after: page; page-break-after: always; }
  .page-one h2 { margin-top: 8pt; }
  section.landscape, section.quality { break-before: page; page-break-before: always; }
  thead th, .low { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def render_html(report: Json) -> str:
    """The report as one self-contained HTML page (no scripts, no external resources)."""
    check_format(report)
    period = report.get("period") or {}
    ctx = Ctx(
        zone(period.get("timezone")),
        str(period.get("timezone") or "UTC"),
        (report.get("parameters") or {}).get("coverage_threshold"),
    )
    kpis = kpis_of(report.get("kpis") or [])
    by_id = {k.id: k for k in kpis}
    mark = paper_mark(dict(report))
    # the report id and digest in every page's footer: a CSS string, so only characters
    # safe in one (a page swapped in from another report shows another digest)
    ref = re.sub(r"[^0-9A-Za-z-]", "", str(report.get("report_id") or ""))
    if mark is not None:
        ref += f" · {mark.short_digest}"
    footer = (
        f'@page {{ @bottom-left {{ content: "{ref}"; font: 7pt sans-serif; color: #666; }}'
        ' @bottom-right { content: counter(page) " / " counter(pages); font: 7pt sans-serif; } }'
    )
    body = (
        page_one(report, kpis, ctx, mark)
        + _details_html(report, ctx)
        + _kpis_html(kpis, ctx, isinstance(report.get("attestation"), Mapping))
        + targets_html(report)
        + origin_html(report, ctx)
        + anchoring_html(report, ctx)
        + _nc_html(report, by_id, ctx)
        + _baseline_html(report, by_id, ctx)
        + section(
            "产量与工业增加值",
            "Output and value added",
            rows_table(PRODUCTION, report.get("production") or [], ctx),
        )
        + _meters_html(report, ctx)
        + meter_register_html(report, ctx)
        + changes_html(report, ctx)
        + _equipment_html(report, ctx)
        + _groups_html(report, by_id)
        + _quality_html(report, ctx)
        + _factors_html(report, ctx)
        + green_html(report)
        + ghg_html(report)
        + methods_html(report)
        + declaration_html(report)
        + signature_html(report, mark)
    )
    ent = report.get("enterprise") or {}
    return (
        '<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{esc(TITLE)} · {esc(ent.get('name'))} · {esc(period.get('from'))} 至 "
        f"{esc(period.get('to'))}</title><style>{CSS}{REGISTER_CSS}{footer}</style></head>"
        f"<body>{body}</body></html>\n"
    )
