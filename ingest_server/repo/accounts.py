"""Accounts, roles and API tokens.

    ingest-server accounts add NAME --role enterprise --enterprise hf-precision
    ingest-server accounts token NAME [--label laptop]     prints a new token, once
    ingest-server accounts revoke TOKEN_ID
    ingest-server accounts password NAME                   console login (asks for it)
    ingest-server accounts list

A token is `fe_<id>_<secret>`: 32 random bytes, shown once, stored only as the SHA-256
of the secret (tokens are random, so a plain hash is enough; no password KDF is
needed). Roles:

| role | may |
|---|---|
| admin | everything |
| enterprise | read its own enterprises, enter their production figures, make reports |
| verifier | read the enterprises assigned to it, make and verify reports; write nothing |

A console login (`POST /api/v1/login`) checks the account's scrypt password and issues
a token that expires after eight hours. Nothing here logs a token or a password;
`Principal` prints without secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from ingest_server.errors import InvalidInputError

Role = Literal["admin", "enterprise", "verifier"]
ROLES: tuple[Role, ...] = ("admin", "enterprise", "verifier")
PREFIX = "fe_"


class AccountError(InvalidInputError, ValueError):
    """A request about accounts that cannot be carried out; the message says why."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account behind a valid token."""

    account_id: int
    name: str
    role: Role
    enterprises: frozenset[str] = field(default_factory=frozenset)
    token_id: int | None = None  # the token it called with (logout revokes it)

    def may_read(self, enterprise: str) -> bool:
        return self.role == "admin" or enterprise in self.enterprises

    def may_write(self, enterprise: str) -> bool:
        return self.role == "admin" or (
            self.role == "enterprise" and enterprise in self.enterprises
        )


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def add_account(conn: psycopg.Connection, name: str, role: str, enterprises: list[str]) -> int:
    if role not in ROLES:
        raise AccountError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if role == "admin" and enterprises:
        raise AccountError("an admin sees every enterprise: give no --enterprise")
    if role != "admin" and not enterprises:
        raise AccountError(f"a {role} account needs at least one --enterprise")
    known = {r[0] for r in conn.execute("SELECT id FROM enterprises WHERE id = ANY(%s)",
                                          (enterprises,))}  # fmt: skip
    missing = sorted(set(enterprises) - known)
    if missing:
        raise AccountError(f"no enterprise {missing} in the registry: import it first")
    with conn.transaction():
        row = conn.execute(
            "INSERT INTO accounts (name, role) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING "
            "RETURNING id",
            (name, role),
        ).fetchone()
        if row is None:
            raise AccountError(f"an account {name!r} exists already")
        for e in enterprises:
            conn.execute(
                "INSERT INTO account_enterprises (account_id, enterprise_id) VALUES (%s, %s)",
                (row[0], e),
            )
    return int(row[0])


def new_token(conn: psycopg.Connection, name: str, label: str = "") -> str:
    """A new token for the account; the only time its secret exists outside the caller."""
    row = conn.execute(
        "SELECT id FROM accounts WHERE name = %s AND disabled_at IS NULL", (name,)
    ).fetchone()
    if row is None:
        raise AccountError(f"no active account {name!r}: add it with `accounts add`")
    secret = secrets.token_urlsafe(32)
    with conn.transaction():
        tid = conn.execute(
            "INSERT INTO api_tokens (account_id, token_hash, label) VALUES (%s, %s, %s) "
            "RETURNING id",
            (row[0], _hash(secret), label),
        ).fetchone()
    assert tid is not None
    return f"{PREFIX}{tid[0]}_{secret}"


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
MIN_PASSWORD = 10
SESSION = "8 hours"


def set_password(conn: psycopg.Connection, name: str, password: str) -> None:
    """The account's console password, stored as scrypt(salt, password)."""
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    stored = f"scrypt${salt.hex()}${digest.hex()}"
    with conn.transaction():
        cur = conn.execute("UPDATE accounts SET password_hash = %s WHERE name = %s", (stored, name))
    if cur.rowcount == 0:
        raise AccountError(f"no account {name!r}")


def login(conn: psycopg.Connection, name: str, password: str) -> tuple[str, Any] | None:
    """(a session token, when it expires) for a right password of an active account;
    None otherwise (the same answer for a wrong name and a wrong password)."""
    row = conn.execute(
        "SELECT id, password_hash FROM accounts WHERE name = %s AND disabled_at IS NULL",
        (name,),
    ).fetchone()
    stored = row[1] if row is not None and row[1] else "scrypt$00$00"
    _, salt, digest = stored.split("$")
    given = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), dklen=32, **_SCRYPT)
    if row is None or not row[1] or not hmac.compare_digest(given, bytes.fromhex(digest)):
        return None
    secret = secrets.token_urlsafe(32)
    with conn.transaction():
        tid = conn.execute(
            "INSERT INTO api_tokens (account_id, token_hash, label, expires_at) "
            "VALUES (%s, %s, 'login', now() + %s::interval) RETURNING id, expires_at",
            (row[0], _hash(secret), SESSION),
        ).fetchone()
    assert tid is not None
    return f"{PREFIX}{tid[0]}_{secret}", tid[1]


def revoke_token(conn: psycopg.Connection, token_id: int) -> None:
    with conn.transaction():
        cur = conn.execute(
            "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL",
            (token_id,),
        )
    if cur.rowcount == 0:
        raise AccountError(f"no active token {token_id}")


def authenticate(conn: psycopg.Connection, token: str) -> Principal | None:
    """The principal of a valid, unrevoked token of an active account; else None."""
    tid, secret = _split(token)
    if tid is None:
        return None
    row = conn.execute(
        """
        SELECT t.token_hash, a.id, a.name, a.role,
               coalesce(array_agg(ae.enterprise_id) FILTER (WHERE ae.enterprise_id IS NOT NULL),
                        '{}')
        FROM api_tokens t JOIN accounts a ON a.id = t.account_id
        LEFT JOIN account_enterprises ae ON ae.account_id = a.id
        WHERE t.id = %s AND t.revoked_at IS NULL AND a.disabled_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now())
        GROUP BY t.token_hash, a.id
        """,
        (tid,),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[0]), _hash(secret)):
        return None
    conn.execute("UPDATE api_tokens SET last_used_at = now() WHERE id = %s", (tid,))
    return Principal(row[1], row[2], row[3], frozenset(row[4]), tid)


def _split(token: str) -> tuple[int | None, str]:
    if not token.startswith(PREFIX):
        return None, ""
    tid, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not tid.isdigit() or not secret:
        return None, ""
    return int(tid), secret


def list_accounts(conn: psycopg.Connection) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in conn.execute(
            """
            SELECT a.name, a.role, coalesce(string_agg(DISTINCT ae.enterprise_id, ','), ''),
                   count(DISTINCT t.id) FILTER (WHERE t.revoked_at IS NULL),
                   a.disabled_at IS NOT NULL
            FROM accounts a
            LEFT JOIN account_enterprises ae ON ae.account_id = a.id
            LEFT JOIN api_tokens t ON t.account_id = a.id
            GROUP BY a.id ORDER BY a.name
            """
        )
    ]
