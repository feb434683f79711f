"""Who is calling the API: bearer tokens to principals, and the errors that say no."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg_pool import ConnectionPool

from ingest_server.errors import FactoryEvidenceError
from ingest_server.repo.accounts import Principal, authenticate


class ApiError(FactoryEvidenceError):
    """Answered as JSON {"error": {"code", "message", "message_zh"}} with its status;
    `message_zh`, the message in Chinese, where the route words one."""

    def __init__(self, status: int, code: str, message: str, message_zh: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.message_zh = message_zh


def forbidden(p: Principal, enterprise: str, what: str) -> ApiError:
    return ApiError(
        403,
        "forbidden",
        f"account {p.name} ({p.role}) may not {what} enterprise {enterprise!r}",
    )


_BEARER = HTTPBearer(auto_error=False, description="an API token: fe_<id>_<secret>")


def principal(
    request: Request,
    cred: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Principal:
    """The caller, from its bearer token; 401 without a valid one."""
    if cred is None:
        raise ApiError(401, "unauthenticated", "send Authorization: Bearer <API token>")
    pool: ConnectionPool = request.app.state.pool
    with pool.connection() as conn:
        p = authenticate(conn, cred.credentials)
    if p is None:
        raise ApiError(401, "unauthenticated", "the token is unknown, revoked or malformed")
    return p


Caller = Annotated[Principal, Depends(principal)]


def readable(caller: Principal, enterprise: str) -> None:
    if not caller.may_read(enterprise):
        raise forbidden(caller, enterprise, "read")


def writable(caller: Principal, enterprise: str, what: str = "change") -> None:
    if not caller.may_write(enterprise):
        raise forbidden(caller, enterprise, what)
