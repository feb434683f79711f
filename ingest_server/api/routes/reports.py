"""Signed evidence reports: made on request or issued and kept, downloaded, verified; and
the public keys that sign them.

    GET  /api/v1/enterprises/{e}/report?from=D&to=D[&baseline_from=D&baseline_to=D]
         [&coverage_threshold=0.8][&format=json|html|xlsx]   a signed evidence report
    POST /api/v1/enterprises/{e}/reports                      issue, sign and keep a report
    GET  /api/v1/enterprises/{e}/reports                      the issued reports
    GET  /api/v1/reports/{report_id}[?format=json|html|xlsx]  one, as issued
    POST /api/v1/reports/{report_id}/verify                   claimed vs recomputed
    POST /api/v1/reports/verify                               a report file: claimed vs recomputed
    GET  /api/v1/keys                                         the public signing keys

Both verdicts carry the report's `paper` mark (evidence/qr.py: id, report digest, QR text
and the QR as an SVG data URI), so the console shows what the printed copy must show.
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from ingest_server.api.auth import ApiError, Caller, forbidden
from ingest_server.api.deps import Conn, Enterprise, KeyFile, Reading, writing
from ingest_server.api.models import (
    ReportIn,
    ReportIssuedPublic,
    ReportSummaryPublic,
    SigningKeyPublic,
)
from ingest_server.api.params import Day, check_period
from ingest_server.evidence.qr import paper_json
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report
from ingest_server.evidence.verify import parse_report, verdict_json, verify
from ingest_server.kpi.engine import Parameters
from ingest_server.repo import reports as reports_repo
from ingest_server.repo.accounts import Principal

router = APIRouter(prefix="/api/v1", tags=["reports"])

Issuing = Annotated[Enterprise, Depends(writing("issue reports of"))]
Format = Literal["json", "html", "xlsx"]

# POST /reports/verify takes the file's bytes as they are, so the body is read raw; this
# documents it in the OpenAPI schema
_REPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "a report file's JSON, posted as it is (its exact bytes)",
                }
            }
        },
    }
}


def _rendered(doc: dict[str, Any], format: Format) -> Response | dict[str, Any]:
    if format == "html":
        return HTMLResponse(render_html(doc))
    if format == "xlsx":
        buf = io.BytesIO()
        render_xlsx(doc, buf)
        p = doc["period"]
        name = f"report-{doc['enterprise']['id']}-{p['from']}-{p['to']}.xlsx"
        return Response(
            buf.getvalue(),
            media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return doc


@router.get("/enterprises/{enterprise}/report", response_model=None)
def report(  # noqa: PLR0917 (query parameters)
    e: Reading,
    keyfile: KeyFile,
    date_from: Annotated[Day, Query(alias="from")],
    date_to: Annotated[Day, Query(alias="to")],
    baseline_from: Day | None = None,
    baseline_to: Day | None = None,
    coverage_threshold: Annotated[float, Query(gt=0, le=1)] = 0.8,
    heartbeat_s: Annotated[float, Query(gt=0)] = 300.0,
    format: Format = "json",
) -> Response | dict[str, Any]:
    check_period(date_from, date_to, baseline_from, baseline_to)
    req = ReportRequest(
        e.id, date_from, date_to, baseline_from, baseline_to,
        params=Parameters(coverage_threshold=coverage_threshold, heartbeat_s=heartbeat_s),
    )  # fmt: skip
    doc = make_report(e.conn, req, key=keyfile.get(e.conn))
    return _rendered(doc, format)


@router.post("/enterprises/{enterprise}/reports", status_code=201)
def issue_report(e: Issuing, keyfile: KeyFile, body: ReportIn) -> ReportIssuedPublic:
    """Make, sign and keep a report; the console lists it, and it can be downloaded
    and verified later by its id."""
    check_period(body.period_from, body.period_to, body.baseline_from, body.baseline_to)
    req = ReportRequest(
        e.id, body.period_from, body.period_to, body.baseline_from, body.baseline_to,
        params=Parameters(coverage_threshold=body.coverage_threshold),
    )  # fmt: skip
    doc = make_report(e.conn, req, key=keyfile.get(e.conn))
    reports_repo.store_report(e.conn, doc, created_by=e.caller.name)
    return ReportIssuedPublic(id=doc["report_id"], period=doc["period"], kpis=doc["kpis"])


@router.get("/enterprises/{enterprise}/reports", response_model=list[ReportSummaryPublic])
def reports(e: Reading) -> list[dict[str, Any]]:
    return reports_repo.list_reports(e.conn, enterprise=e.id)


def _stored(caller: Principal, conn: psycopg.Connection, report_id: str) -> dict[str, Any]:
    doc = reports_repo.load_report(conn, report_id)
    if doc is None or not caller.may_read(doc["enterprise"]["id"]):
        # the same answer whether it does not exist or is someone else's
        raise ApiError(404, "not_found", f"no report {report_id!r} for this account")
    return doc


@router.get("/reports/{report_id}", response_model=None)
def stored_report(
    caller: Caller, conn: Conn, report_id: str, format: Format = "json"
) -> Response | dict[str, Any]:
    return _rendered(_stored(caller, conn, report_id), format)


@router.post("/reports/{report_id}/verify")
def verify_stored(caller: Caller, conn: Conn, report_id: str) -> dict[str, Any]:
    # with `reasons`: codes the console translates
    doc = _stored(caller, conn, report_id)
    return {**verdict_json(verify(doc, conn=conn)), "paper": paper_json(doc)}


@router.post("/reports/verify", openapi_extra=_REPORT_BODY)
async def verify_report(caller: Caller, conn: Conn, request: Request) -> dict[str, Any]:
    """Verify a report file: the body is the file's bytes, parsed here as they are (a
    re-serialised file verifies too: the signature is over RFC 8785 canonical JSON)."""
    try:
        doc = parse_report(await request.body(), "the posted report")
    except ValueError as exc:
        raise ApiError(422, "invalid_report", str(exc)) from None
    return await run_in_threadpool(_verify_posted, caller, conn, doc)


def _verify_posted(
    caller: Principal, conn: psycopg.Connection, doc: dict[str, Any]
) -> dict[str, Any]:
    ent = doc.get("enterprise")
    enterprise = str(ent.get("id", "")) if isinstance(ent, dict) else ""
    if not caller.may_read(enterprise):
        raise forbidden(caller, enterprise, "verify reports of")
    try:
        v = verify(doc, conn=conn)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # a document that parses but is no report: answered, not a server error
        raise ApiError(
            422, "invalid_report", f"not a report this server can read: {exc!r}"
        ) from None
    # the file's own mark, whatever the verdict: a paper copy is matched to this file
    return {**verdict_json(v), "paper": paper_json(doc)}


@router.get("/keys", response_model=list[SigningKeyPublic])
def keys(_caller: Caller, conn: Conn) -> list[dict[str, Any]]:
    return [
        {
            "key_id": k.key_id,
            "public_key": base64.b64encode(k.public_key).decode(),
            "created_at": k.created_at.isoformat(),
            "retired_at": k.retired_at.isoformat() if k.retired_at else None,
        }
        for k in reports_repo.list_keys(conn)
    ]
