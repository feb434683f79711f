"""The HTTP API of the evidence side (FastAPI; OpenAPI at /docs).

    ingest-server api [--dsn DSN | --data-dir DIR] [--listen 127.0.0.1:8080]

    GET  /api/v1/enterprises/{id}/report?from=D&to=D[&baseline_from=D&baseline_to=D]
         [&coverage_threshold=0.8][&format=json|html|xlsx]   a signed evidence report
    POST /api/v1/reports/verify                               claimed vs recomputed
    GET  /api/v1/keys                                         the public signing keys
    GET  /api/v1/enterprises/{id}/production                  output / value added entries
    POST /api/v1/enterprises/{id}/production                  enter one
    POST /api/v1/enterprises/{id}/reports                     issue, sign and keep a report
    GET  /api/v1/enterprises/{id}/reports                     the issued reports
    GET  /api/v1/reports/{report_id}[?format=json|html|xlsx]  one, as issued
    POST /api/v1/reports/{report_id}/verify                   claimed vs recomputed
    POST /api/v1/login                                        {name, password} -> a session token
    POST /api/v1/logout                                       revoke the token of the request
    ... and the data views of ingest_server/api/data.py (registry, live states,
    timelines, series, gateways, dead letters, KPIs, factors, audited edits)

Every endpoint but /login needs `Authorization: Bearer <token>` (`ingest-server accounts
token`, or a console login):
401 without a valid one, 403 when the account's role or enterprises do not allow the
request (ingest_server/repo/accounts.py). Errors are JSON `{"error": {"code": ..., "message":
...}}`; invalid parameters are 422 with the field named (dates: 1970-01-01 .. 2999-12-31,
ingest_server/api/data.py). Every answer under /api/ carries `Cache-Control: no-store`.
Listens on 127.0.0.1 by default.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from psycopg_pool import ConnectionPool
from pydantic import BaseModel, Field

from ingest_server import __version__, console
from ingest_server.api.auth import ApiError, Caller, forbidden
from ingest_server.api.data import Day, check_period
from ingest_server.api.data import router as data_router
from ingest_server.api.ratelimit import LoginLimiter, TooManyAttemptsError
from ingest_server.errors import NotFoundError
from ingest_server.evidence.render import render_html, render_xlsx
from ingest_server.evidence.report import Request as ReportRequest
from ingest_server.evidence.report import (
    SigningKeyFile,
    Verdict,
    list_reports,
    load_report,
    make_report,
    parse_report,
    register_key,
    store_report,
    verdict_json,
    verify,
)
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.inputs import ReportError
from ingest_server.repo.accounts import authenticate, login, revoke_token

log = logging.getLogger(__name__)


class ProductionIn(BaseModel):
    site: str | None = None
    period_from: Day = Field(alias="from")
    period_to: Day = Field(alias="to")
    output: float | None = Field(default=None, ge=0)
    output_unit: str = "件"
    value_added_10k_cny: float | None = Field(default=None, gt=0)
    note: str = ""
    entered_by: str = ""


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class ReportIn(BaseModel):
    period_from: Day = Field(alias="from")
    period_to: Day = Field(alias="to")
    baseline_from: Day | None = None
    baseline_to: Day | None = None
    coverage_threshold: float = Field(default=0.8, gt=0, le=1)


class LoginIn(BaseModel):
    name: str
    password: str = Field(repr=False)


def _verdict(v: Verdict) -> dict[str, Any]:
    return verdict_json(v)  # with `reasons`: codes the console translates


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


def _rendered(doc: dict[str, Any], format: str) -> Response | dict[str, Any]:
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


def create_app(dsn: str, *, signing_key: Path) -> FastAPI:  # noqa: PLR0915 (the routes)
    pool = ConnectionPool(dsn, min_size=1, max_size=4, open=False)
    keyfile = SigningKeyFile(signing_key)  # re-read when `keys rotate` replaces it

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True, timeout=30)
        with pool.connection() as conn:
            register_key(conn, keyfile.get().public_key())
        try:
            yield
        finally:
            pool.close()

    app = FastAPI(
        title="factory-evidence",
        version=__version__,
        description="Measured smart-factory and green-factory KPIs with verifiable evidence",
        lifespan=lifespan,
    )

    app.state.pool = pool
    app.include_router(data_router)
    console.mount(app)

    @app.middleware("http")
    async def _no_store(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # every API answer (data, tokens from /login, errors) is the caller's alone: no
        # browser or proxy keeps a copy. The console's files hold no data and may be
        # cached (index.html is revalidated: ingest_server/console)
        response = await call_next(request)
        if request.url.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(ApiError)
    def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse(
            {"error": {"code": exc.code, "message": exc.message}},
            status_code=exc.status,
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body"))
            parts.append(f"{where}: {str(e.get('msg')).removeprefix('Value error, ')}")
        return _error(422, "invalid_parameter", "; ".join(parts))

    @app.exception_handler(ReportError)
    def _bad_report(_req: Request, exc: ReportError) -> JSONResponse:
        return _error(404 if isinstance(exc, NotFoundError) else 422, "report_error", str(exc))

    @app.exception_handler(psycopg.DataError)
    def _bad_value(_req: Request, exc: psycopg.DataError) -> JSONResponse:
        # e.g. a NUL character in a path or a name: PostgreSQL text cannot hold it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid value"
        return _error(422, "invalid_parameter", f"a value the database cannot take: {first}")

    @app.exception_handler(psycopg.OperationalError)
    def _db_down(_req: Request, exc: psycopg.OperationalError) -> JSONResponse:
        return _error(503, "database_unavailable", "the database cannot be reached; retry later")

    @app.get("/api/v1/enterprises/{enterprise}/report", response_model=None)
    def report(  # noqa: PLR0917 (query parameters)
        caller: Caller,
        enterprise: str,
        date_from: Annotated[Day, Query(alias="from")],
        date_to: Annotated[Day, Query(alias="to")],
        baseline_from: Day | None = None,
        baseline_to: Day | None = None,
        coverage_threshold: Annotated[float, Query(gt=0, le=1)] = 0.8,
        heartbeat_s: Annotated[float, Query(gt=0)] = 300.0,
        format: Literal["json", "html", "xlsx"] = "json",
    ) -> Response | dict[str, Any]:
        if not caller.may_read(enterprise):
            raise forbidden(caller, enterprise, "read")
        check_period(date_from, date_to, baseline_from, baseline_to)
        req = ReportRequest(
            enterprise, date_from, date_to, baseline_from, baseline_to,
            params=Parameters(coverage_threshold=coverage_threshold, heartbeat_s=heartbeat_s),
        )  # fmt: skip
        with pool.connection() as conn:
            doc = make_report(conn, req, key=keyfile.get(conn))
        return _rendered(doc, format)

    @app.post("/api/v1/enterprises/{enterprise}/reports", status_code=201)
    def issue_report(caller: Caller, enterprise: str, body: ReportIn) -> dict[str, Any]:
        """Make, sign and keep a report; the console lists it, and it can be downloaded
        and verified later by its id."""
        if not caller.may_write(enterprise):
            raise forbidden(caller, enterprise, "issue reports of")
        check_period(body.period_from, body.period_to, body.baseline_from, body.baseline_to)
        req = ReportRequest(
            enterprise, body.period_from, body.period_to, body.baseline_from, body.baseline_to,
            params=Parameters(coverage_threshold=body.coverage_threshold),
        )  # fmt: skip
        with pool.connection() as conn:
            doc = make_report(conn, req, key=keyfile.get(conn))
            store_report(conn, doc, caller.name)
        return {"id": doc["report_id"], "period": doc["period"], "kpis": doc["kpis"]}

    @app.get("/api/v1/enterprises/{enterprise}/reports")
    def reports(caller: Caller, enterprise: str) -> list[dict[str, Any]]:
        if not caller.may_read(enterprise):
            raise forbidden(caller, enterprise, "read")
        with pool.connection() as conn:
            return list_reports(conn, enterprise)

    def _stored(caller: Caller, report_id: str) -> dict[str, Any]:
        with pool.connection() as conn:
            doc = load_report(conn, report_id)
        if doc is None or not caller.may_read(doc["enterprise"]["id"]):
            # the same answer whether it does not exist or is someone else's
            raise ApiError(404, "not_found", f"no report {report_id!r} for this account")
        return doc

    @app.get("/api/v1/reports/{report_id}", response_model=None)
    def stored_report(
        caller: Caller, report_id: str, format: Literal["json", "html", "xlsx"] = "json"
    ) -> Response | dict[str, Any]:
        return _rendered(_stored(caller, report_id), format)

    @app.post("/api/v1/reports/{report_id}/verify")
    def verify_stored(caller: Caller, report_id: str) -> dict[str, Any]:
        doc = _stored(caller, report_id)
        with pool.connection() as conn:
            return _verdict(verify(doc, conn=conn))

    # failed logins per name and per address (ingest_server/api/ratelimit.py); per process
    app.state.login_limiter = LoginLimiter()

    @app.post("/api/v1/login", responses={429: {"description": "too many failed logins"}})
    def login_(request: Request, body: LoginIn) -> dict[str, Any]:
        """A console session: a token that expires, for a right name and password. After
        5 failures for a name (20 from an address) in 5 minutes: 429 for 5 minutes,
        without the password being checked."""
        limiter: LoginLimiter = request.app.state.login_limiter
        ip = request.client.host if request.client else "unknown"
        try:
            attempt = limiter.attempt(body.name, ip)
        except TooManyAttemptsError as exc:
            return JSONResponse(  # type: ignore[return-value]
                {"error": {"code": "too_many_attempts", "message": str(exc)}},
                status_code=429,
                headers={"Retry-After": str(exc.retry_after)},
            )
        with attempt:
            with pool.connection() as conn:
                got = login(conn, body.name, body.password)
                p = None if got is None else authenticate(conn, got[0])
            if got is None or p is None:
                for what in attempt.failed():
                    log.warning(
                        "login: %s locked after repeated failures (account %r, from %s)",
                        what, body.name, ip,
                    )  # fmt: skip
                raise ApiError(401, "unauthenticated", "wrong name or password")
            attempt.succeeded()
        return {"token": got[0], "expires_at": got[1], "name": p.name, "role": p.role,
                "enterprises": sorted(p.enterprises)}  # fmt: skip

    @app.post("/api/v1/reports/verify", openapi_extra=_REPORT_BODY)
    async def verify_report(caller: Caller, request: Request) -> dict[str, Any]:
        """Verify a report file: the body is the file's bytes, parsed here as they are (a
        re-serialised file verifies too: the signature is over RFC 8785 canonical JSON)."""
        try:
            doc = parse_report(await request.body(), "the posted report")
        except ValueError as exc:
            return _error(422, "invalid_report", str(exc))  # type: ignore[return-value]
        return await run_in_threadpool(_verify_posted, caller, doc)

    def _verify_posted(caller: Caller, doc: dict[str, Any]) -> dict[str, Any]:
        ent = doc.get("enterprise")
        enterprise = str(ent.get("id", "")) if isinstance(ent, dict) else ""
        if not caller.may_read(enterprise):
            raise forbidden(caller, enterprise, "verify reports of")
        try:
            with pool.connection() as conn:
                v = verify(doc, conn=conn)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return _error(  # type: ignore[return-value]
                422, "invalid_report", f"not a report this server can read: {exc!r}"
            )
        return _verdict(v)

    @app.post("/api/v1/logout", status_code=204)
    def logout_(caller: Caller) -> Response:
        """End a session: revokes the token this request carries."""
        assert caller.token_id is not None
        with pool.connection() as conn:
            revoke_token(conn, caller.token_id)
        return Response(status_code=204)

    @app.get("/api/v1/keys")
    def keys(_caller: Caller) -> list[dict[str, Any]]:
        with pool.connection() as conn:
            rows = conn.execute(
                "SELECT key_id, public_key, created_at, retired_at FROM signing_keys "
                "ORDER BY created_at"
            ).fetchall()
        return [
            {
                "key_id": r[0],
                "public_key": base64.b64encode(bytes(r[1])).decode(),
                "created_at": r[2].isoformat(),
                "retired_at": r[3].isoformat() if r[3] else None,
            }
            for r in rows
        ]

    @app.get("/api/v1/enterprises/{enterprise}/production")
    def production(caller: Caller, enterprise: str) -> list[dict[str, Any]]:
        if not caller.may_read(enterprise):
            raise forbidden(caller, enterprise, "read")
        with pool.connection() as conn:
            cur = conn.execute(
                "SELECT id, site_id, period_from, period_to, output, output_unit, "
                "value_added_10k_cny, note, entered_at, entered_by FROM production_entries "
                "WHERE enterprise_id = %s ORDER BY period_from, id",
                (enterprise,),
            )
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    @app.post("/api/v1/enterprises/{enterprise}/production", status_code=201)
    def add_production(caller: Caller, enterprise: str, entry: ProductionIn) -> Any:
        if not caller.may_write(enterprise):
            raise forbidden(caller, enterprise, "enter figures for")
        check_period(entry.period_from, entry.period_to, longest=None)
        if entry.output is None and entry.value_added_10k_cny is None:
            return _error(422, "invalid_parameter", "give output, value_added_10k_cny, or both")
        with pool.connection() as conn:
            if conn.execute("SELECT 1 FROM enterprises WHERE id = %s", (enterprise,)).fetchone():
                row = conn.execute(
                    "INSERT INTO production_entries (enterprise_id, site_id, period_from, "
                    "period_to, output, output_unit, value_added_10k_cny, note, entered_by) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                    (
                        enterprise, entry.site, entry.period_from, entry.period_to, entry.output,
                        entry.output_unit, entry.value_added_10k_cny, entry.note,
                        entry.entered_by or caller.name,
                    ),
                ).fetchone()  # fmt: skip
                assert row is not None
                return {"id": row[0]}
        return _error(404, "not_found", f"no enterprise {enterprise!r}")

    return app
