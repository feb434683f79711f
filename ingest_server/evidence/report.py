"""Evidence reports: make one from the derived data, signed.

A report is the engine's output (kpi/engine.py) plus the notices a reader must see first,
a SHA-256 digest over its input rows (the canonical lines of `Inputs.rows()`), a tally of
the raw samples the server held when it made the report (`received`), and an Ed25519
signature over its RFC 8785 canonical form (evidence/canonical.py) by the server's key
(evidence/keys.py). evidence/verify.py checks a report by recomputing it from the raw
samples with the same functions (`fetch_baseline`, `compute_report`, `digest`).

    fetch inputs (one snapshot) -> compute -> notices, digest, received -> sign
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.evidence.canonical import jcs_problem, sign
from ingest_server.evidence.keys import register_key
from ingest_server.evidence.received import received_tally
from ingest_server.kpi.engine import Parameters, compute
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.period import check_period
from ingest_server.kpi.plant import local_period
from ingest_server.kpi.records import Inputs, ReportError
from ingest_server.reference.factors import EmissionTable, EnergyTable, emission_table, energy_table


@contextlib.contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """Read everything from one snapshot (REPEATABLE READ, read only), so samples arriving
    meanwhile cannot make the intervals disagree with the counters. Inside a transaction
    the caller opened, that transaction's own snapshot rules apply."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


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


def make_report(
    conn: psycopg.Connection,
    req: Request,
    *,
    key: Ed25519PrivateKey | None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """The signed report (unsigned when key is None) from the derived data."""
    as_of = (as_of or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    with snapshot(conn):
        inputs = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s,
        )  # fmt: skip
        baseline = fetch_baseline(conn, req, as_of, raw=False)
        # only for a signed report (a scan of the period's raw samples): a draft is never
        # verified, and the dashboards' unsigned reports stay as quick as they were
        received = None if key is None else received_tally(conn, inputs)
    doc = compute_report(inputs, baseline, req, as_of)
    doc["notices"] = notices(doc)
    rows, value = digest(inputs, baseline)
    doc["digest"] = {"algorithm": "sha256", "rows": rows, "value": value}
    if received is not None:
        doc["received"] = received
    problem = jcs_problem(doc)
    if problem is not None:
        raise ReportError(f"the report cannot be issued: {problem}")
    if key is not None:
        register_key(conn, key.public_key())
        sign(doc, key)
    return doc


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


def notices(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before trusting the figures, in Chinese and English."""
    out = []
    if (doc.get("period") or {}).get("partial"):
        zh, en = PARTIAL_NOTICE
        out.append({"code": "partial_period", "text": zh, "text_en": en})
    if (doc.get("baseline") or {}).get("partial"):
        zh, en = PARTIAL_BASELINE_NOTICE
        out.append({"code": "partial_baseline", "text": zh, "text_en": en})
    return out


def fetch_baseline(
    conn: psycopg.Connection, req: Request, as_of: dt.datetime, *, raw: bool
) -> Inputs | None:
    if req.baseline_from is None or req.baseline_to is None:
        return None
    check_period(req.date_from, req.date_to, req.baseline_from, req.baseline_to)
    return fetch_inputs(
        conn, req.enterprise, req.baseline_from, req.baseline_to, as_of,
        heartbeat_s=req.params.heartbeat_s, raw=raw,
    )  # fmt: skip


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
