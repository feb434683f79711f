"""A report's figures from its inputs, pure: what `make_report` computes after fetching and
what a verifier recomputes, with no database (the offline verifier imports this module on
a laptop with only the `verify` extra). evidence/report.py fetches and signs around it.

    Request + Inputs (+ baseline) --compute_report--> the report's figures
    Inputs --digest--> the input digest a report signs; notices: what a reader sees first
    (a partial period or baseline, days whose signed batches hold no time-stamp token)
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ingest_server.kpi.edges import local_period
from ingest_server.kpi.engine import Parameters, compute
from ingest_server.kpi.records import Inputs
from ingest_server.reference.factors import EmissionTable, EnergyTable, emission_table, energy_table


@dataclass(frozen=True, slots=True)
class Request:
    enterprise: str
    date_from: dt.date
    date_to: dt.date
    baseline_from: dt.date | None = None
    baseline_to: dt.date | None = None
    energy_version: str | None = None
    emission_version: str | None = None
    params: Parameters = field(default_factory=Parameters)


PARTIAL_NOTICE = (
    "统计期在报告生成时尚未结束。数值只含截至生成时刻 (as_of) 已收到的数据。之后到达的数据, "
    "包括此前采集、此后才送达的数据, 会改变数值, 本报告届时将不能通过验证。"
    "请在统计期结束、数据全部到达后重新生成。",
    "The period had not ended when this report was made: the figures cover only the data "
    "received up to then (as_of). Data arriving later, including data measured before then "
    "but delivered after, will change the figures, and this report will then fail "
    "verification. Issue it again once the period is over and its data are in.",
)
PARTIAL_BASELINE_NOTICE = (
    "基期在报告生成时尚未结束。基期数值与较基期的变化会随之后到达的数据改变。",
    "The baseline period had not ended when this report was made: its figures and the "
    "changes against it will move as later data arrive.",
)


UNANCHORED_NOTICE = (
    "以下日期的网关签名批次尚未取得可信时间戳 (RFC 3161): {zh}。签名证明数据由谁发出, "
    "时间戳才证明数据在何时已经存在。服务器会向时间戳服务重试 (`ingest-server run --tsa` "
    "每小时一次, 或 `ingest-server anchor --pending`; 早于最近已锚定日期的日期用 "
    "`anchor --day`)。锚定完成后请重新生成报告。",
    "The gateway-signed batches of these days hold no time-stamp token yet (RFC 3161): "
    "{en}. A signature proves who sent the data; only a time-stamp proves when it "
    "existed. The server retries the time-stamping authority (`ingest-server run --tsa` "
    "every hour, or `ingest-server anchor --pending`; a day older than the latest "
    "anchored one with `anchor --day`). Issue the report again once they are anchored.",
)
_LISTED_DAYS = 10  # in the notice; every day is in the `anchoring` block
_UNANCHORED_STATES = {"pending": ("待重试", "pending"), "not_anchored": ("未锚定", "not anchored")}


def notices(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before trusting the figures, in Chinese and English."""
    out = []
    if (doc.get("period") or {}).get("partial"):
        zh, en = PARTIAL_NOTICE
        out.append({"code": "partial_period", "text": zh, "text_en": en})
    if (doc.get("baseline") or {}).get("partial"):
        zh, en = PARTIAL_BASELINE_NOTICE
        out.append({"code": "partial_baseline", "text": zh, "text_en": en})
    unanchored = unanchored_days(doc)
    if unanchored:
        zh_days, en_days = [], []
        for d in unanchored[:_LISTED_DAYS]:
            zh_state, en_state = _UNANCHORED_STATES[d["state"]]
            base = d.get("part") == "baseline"
            zh_days.append(f"{d['day']} {zh_state}" + (" (基期)" if base else ""))
            en_days.append(f"{d['day']} {en_state}" + (" (baseline)" if base else ""))
        if len(unanchored) > _LISTED_DAYS:
            more = len(unanchored) - _LISTED_DAYS
            zh_days.append(f"另有 {more} 天 (见报告的时间锚定部分)")
            en_days.append(f"and {more} more days (see the report's anchoring section)")
        zh, en = UNANCHORED_NOTICE
        out.append({"code": "unanchored_days", "text": zh.format(zh="、".join(zh_days)),
                    "text_en": en.format(en=", ".join(en_days))})  # fmt: skip
    return out


def unanchored_days(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The days of a report's `anchoring` block with signed batches and no token: pending
    (every TSA failed) or not anchored. A day without a v2 batch has nothing to anchor;
    a day not over yet is not due."""
    block = doc.get("anchoring")
    days = block.get("days") if isinstance(block, dict) else None
    return [
        d
        for d in (days if isinstance(days, list) else [])
        if isinstance(d, dict)
        and (d.get("state") == "pending" or (d.get("state") == "not_anchored" and d.get("batches")))
    ]


def compute_report(
    inputs: Inputs,
    baseline: Inputs | None,
    req: Request,
    as_of: dt.datetime,
    *,
    report_id: str | None = None,
    energy: EnergyTable | None = None,
    emission: EmissionTable | None = None,
) -> dict[str, Any]:
    partial = any(
        local_period(req.date_from, req.date_to, s.timezone, as_of)[2] for s in inputs.sites
    )
    base_partial = baseline is not None and any(
        local_period(baseline.date_from, baseline.date_to, s.timezone, as_of)[2]
        for s in baseline.sites
    )
    return compute(
        inputs,
        params=req.params,
        energy=energy or energy_table(req.energy_version),
        emission=emission or emission_table(req.emission_version),
        partial=partial,
        baseline=baseline,
        baseline_partial=base_partial,
        report_id=report_id,
        generated_at=as_of,
    )


def digest(inputs: Inputs, baseline: Inputs | None) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for part in (inputs, baseline):
        if part is None:
            continue
        for line in part.rows():
            h.update(line.encode())
            h.update(b"\n")
            n += 1
    return n, h.hexdigest()
