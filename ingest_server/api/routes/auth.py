"""Console sessions: log in with a name and a password, log out (revoke the token).

POST /api/v1/login     {name, password} -> a session token (429 after repeated failures)
POST /api/v1/logout    revoke the token of the request
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response

from ingest_server.api.auth import ApiError, Caller
from ingest_server.api.deps import Conn, Limiter, Pool
from ingest_server.api.models import LoginIn, SessionPublic
from ingest_server.repo.accounts import authenticate, login, revoke_token

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["sessions"])


@router.post("/login", responses={429: {"description": "too many failed logins"}})
def login_(request: Request, body: LoginIn, limiter: Limiter, pool: Pool) -> SessionPublic:
    """A console session: a token that expires, for a right name and password. After
    5 failures for a name (20 from an address) in 5 minutes: 429 for 5 minutes,
    without the password being checked."""
    ip = request.client.host if request.client else "unknown"
    # TooManyAttemptsError: the app answers 429; no connection is taken for a refusal
    with limiter.attempt(body.name, ip) as attempt:
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
    return SessionPublic(
        token=got[0], expires_at=got[1], name=p.name, role=p.role,
        enterprises=sorted(p.enterprises),
    )  # fmt: skip


@router.post("/logout", status_code=204)
def logout_(caller: Caller, conn: Conn) -> Response:
    """End a session: revokes the token this request carries."""
    assert caller.token_id is not None
    revoke_token(conn, caller.token_id)
    return Response(status_code=204)
