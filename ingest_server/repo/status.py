"""What the database holds, counted: the figures of `ingest-server status` (the one home of
their SQL).

Rows of the registry, of the stored samples and of what is derived from them; the newest
batch and sample; each gateway's last status; and why messages were dead-lettered lately.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    enterprise: str
    site: str
    gateway: str
    online: bool | None  # None: never seen
    status_at: dt.datetime | None
    boot: int | None
    has_key: bool


@dataclass(frozen=True, slots=True)
class DeadLetterReason:
    reason: str  # the reason's first clause
    count: int
    last: dt.datetime


def _one(conn: psycopg.Connection, query: str) -> Any:
    row = conn.execute(query).fetchone()
    return None if row is None else row[0]


def counts(conn: psycopg.Connection) -> dict[str, Any]:
    """The row counts of the registry's, the samples' and the derived tables, the time of
    the newest batch and of the newest sample (None while there is none), by name, in the
    order `status` shows them."""
    return {
        "enterprises": _one(conn, "SELECT count(*) FROM enterprises"),
        "equipment": _one(conn, "SELECT count(*) FROM equipment"),
        "devices": _one(conn, "SELECT count(*) FROM devices"),
        "series": _one(conn, "SELECT count(*) FROM series"),
        "samples": _one(conn, "SELECT count(*) FROM samples"),
        "batches": _one(conn, "SELECT count(*) FROM batches"),
        "last_batch_at": _one(conn, "SELECT max(received_at) FROM batches"),
        "newest_sample": _one(conn, "SELECT max(ts) FROM samples"),
        "state_intervals": _one(conn, "SELECT count(*) FROM state_intervals"),
        "counter_deltas": _one(conn, "SELECT count(*) FROM counter_deltas"),
        "counter_anomalies": _one(
            conn, "SELECT count(*) FROM counter_deltas WHERE flag IS NOT NULL"
        ),
        "dead_letters": _one(conn, "SELECT count(*) FROM dead_letters"),
    }


def gateway_statuses(conn: psycopg.Connection) -> list[GatewayStatus]:
    """Every gateway, revoked ones too, by enterprise, site and id: its last reported
    status and whether it has an HMAC key (without one its messages are dead-lettered)."""
    rows = conn.execute(
        "SELECT enterprise_id, site_id, id, online, status_at, boot, hmac_key IS NOT NULL "
        "FROM gateways ORDER BY 1, 2, 3"
    ).fetchall()
    return [GatewayStatus(*r) for r in rows]


def recent_dead_letter_reasons(conn: psycopg.Connection) -> list[DeadLetterReason]:
    """Why messages were dead-lettered in the last 24 hours: the ten most frequent
    reasons, most frequent first."""
    rows = conn.execute(
        # the reason's first clause: the same fault from many batches is one line
        "SELECT split_part(reason, ':', 1) || ':' || split_part(reason, ':', 2), "
        "count(*), max(received_at) FROM dead_letters "
        "WHERE received_at > now() - interval '1 day' GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
    ).fetchall()
    return [DeadLetterReason(*r) for r in rows]
