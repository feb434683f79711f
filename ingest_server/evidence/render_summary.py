"""Page one of the printed report: the summary a reader takes in at once.

The claim (who, which period, what), the report's identity (id, digest and a QR code of
both with the signature: evidence/qr.py), each headline figure with its coverage, its
target (evidence/render_targets.py) and its change against the baseline, the data gaps in
one line (evidence/columns.py `gaps_line`), and how to verify. evidence/render_html.py
puts it first and the detail after it, from page two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ingest_server.evidence.columns import (
    TITLE,
    TITLE_EN,
    Json,
    gaps_line,
    kpi_value,
    kpis_of,
    notices_of,
)
from ingest_server.evidence.markup import Ctx, Raw, Td, bi, cover_cell, esc, grid
from ingest_server.evidence.qr import PaperMark, qr_svg
from ingest_server.evidence.render_targets import result_texts, target_text
from ingest_server.evidence.targets import results_of
from ingest_server.kpi.results import Kpi

PARTIAL = '<span class="mark partial">未完结 / partial</span>'
# The figures the programmes ask for (the console's cards, in their order): page one shows
# these, and any other figure a target is held against; every figure, these included, is
# in the KPI section from page two. A page one that listed all of them (MTBF, MTTR, each
# carrier's consumption...) ran onto a second page for a plant with meters of each kind.
HEADLINE = (
    "nc_rate_declared", "nc_rate_measured", "networking_rate", "oee", "availability",
    "effectiveness", "quality_ratio", "energy_tce", "energy_per_unit", "energy_per_value_added",
    "water_per_unit", "water_per_value_added", "carbon_tco2", "carbon_per_value_added",
)  # fmt: skip


def period_cell(p: Json) -> Raw:
    partial = f" {PARTIAL}" if p.get("partial") else ""
    return Raw(
        f"{esc(p.get('from'))} 至 {esc(p.get('to'))} ({esc(p.get('timezone'))}){partial}"
        f'<span class="en">UTC [{esc(p.get("start"))}, {esc(p.get("end"))})</span>'
    )


def _digest_cell(mark: PaperMark | None) -> Raw:
    if mark is None:
        return Raw(bi("无法计算", "cannot be computed: the signed content cannot be reproduced"))
    return Raw(
        f'<code class="short">{esc(mark.short_digest)}</code><span class="en">'
        "SHA-256 签名内容 (RFC 8785) 前 16 位 / of the signed content, first 16 hex digits"
        "</span>"
    )


def _qr_html(r: Json, mark: PaperMark | None) -> str:
    """The code on the first page, beside the id and digest it holds; a draft has none
    (nothing signed to match)."""
    if mark is None or mark.qr_text is None:
        why = (
            bi("无二维码: 未签名草稿", "no QR code: unsigned draft")
            if not r.get("signature")
            else bi(
                "无二维码: 编号或签名无法编码", "no QR code: the id or signature cannot be encoded"
            )
        )
        return f'<figure class="qr none">{why}</figure>'
    caption = bi("扫码核对纸质件与签名文件", "scan to match this copy with its signed file")
    return f'<figure class="qr">{qr_svg(mark.qr_text)}<figcaption>{caption}</figcaption></figure>'


def _claim(r: Json) -> Raw:
    ent, period = r.get("enterprise") or {}, r.get("period") or {}
    signed = bool(r.get("signature"))
    sign_en = ", and signs this report" if signed else "; this draft is unsigned: no evidence yet"
    return bi(
        f"{ent.get('name') or ent.get('id')} 声明: 下列指标是其设备与计量表在统计期 "
        f"{period.get('from')} 至 {period.get('to')} 的实测结果, 按本报告所列的数据、公式与"
        f"系数计算{', 本报告经签名' if signed else '; 本稿未签名, 尚不构成证明'}。",
        f"{ent.get('name_en') or ent.get('name') or ent.get('id')} states that the figures "
        f"below were measured from its machines and meters from {period.get('from')} to "
        f"{period.get('to')}, computed from the data, formulas and factors this report "
        f"lists{sign_en}.",
    )  # fmt: skip


def target_of(k: Kpi, r: Json) -> str:
    """The programme targets a headline figure is held against and how it fares, one a
    line, Chinese then English ("> 75 % (2027-12-31) 未达到 (-5.0 个百分点)" over "not met
    (-5.0 pp)", evidence/render_targets.py); "" when the report states none for it. Page
    one shows a target column once any figure has one; the targets section names each
    one's programme and source."""
    held = []
    for t in results_of(r.get("targets")):
        if t.kpi == k.id:
            zh, en = result_texts(t)
            held.append(bi(f"{target_text(t)} {zh}", en))
    return "<br>".join(held)


def _change_cell(k: Kpi, by_id: Mapping[str, Kpi], base: Mapping[str, Kpi]) -> Td:
    change = by_id.get(f"{k.id}_change")
    if change is None:
        return Td(None, "num null")
    was = base.get(k.id)
    before = "" if was is None else f"基期 baseline {kpi_value(was.value, was.unit)}"
    return Td(
        Raw(f'{esc(kpi_value(change.value, change.unit))}<span class="en">{esc(before)}</span>'),
        "num",
    )


def _headline_html(r: Json, kpis: Sequence[Kpi], ctx: Ctx) -> str:
    """Each headline figure with its coverage and its change against the baseline."""
    by_id = {k.id: k for k in kpis}
    base = {k.id: k for k in kpis_of((r.get("baseline") or {}).get("kpis") or [], "baseline")}
    held = {t.kpi for t in results_of(r.get("targets"))}
    figures = [k for k in kpis if not k.id.endswith("_change")]
    order = {kid: i for i, kid in enumerate(HEADLINE)}
    shown = sorted((k for k in figures if k.id in order or k.id in held),
                   key=lambda k: order.get(k.id, len(order)))  # fmt: skip
    targets = [target_of(k, r) for k in shown]
    rows = [
        [Td(bi(k.name or k.id, k.name_en)),
         Td(kpi_value(k.value, k.unit), "num value" if k.value is not None else "num null"),
         *([Td(Raw(t), "target")] if any(targets) else []),
         cover_cell(k.coverage, ctx.threshold), _change_cell(k, by_id, base)]
        for k, t in zip(shown, targets, strict=True)
    ]  # fmt: skip
    heads = [bi("指标", "KPI"), bi("数值", "Value"),
             *([bi("目标", "Target")] if any(targets) else []),
             bi("数据覆盖率", "Coverage"), bi("较基期", "Change vs baseline")]  # fmt: skip
    cls = "headline targets" if any(targets) else "headline"
    more = len(figures) - len(shown)
    rest = bi(
        f"其余 {more} 项指标见第 2 页起的“关键指标”一节。",
        f"{more} more figures are in the KPI section from page two.",
    )
    rest = Raw(f'<p class="more">{rest}</p>' if more else "")
    return f"<h2>{bi('主要指标', 'Headline figures')}</h2>{grid(heads, rows, cls=cls)}{rest}"


def page_one(r: Json, kpis: Sequence[Kpi], ctx: Ctx, mark: PaperMark | None) -> str:
    """The summary: claim, identity (id, digest, QR), headline figures, gaps, how to
    verify; the detail starts on the next printed page."""
    ent, period = r.get("enterprise") or {}, r.get("period") or {}
    marks = PARTIAL if period.get("partial") else ""
    if not r.get("signature"):
        marks += '<span class="mark draft">未签名草稿 / unsigned draft</span>'
    notices = "".join(
        f'<p class="warn" data-notice="{esc(zh_en[0])}">{esc(zh_en[1])}'
        f'<span class="en">{esc(zh_en[2])}</span></p>'
        for zh_en in notices_of(r)
    )
    meta = [
        ("企业名称", "Enterprise", bi(ent.get("name"), ent.get("name_en"))),
        ("统一社会信用代码", "Unified social credit code", ent.get("credit_code")),
        ("统计期", "Period", period_cell(period)),
        ("报告编号", "Report ID", Raw(f"<code>{esc(r.get('report_id'))}</code>")),
        ("报告摘要", "Report digest", _digest_cell(mark)),
    ]
    rows = "".join(f"<tr><th>{bi(zh, en)}</th><td>{esc(v)}</td></tr>" for zh, en, v in meta)
    gaps_zh, gaps_en = gaps_line(r)
    verify = bi(
        "扫描二维码, 或核对报告编号与报告摘要; 签名由 ingest-server verify report.json 校验, "
        "证据包由 ingest-server verify bundle.zip --trust trust.json 离线复算 (签名与密钥见末节)。",
        "Scan the QR code, or compare the report ID and digest; ingest-server verify "
        "report.json checks the signature, ingest-server verify bundle.zip --trust "
        "trust.json recomputes the figures offline (signature and key: last section).",
    )
    return (
        f'<div class="page-one"><header class="title"><div class="marks">{marks}</div>'
        f'<h1>{esc(TITLE)}</h1><p class="subtitle">{esc(TITLE_EN)}</p>{notices}</header>'
        f'<p class="claim">{_claim(r)}</p>'
        f'<div class="ident"><table class="meta">{rows}</table>{_qr_html(r, mark)}</div>'
        f"{_headline_html(r, kpis, ctx)}"
        f'<p class="gapline" data-gaps="{esc(gaps_en)}"><b class="label">数据缺口 Data gaps:</b> '
        f"{bi(gaps_zh, gaps_en)}</p>"
        f'<p class="howto"><b class="label">核验方法 How to verify:</b> {verify}</p></div>'
    )
