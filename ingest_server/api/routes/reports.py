"""Signed evidence reports: made on request or issued and kept, downloaded, verified; and
the public keys that sign them.

    GET  /api/v1/enterprises/{e}/report?from=D&to=D[&baseline_from=D&baseline_to=D]
         [&coverage_threshold=0.8][&format=json|html|xlsx]   a signed evidence report
    POST /api/v1/enterprises/{e}/reports                      issue, sign and keep a report
                                                              with its evidence bundle
    GET  /api/v1/enterprises/{e}/reports                      the issued reports, bundles
    GET  /api/v1/reports/{report_id}[?format=json|html|xlsx]  one, as issued
    GET  /api/v1/reports/{report_id}/pdf                      its printed page as PDF
    GET  /api/v1/reports/{report_id}/bundle                   its evidence bundle (zip)
    POST /api/v1/reports/{report_id}/verify                   claimed vs recomputed
    POST /api/v1/reports/verify                               a report file: claimed vs recomputed
    GET  /api/v1/keys                                         the public signing keys

The PDF is the HTML page printed by headless Chromium on this server (evidence/render_pdf.py),
for whoever may read the report as HTML; without a browser the answer is 503
`pdf_unavailable`, its message naming how to install one in Chinese and English.

Both verdicts carry the report's `paper` mark (evidence/qr.py: id, report digest, QR text
and the QR as an SVG data URI), so the console shows what the printed copy must show.

An issued report's bundle (evidence/bundle.py) is built in the report's snapshot and kept
with it (repo/report_bundles.py); when it cannot be built the report is issued all the
same and the list says why. Whoever may read the enterprise's reports (its verifier
included) downloads it; a verifier checks it offline with `ingest-server verify FILE
--trust trust.json`, the trust file from the enrolment visit, never one from this server.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from psycopg_pool import ConnectionPool

from ingest_server.api.auth import ApiError, Caller, forbidden
from ingest_server.api.deps import Conn, Enterprise, KeyFile, Pool, Reading, writing
from ingest_server.api.models import (
    BundleSummaryPublic,
    ReportIn,
    ReportIssuedPublic,
    ReportSummaryPublic,
    SigningKeyPublic,
)
from ingest_server.api.params import Day, check_period
from ingest_server.evidence import bundle
from ingest_server.evidence.qr import paper_json
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_pdf import PdfUnavailableError, render_pdf
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import make_report
from ingest_server.evidence.verify import parse_report, verdict_json, verify
from ingest_server.kpi.engine import Parameters
from ingest_server.repo import report_bundles
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
    # the report, its record and its bundle from one snapshot, committed together
    with bundle.one_snapshot(e.conn):
        doc = make_report(e.conn, req, key=keyfile.get(e.conn))
        reports_repo.store_report(e.conn, doc, created_by=e.caller.name)
        kept = report_bundles.keep(
            e.conn, report_id=doc["report_id"], build=bundle_builder(e.conn, doc)
        )
    return ReportIssuedPublic(
        id=doc["report_id"], period=doc["period"], kpis=doc["kpis"], bundle=_summary(kept)
    )


def bundle_builder(conn: psycopg.Connection, doc: dict[str, Any]) -> Callable[[Path], int]:
    """What report_bundles.keep calls: the signed report's bundle, read from `conn` (in the
    report's snapshot), written at the path it is given; its sample count."""

    def build(path: Path) -> int:
        # report.json: the report's bytes as `ingest-server report --out` writes them
        text = json.dumps(doc, ensure_ascii=False, indent=1) + "\n"
        made = bundle.collect(conn, doc, text.encode())
        bundle.write(path, made)
        return made.samples

    return build


_NO_BUNDLE = (
    "issued without its evidence bundle (before bundles were kept with reports, or by "
    "`report --no-bundle`)"
)
_NO_BUNDLE_ZH = "签发时未附证据包 (签发于证据包随报告保存之前, 或签发时用了 report --no-bundle)"


def _summary(b: report_bundles.StoredBundle | None) -> BundleSummaryPublic:
    if b is None:
        return BundleSummaryPublic(present=False, error=_NO_BUNDLE, error_code="not_kept")
    if b.sha256 is None:
        if b.error:
            return BundleSummaryPublic(present=False, error=b.error, error_code="build_failed")
        return BundleSummaryPublic(present=False, error="not built", error_code="not_built")
    return BundleSummaryPublic(present=True, bytes=b.bytes, sha256=b.sha256, samples=b.samples)


@router.get("/enterprises/{enterprise}/reports", response_model=list[ReportSummaryPublic])
def reports(e: Reading) -> list[dict[str, Any]]:
    kept = report_bundles.summaries(e.conn, enterprise=e.id)
    return [
        {**r, "bundle": _summary(kept.get(r["id"]))}
        for r in reports_repo.list_reports(e.conn, enterprise=e.id)
    ]


def _stored(caller: Principal, conn: psycopg.Connection, report_id: str) -> dict[str, Any]:
    doc = reports_repo.load_report(conn, report_id)
    if doc is None or not caller.may_read(doc["enterprise"]["id"]):
        # the same answer whether it does not exist or is someone else's
        raise _not_found(report_id)
    return doc


