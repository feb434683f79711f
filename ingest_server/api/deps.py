"""The routes' dependencies, as `Annotated` aliases: a route names what it needs in its
signature, and FastAPI provides it.

    Caller            the authenticated account (auth.py): 401 without a valid token
    Pool              the app's connection pool, for a route that opens a connection late
    Conn              a pooled connection, committed (rolled back on an error) when the
                      route returns, before the answer is sent
    KeyFile           the report-signing key file (re-read when `keys rotate` replaced it)
    Limiter           the login limiter (ratelimit.py)
    Reading           {enterprise} of the path, which the caller may read (403), and a Conn
    KnownEnterprise   Reading, and the enterprise exists (404)
    writing("...")    {enterprise}, which the caller may write (403 "may not ..."), and a Conn

The caller is known, and refused if it must be, before a connection is taken for the
route. Per-app state (pool, key file, limiter) lives on `app.state`, set by create_app.
"""

# no `from __future__ import annotations`: writing() declares its dependencies in a
# closure, and FastAPI must see those annotations as objects, not as names to resolve
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from psycopg_pool import ConnectionPool

from ingest_server.api.auth import ApiError, Caller, readable, writable
from ingest_server.api.ratelimit import LoginLimiter
from ingest_server.evidence.keys import SigningKeyFile
from ingest_server.repo.accounts import Principal
from ingest_server.repo.enterprises import enterprise_exists


def _pool(request: Request) -> ConnectionPool:
    pool: ConnectionPool = request.app.state.pool
    return pool


Pool = Annotated[ConnectionPool, Depends(_pool)]


def _conn(pool: Pool) -> Iterator[psycopg.Connection]:
    with pool.connection() as conn:
        yield conn


# scope "function": the transaction ends before the answer is sent, so a client that
# reads right after a write sees it
Conn = Annotated[psycopg.Connection, Depends(_conn, scope="function")]


def _key_file(request: Request) -> SigningKeyFile:
    keyfile: SigningKeyFile = request.app.state.signing_key_file
    return keyfile


KeyFile = Annotated[SigningKeyFile, Depends(_key_file)]


def _limiter(request: Request) -> LoginLimiter:
    # asked at each request: a test (or an operator's hook) may replace the app's limiter
    limiter: LoginLimiter = request.app.state.login_limiter
    return limiter


Limiter = Annotated[LoginLimiter, Depends(_limiter)]


@dataclass(frozen=True, slots=True)
class Enterprise:
    """The enterprise of the path as the caller may use it, and a connection."""

    id: str
    caller: Principal
    conn: psycopg.Connection


def _may_read(caller: Caller, enterprise: str) -> str:
    readable(caller, enterprise)
    return enterprise


def _reading(
    caller: Caller, enterprise: Annotated[str, Depends(_may_read)], conn: Conn
) -> Enterprise:
    return Enterprise(enterprise, caller, conn)


Reading = Annotated[Enterprise, Depends(_reading)]


def _known(e: Reading) -> Enterprise:
    if not enterprise_exists(e.conn, enterprise=e.id):
        raise ApiError(404, "not_found", f"no enterprise {e.id!r}", f"没有企业 {e.id!r}")
    return e


KnownEnterprise = Annotated[Enterprise, Depends(_known)]


def writing(what: str) -> Callable[..., Enterprise]:
    """A dependency: the enterprise of the path, which the caller may write (403: "account
    ... may not <what> enterprise ..."), and a connection."""

    def may_write(caller: Caller, enterprise: str) -> str:
        writable(caller, enterprise, what)
        return enterprise

    def _writing(
        caller: Caller, enterprise: Annotated[str, Depends(may_write)], conn: Conn
    ) -> Enterprise:
        return Enterprise(enterprise, caller, conn)

    return _writing
