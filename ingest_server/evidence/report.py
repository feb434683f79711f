"""Evidence reports: make one from the derived data, signed.

A report is the engine's output (kpi/engine.py) plus the notices a reader must see first,
a SHA-256 digest over its input rows (the canonical lines of `Inputs.rows()`), a tally of
the raw samples the server held when it made the report (`received`), and an Ed25519
signature over its RFC 8785 canonical form (evidence/canonical.py) by the server's key
(evidence/keys.py). evidence/verify.py checks a report by recomputing it from the raw
samples with the same functions (`fetch_baseline`, `compute_report`, `digest`); the pure
ones (`Request`, `compute_report`, `digest`, `notices`) are in evidence/compute.py.

    fetch inputs (one snapshot) -> compute -> notices, digest, received -> sign
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.evidence.canonical import jcs_problem, sign

# the pure part (no database) is evidence/compute.py; these names stay importable here
from ingest_server.evidence.compute import (
    PARTIAL_BASELINE_NOTICE,
    PARTIAL_NOTICE,
    Request,
    compute_report,
    digest,
    notices,
)
from ingest_server.evidence.keys import register_key
from ingest_server.evidence.received import received_tally
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.period import check_period
from ingest_server.kpi.records import Inputs, ReportError

__all__ = [
    "PARTIAL_BASELINE_NOTICE", "PARTIAL_NOTICE", "Request", "compute_report", "digest",
    "fetch_baseline", "make_report", "notices", "snapshot",
]  # fmt: skip


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