def _not_found(report_id: str) -> ApiError:
    return ApiError(
        404, "not_found", f"no report {report_id!r} for this account",
        f"没有当前账号可查看的报告 {report_id!r} (编号有误, 或报告属于其他企业)",
    )  # fmt: skip


@router.get("/reports/{report_id}", response_model=None)
def stored_report(
    caller: Caller, conn: Conn, report_id: str, format: Format = "json"
) -> Response | dict[str, Any]:
    return _rendered(_stored(caller, conn, report_id), format)


_PDF_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the printed report, fonts embedded",
    },
    503: {"description": "no browser on the server to print with (pdf_unavailable)"},
}


class _Printed:
    """The PDFs printed lately, by report id and signature (an issued report never changes:
    its PDF is printed once, not at each download), and a bound on the browsers printing at
    once: each headless Chromium takes a few hundred MB, and a server on a small machine
    must not start one per request of a burst (the others wait their turn)."""

    KEEP = 8  # about 2 MB each
    AT_ONCE = 2

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pdfs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._printing = threading.BoundedSemaphore(self.AT_ONCE)

    def get(self, doc: dict[str, Any]) -> bytes:
        key = (str(doc["report_id"]), str((doc.get("signature") or {}).get("value")))
        with self._lock:
            if key in self._pdfs:
                self._pdfs.move_to_end(key)
                return self._pdfs[key]
        with self._printing:
            pdf = render_pdf(doc)
        with self._lock:
            self._pdfs[key] = pdf
            while len(self._pdfs) > self.KEEP:
                self._pdfs.popitem(last=False)
        return pdf


PRINTED = _Printed()


@router.get("/reports/{report_id}/pdf", response_class=Response, responses=_PDF_ANSWER)
def report_pdf(caller: Caller, pool: Pool, report_id: str) -> Response:
    """An issued report's printed page as a PDF, for whoever may read it as HTML. The
    browser takes seconds: the database connection is given back before it starts, and a
    report printed lately is not printed again (`_Printed`)."""
    with pool.connection() as conn:
        doc = _stored(caller, conn, report_id)
    try:
        pdf = PRINTED.get(doc)
    except PdfUnavailableError as exc:
        # its message is bilingual, "中文 / English": the Chinese half is the twin
        raise ApiError(503, "pdf_unavailable", str(exc), str(exc).split(" / ", 1)[0]) from None
    p = doc["period"]
    name = f"report-{doc['enterprise']['id']}-{p['from']}-{p['to']}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


_ZIP_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "the bundle zip; its SHA-256 in X-Content-SHA256",
        "headers": {"X-Content-SHA256": {"schema": {"type": "string"}}},
    }
}


@router.get("/reports/{report_id}/bundle", response_class=Response, responses=_ZIP_ANSWER)
def report_bundle(caller: Caller, pool: Pool, report_id: str) -> Response:
    """The evidence bundle kept with an issued report, as a zip, for whoever may read the
    enterprise's reports (its verifier included). 404, the same answer, for an unknown id
    and another enterprise's report; 404 naming the reason when the bundle was not built."""
    with pool.connection() as conn:
        b = report_bundles.stored(conn, report_id)
        if b is None:
            _stored(caller, conn, report_id)  # unknown or someone else's: 404 not_found
            raise ApiError(
                404, "bundle_unavailable", f"report {report_id}: {_NO_BUNDLE}",
                f"报告 {report_id}: {_NO_BUNDLE_ZH}",
            )  # fmt: skip
        if not caller.may_read(b.enterprise):
            raise _not_found(report_id)  # the same answer as for an unknown id
    if b.sha256 is None or b.chunks is None:
        raise ApiError(
            404, "bundle_unavailable", f"report {report_id}: its bundle could not be built: "
            f"{b.error}",
            f"报告 {report_id} 的证据包未能生成, 原因 (服务器原文): {b.error}",
        )  # fmt: skip
    return StreamingResponse(
        _pieces(pool, b.report_id, b.chunks),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="bundle-{b.report_id}.zip"',
            "Content-Length": str(b.bytes),
            "Cache-Control": "no-store",
            "X-Content-SHA256": b.sha256,
        },
    )


def _pieces(pool: ConnectionPool, report_id: str, count: int) -> Iterator[bytes]:
    # a connection of its own, held while the answer is sent: the route's is back already
    with pool.connection() as conn:
        yield from report_bundles.chunks(conn, report_id=report_id, count=count)


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
        raise ApiError(
            422, "invalid_report", str(exc),
            f"所提交的文件不是可读取的报告 JSON, 请提交签发时下载的报告文件 (原文: {exc})",
        ) from None  # fmt: skip
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
            422, "invalid_report", f"not a report this server can read: {exc!r}",
            f"文件可以解析, 但不是本服务器能读取的报告, 请提交签发时下载的报告文件 "
            f"(原文: {exc!r})",
        ) from None  # fmt: skip
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
