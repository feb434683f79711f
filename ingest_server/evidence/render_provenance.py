"""The report's provenance sections: where its data came from and who vouches for it.

The period's samples by gateway and how many each gateway signed (`attestation`), each
day's anchoring in time (which TSA stamped its Merkle root and when, or why not), the
registry edits declared in the period (the signed `registry_audit` block), and the
report's own signature with the key, digest and the verify command. evidence/render_html.py
puts them among the detail pages; each is empty for a report made before its block.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest_server.evidence.columns import (
    ANCHOR_LABELS,
    ANCHOR_PARTS,
    ANCHORING_NOTE,
    CHANGES,
    CONTRACTS,
    MAX_HTML_ROWS,
    ORIGIN,
    ORIGIN_NOTE,
    Json,
    anchoring_of,
    declared_changes,
    local_time,
    number,
    percent,
    pick,
)
from ingest_server.evidence.markup import (
    Ctx,
    Raw,
    Td,
    attr,
    bi,
    data_cell,
    esc,
    grid,
    head_cell,
    rows_table,
    section,
)
from ingest_server.evidence.qr import PaperMark


def origin_html(r: Json, ctx: Ctx) -> str:
    """The period's samples by gateway and origin, and what the share does and does not
    prove; nothing for a report made before it was recorded."""
    a = r.get("attestation")
    if not isinstance(a, Mapping):
        return ""
    rows = []
    for g in a.get("gateways") or []:
        zh, en = CONTRACTS.get(g.get("contract"), (str(g.get("contract")), ""))
        rows.append([
            Td(Raw(f"<b>{esc(g.get('gateway'))}</b>")), Td(g.get("site")), Td(bi(zh, en)),
            *(data_cell(g, c, ctx) for c in pick(
                ORIGIN, "samples", "attested", "not_attested", "share")),
        ])  # fmt: skip
    heads = [head_cell(c, ctx) for c in ORIGIN]
    total = bi(
        f"合计: {number(a.get('attested'))} / {number(a.get('samples'))} 个样本由网关签名 "
        f"({percent(a.get('share'))})",
        f"In all: {number(a.get('attested'))} of {number(a.get('samples'))} samples "
        f"gateway-signed ({percent(a.get('share'))})",
    )
    zh, en = ORIGIN_NOTE
    return section(
        "数据来源",
        "Data origin",
        f"<p>{bi(zh, en)}</p>{grid(heads, rows)}<p>{total}</p>",
        "keep",
    )


def anchoring_html(r: Json, ctx: Ctx) -> str:
    """Each day of the period (and baseline) with its anchor state: the TSAs that stamped
    its root and when, or their last errors; nothing for a report made before it."""
    block = anchoring_of(r)
    if block is None:
        return ""
    rows = []
    days = [d for d in block.get("days") or [] if isinstance(d, Mapping)]
    # a long period (a year's baseline): every day not anchored, anchored ones counted
    long = len(days) > MAX_HTML_ROWS
    for d in days:
        state = str(d.get("state"))
        if long and state == "anchored":
            continue
        zh, en = ANCHOR_LABELS.get(state, (state, state))
        part_zh, part_en = ANCHOR_PARTS.get(str(d.get("part")), (d.get("part"), ""))
        stamps = "".join(
            f"<div>{esc(t.get('name'))} <span class=\"en\">{esc(t.get('url'))} · "
            f"{esc(local_time(t.get('gen_time'), ctx.tz))}</span></div>"
            for t in d.get("tsas") or [] if isinstance(t, Mapping)
        )  # fmt: skip
        errors = "".join(
            f"<div>{esc(e.get('url'))}<span class=\"en\">{esc(e.get('error'))} · "
            f"{esc(local_time(e.get('attempted_at'), ctx.tz))}</span></div>"
            for e in d.get("errors") or [] if isinstance(e, Mapping)
        )  # fmt: skip
        if state == "not_due":
            errors = (
                esc(bi("可锚定于", "due from")) + " " + esc(local_time(d.get("due_at"), ctx.tz))
            )
        root = d.get("root")
        cls = "ok" if state == "anchored" else ("low" if state in ("pending", "not_anchored")
                                                 and d.get("batches") else "")  # fmt: skip
        cells = [
            f'{esc(d.get("day"))}<span class="en">{esc(part_zh)} {esc(part_en)}</span>',
            f'<b>{esc(zh)}</b><span class="en">{esc(en)}</span>',
            esc(number(d.get("batches"))),
            esc(None)
            if root is None
            else f'<code title="{esc(root)}">{esc(str(root)[:16])}…</code>'
            f'<span class="en">{esc(number(d.get("leaves")))} 叶 leaves</span>',
            stamps or esc(None),
            errors or esc(None),
        ]
        rows.append(
            f'<tr data-anchor-day="{esc(d.get("day"))}" data-anchor-state="{esc(state)}"'
            f"{attr(cls)}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
        )
    heads = [bi("日期", "Day"), bi("状态", "State"), bi("签名批次", "Signed batches"),
             bi("Merkle 根", "Merkle root"),
             bi("时间戳服务与时间", f"TSA and its time ({ctx.tz_name})"),
             bi("失败与原因", "Failed TSAs, last error")]  # fmt: skip
    summary = block.get("summary") or {}
    counts = " · ".join(
        f"{ANCHOR_LABELS[k][0]} {ANCHOR_LABELS[k][1].split(':')[0]} {number(summary.get(k))}"
        for k in ANCHOR_LABELS
    )
    note_zh, note_en = ANCHORING_NOTE
    hidden = sum(d.get("state") == "anchored" for d in days) if long else 0
    if hidden:
        rows.append(
            f'<tr><td colspan="{len(heads)}" class="more">… 另有 {hidden} 个已锚定日期见 JSON 与 '
            f"XLSX / … {hidden} more anchored days in the JSON and the workbook</td></tr>"
        )
    table = (
        "<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return section(
        "时间锚定",
        "Anchoring in time",
        f"<p>{bi(note_zh, note_en)}</p>{table}<p>{esc(counts)}</p>",
        "anchoring",
    )


def changes_html(r: Json, ctx: Ctx) -> str:
    """The declared attribute edits of the period, as the report signs them; "" for a
    report made before its `registry_audit` block."""
    edits = declared_changes(r)
    if edits is None:
        return ""
    note = bi(
        "统计期开始至读取登记表时, 企业对登记信息 (设备属性、厂区、日历、工序、计量表、企业) 的"
        "每一次变更, 含变更人与时间。",
        "Every change of the declared registry (equipment attributes, sites, calendars, "
        "processes, meters, the enterprise) from the period's start until the registry was "
        "read, with who made it and when.",
    )
    return section(
        "期间内的申报变更",
        "Declared changes in the period",
        f"<p>{note}</p>{rows_table(CHANGES, edits, ctx)}",
    )


def signature_html(r: Json, mark: PaperMark | None) -> str:
    sig, digest = r.get("signature") or {}, r.get("digest") or {}
    draft = bi("未签名草稿。不能作为证明。", "Unsigned draft: not evidence until signed.")
    status = "" if sig else f'<p class="warn">{draft}</p>'
    items = [
        ("签名算法", "Algorithm", sig.get("algorithm")),
        ("密钥编号", "Key ID", sig.get("key_id")),
        ("公钥", "Public key (base64)", sig.get("public_key")),
        ("签名值", "Signature (base64)", sig.get("value")),
        ("输入数据摘要算法", "Input-rows digest algorithm", digest.get("algorithm")),
        ("输入数据摘要行数", "Input-rows digest rows", number(digest.get("rows"))),
        ("输入数据摘要值", "Input-rows digest", digest.get("value")),
        ("报告摘要 (SHA-256)", "Report digest (SHA-256)", mark and mark.digest),
        ("二维码内容", "QR code text", mark and mark.qr_text),
    ]
    rows = "".join(
        f"<tr><th>{bi(zh, en)}</th><td><code>{esc(v)}</code></td></tr>" for zh, en, v in items
    )
    verify = (
        "<p>用 <code>ingest-server verify report.json</code> 校验此签名, 并核对密钥编号与企业"
        '登记的公钥一致。<span class="en"><code>ingest-server verify report.json</code> '
        "checks this signature. Compare the key ID with the one the enterprise registered."
        "</span></p>"
        "<p>纸质件与文件的核对: 扫描首页二维码, 或对照首页的报告编号与报告摘要; "
        "<code>ingest-server render report.json --html copy.html</code> "
        "生成的页面显示该文件的编号与摘要, 两者一致即为同一份报告。"
        '<span class="en">To match a paper copy with a file, scan the first page\'s QR code, '
        "or compare the report ID and report digest printed there with those of the page "
        "<code>ingest-server render report.json --html copy.html</code> "
        "makes from the file: equal, they are the same report.</span></p>"
    )
    return section(
        "签名", "Signature", f'{status}<table class="meta">{rows}</table>{verify}', "keep"
    )
