"""signing_keys and reports: the server's report-signing keys and the reports it issued
(the one home of their SQL).

The private keys stay in their files (evidence/keys.py); the database keeps each public
key with when it was retired (its reports made before stay trusted) or revoked (none is).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class SigningKey:
    key_id: str
    public_key: bytes  # raw Ed25519, 32 bytes
    created_at: dt.datetime
    retired_at: dt.datetime | None
    revoked_at: dt.datetime | None


_KEY = "key_id, public_key, created_at, retired_at, revoked_at"


def add_key(conn: psycopg.Connection, *, key_id: str, public_key: bytes) -> None:
    """Register a public key (nothing happens when it is known already)."""
    conn.execute(
        "INSERT INTO signing_keys (key_id, public_key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (key_id, public_key),
    )


def retire_key(conn: psycopg.Connection, *, key_id: str, revoke: bool) -> None:
    """Mark a key retired now (kept if it was already), and revoked now if `revoke`."""
    conn.execute(
        "UPDATE signing_keys SET retired_at = coalesce(retired_at, now()), "
        "revoked_at = CASE WHEN %s THEN now() ELSE revoked_at END WHERE key_id = %s",
        (revoke, key_id),
    )


def get_key(conn: psycopg.Connection, *, key_id: str) -> SigningKey | None:
    row = conn.execute(f"SELECT {_KEY} FROM signing_keys WHERE key_id = %s", (key_id,)).fetchone()
    return None if row is None else SigningKey(row[0], bytes(row[1]), *row[2:])


def list_keys(conn: psycopg.Connection) -> list[SigningKey]:
    """Every key the server has signed with, oldest first."""
    rows = conn.execute(f"SELECT {_KEY} FROM signing_keys ORDER BY created_at").fetchall()
    return [SigningKey(r[0], bytes(r[1]), *r[2:]) for r in rows]


def store_report(conn: psycopg.Connection, doc: dict[str, Any], *, created_by: str) -> None:
    """Keep a signed report as issued: the console lists it, anyone allowed downloads the
    same bytes, and what the server signed stays on record."""
    sig = doc.get("signature") or {}
    with conn.transaction():
        conn.execute(
            "INSERT INTO reports (id, enterprise_id, period_from, period_to, partial, "
            "created_by, key_id, document) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                doc["report_id"], doc["enterprise"]["id"], doc["period"]["from"],
                doc["period"]["to"], doc["period"]["partial"], created_by, sig.get("key_id"),
                json.dumps(doc, ensure_ascii=False),
            ),
        )  # fmt: skip


def load_report(conn: psycopg.Connection, report_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT document FROM reports WHERE id::text = %s", (report_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def list_reports(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """The reports issued for an enterprise, newest first (without their documents)."""
    cur = conn.execute(
        "SELECT id::text AS id, period_from, period_to, partial, created_at, created_by, "
        "key_id FROM reports WHERE enterprise_id = %s ORDER BY created_at DESC",
        (enterprise,),
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
