"""The HTTP API of the evidence side (FastAPI; OpenAPI at /docs): `create_app` builds it.

    ingest-server api [--dsn DSN | --data-dir DIR] [--listen 127.0.0.1:8080]

One router per resource, in api/routes/ (the table of every route is in its
`__init__.py`); what routes depend on (the caller, a connection, the enterprise they may
read or write) in api/deps.py; request and response bodies in api/models.py; date and
period parameters in api/params.py. No route holds SQL: they call ingest_server/repo/.

Every endpoint but /login needs `Authorization: Bearer <token>` (`ingest-server accounts
token`, or a console login): 401 without a valid one, 403 when the account's role or
enterprises do not allow the request (ingest_server/repo/accounts.py). Errors are JSON
`{"error": {"code": ..., "message": ..., "message_zh": ...}}`, the status chosen by the
exception's kind (ingest_server/errors.py), never by its message; `message` is English,
`message_zh` its Chinese where the server words one (an exception's `message_zh`: the
period checks, the login lockout), else absent and the console says the code in its
language (docs/console.md, "Languages"):

    ApiError                      its own status and code (api/auth.py)
    invalid request parameters    422 invalid_parameter, the field named (dates: api/params.py)
    ReportError (kpi)             422 report_error; 404 when it is also a NotFoundError
    UnknownSiteError, ...         422 invalid_parameter, the request field named
    InvalidInputError             422 invalid_parameter
    NotFoundError                 404 not_found
    TooManyAttemptsError          429 too_many_attempts, with Retry-After
    UnavailableError              503 unavailable
    psycopg DataError             422 invalid_parameter (e.g. a NUL in a path)
    psycopg OperationalError      503 database_unavailable

Every answer under /api/ carries `Cache-Control: no-store`. Listens on 127.0.0.1 by
default.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import ConnectionPool

from ingest_server import __version__, console
from ingest_server.api import validation_zh
from ingest_server.api.auth import ApiError
from ingest_server.api.ratelimit import LoginLimiter, TooManyAttemptsError
from ingest_server.api.routes import (
    auth,
    declared,
    downtime,
    gateways,
    green,
    kpis,
    production,
    registry,
    reports,
    series,
)
from ingest_server.errors import InvalidInputError, NotFoundError, UnavailableError
from ingest_server.evidence.keys import SigningKeyFile, register_key
from ingest_server.kpi.records import ReportError, UnknownEnterpriseError
from ingest_server.repo.equipment import UnknownProcessError
from ingest_server.repo.production import UnknownSiteError

# a handler takes the kind it is registered for
Handler = Callable[[Request, Any], JSONResponse]


def create_app(dsn: str, *, signing_key: Path) -> FastAPI:
    """The app, its pool not yet open (the lifespan opens it and registers the public key
    of `signing_key`, which is created if missing)."""
    app = FastAPI(
        title="factory-evidence",
        version=__version__,
        description="Measured smart-factory and green-factory KPIs with verifiable evidence",
        lifespan=_lifespan,
    )
    app.state.pool = ConnectionPool(dsn, min_size=1, max_size=4, open=False)
    # re-read when `keys rotate` replaces it
    app.state.signing_key_file = SigningKeyFile(signing_key)
    # failed logins per name and per address (ingest_server/api/ratelimit.py); per process
    app.state.login_limiter = LoginLimiter()

    for kind, handler in _HANDLERS.items():
        app.add_exception_handler(kind, handler)
    # in this order in the OpenAPI schema: sessions last, so a client that walks the
    # schema (tests/api/test_fuzz.py) logs out after the rest
    routers = (registry, series, gateways, kpis, reports, production, downtime, declared, green)
    for module in (*routers, auth):
        app.include_router(module.router)
    console.mount(app)
    app.middleware("http")(_no_store)  # after the console's: the outermost
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    pool: ConnectionPool = app.state.pool
    keyfile: SigningKeyFile = app.state.signing_key_file
    pool.open(wait=True, timeout=30)
    with pool.connection() as conn:
        register_key(conn, keyfile.get().public_key())
    try:
        yield
    finally:
        pool.close()


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


def _error(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    message_zh: str | None = None,
) -> JSONResponse:
    error = {"code": code, "message": message}
    if message_zh:
        error["message_zh"] = message_zh
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _error(exc.status, exc.code, exc.message, headers, getattr(exc, "message_zh", None))


def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
    message, message_zh = validation_zh.messages(exc.errors())
    return _error(422, "invalid_parameter", message, message_zh=message_zh)


def _bad_report(_req: Request, exc: ReportError) -> JSONResponse:
    return _error(404 if isinstance(exc, NotFoundError) else 422, "report_error", str(exc))


def _invalid_field(field: str) -> Callable[[Request, InvalidInputError], JSONResponse]:
    """An answer that names the request field whose value was refused, as a 422 of the
    request's validation does."""

    def answer(_req: Request, exc: InvalidInputError) -> JSONResponse:
        return _error(422, "invalid_parameter", f"{field}: {exc}")

    return answer


def _invalid_input(_req: Request, exc: InvalidInputError) -> JSONResponse:
    return _error(422, "invalid_parameter", str(exc))


def _not_found(_req: Request, exc: NotFoundError) -> JSONResponse:
    return _error(404, "not_found", str(exc))


def _too_many(_req: Request, exc: TooManyAttemptsError) -> JSONResponse:
    retry = {"Retry-After": str(exc.retry_after)}
    return _error(429, "too_many_attempts", str(exc), retry, exc.message_zh)


def _unavailable(_req: Request, exc: UnavailableError) -> JSONResponse:
    return _error(503, "unavailable", f"{exc}; retry later")


def _bad_value(_req: Request, exc: psycopg.DataError) -> JSONResponse:
    # e.g. a NUL character in a path or a name: PostgreSQL text cannot hold it
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid value"
    return _error(422, "invalid_parameter", f"a value the database cannot take: {first}")


def _db_down(_req: Request, _exc: psycopg.OperationalError) -> JSONResponse:
    return _error(503, "database_unavailable", "the database cannot be reached; retry later")


# by kind: Starlette answers with the handler of the first class in the exception's MRO
# that has one
_HANDLERS: dict[type[Exception], Handler] = {
    ApiError: _api_error,
    RequestValidationError: _invalid,
    ReportError: _bad_report,
    # a NotFoundError first (its MRO), but the report error it also is
    UnknownEnterpriseError: _bad_report,
    UnknownSiteError: _invalid_field("site"),
    UnknownProcessError: _invalid_field("process"),
    InvalidInputError: _invalid_input,
    NotFoundError: _not_found,
    TooManyAttemptsError: _too_many,
    UnavailableError: _unavailable,
    psycopg.DataError: _bad_value,
    psycopg.OperationalError: _db_down,
}
