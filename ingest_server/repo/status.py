"""What the database holds, counted: the figures of `ingest-server status` (the one home of
their SQL).

Rows of the registry, of the stored samples and of what is derived from them; the newest
batch and sample; each gateway's last status, contract, newest stored batch and the
batches missing in its chain; and why messages were dead-lettered lately.
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
    contract: int = 1
    newest: tuple[int, int] | None = None  # (boot, seq) of its newest stored batch
    newest_at: dt.datetime | None = None  # when that batch was received
    missing: int = 0  # v2 batches missing in its chain (below its newest of each boot)
    oldest_missing: tuple[int, int] | None = None  # (boot, seq)
    # of the missing, those the gateway declared its outbox dropped (its signed status;
    # `ledger check` verifies the signature, this count does not)
    declared_dropped: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetterReason:
    reason: str  # the reason's first clause
    count: int
    last: dt.datetime
    code: str = "other"  # the kind of refusal (ingest/payload.py REFUSAL_CODES)


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
    status, whether it has an HMAC key (without one its messages are dead-lettered), its
    contract, its newest stored batch in (boot, seq) order and when it arrived, and from
    the ledger (`ledger_gaps`) the v2 batches missing in its chain."""
    rows = conn.execute(
        "SELECT g.gid, g.enterprise_id, g.site_id, g.id, g.online, g.status_at, g.boot, "
        "g.hmac_key IS NOT NULL, g.contract, n.boot, n.seq, n.received_at "
        "FROM gateways g LEFT JOIN LATERAL (SELECT boot, seq, received_at FROM batches b "
        "WHERE b.gid = g.gid ORDER BY boot DESC, seq DESC LIMIT 1) n ON true "
        "ORDER BY 2, 3, 4"
    ).fetchall()
    gaps = ledger_gaps(conn)
    declared = declared_dropped(conn)
    return [
        GatewayStatus(
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            r[7],
            r[8],
            newest=None if r[9] is None else (r[9], r[10]),
            newest_at=r[11],
            missing=gaps.get(r[0], (0, None))[0],
            oldest_missing=gaps.get(r[0], (0, None))[1],
            declared_dropped=declared.get(r[0], 0),
        )
        for r in rows
    ]


def declared_dropped(conn: psycopg.Connection) -> dict[int, int]:
    """By gid, the batches inside the ranges a gateway declared dropped that are not
    stored (a range's batches the server did get, before the drop, do not count)."""
    rows = conn.execute(
        "SELECT d.gid, sum(d.last_seq - d.first_seq + 1 - (SELECT count(*) FROM batches b "
        "WHERE b.gid = d.gid AND b.boot = d.boot AND b.seq BETWEEN d.first_seq AND d.last_seq)) "
        "FROM declared_gaps d GROUP BY d.gid"
    ).fetchall()
    return {gid: int(n) for gid, n in rows}


def ledger_gaps(conn: psycopg.Connection) -> dict[int, tuple[int, tuple[int, int]]]:
    """By gid, the v2 batches missing in each gateway's chain: how many, and the oldest
    (boot, seq). `seq` starts at 1 at each boot, so below the newest stored batch of a
    boot every seq should be stored: the gateway sealed (and sent) those, the server has
    not stored them, so they were never acked. What a gateway sealed after its newest
    stored batch, and a boot none of whose batches is stored, the server cannot know."""
    per_boot = conn.execute(
        # a boot with a v2 batch: its v1 batches (before the switch) are stored ones too
        "SELECT gid, boot, min(seq), max(seq), count(*) FROM batches GROUP BY gid, boot "
        "HAVING bool_or(contract = 2) AND max(seq) > count(*) ORDER BY gid, boot"
    ).fetchall()
    gaps: dict[int, tuple[int, tuple[int, int]]] = {}
    for gid, boot, first, last, n in per_boot:
        if gid in gaps:
            count, oldest = gaps[gid]
            gaps[gid] = (count + last - n, oldest)
            continue
        if first > 1:
            oldest = (boot, 1)
        else:  # the first hole of the boot: the primary key, walked from its start
            (seq,) = conn.execute(
                "SELECT b.seq + 1 FROM batches b WHERE b.gid = %s AND b.boot = %s "
                "AND NOT EXISTS (SELECT 1 FROM batches c WHERE c.gid = b.gid "
                "AND c.boot = b.boot AND c.seq = b.seq + 1) ORDER BY b.seq LIMIT 1",
                (gid, boot),
            ).fetchone() or (None,)
            oldest = (boot, seq)
        gaps[gid] = (last - n, oldest)
    return gaps


def recent_dead_letter_reasons(conn: psycopg.Connection) -> list[DeadLetterReason]:
    """Why messages were dead-lettered in the last 24 hours: the ten most frequent
    (code, reason) pairs, most frequent first; a letter written before the codes is
    `other`."""
    rows = conn.execute(
        # the reason's first clause: the same fault from many batches is one line
        "SELECT split_part(reason, ':', 1) || ':' || split_part(reason, ':', 2), "
        "count(*), max(received_at), coalesce(code, 'other') FROM dead_letters "
        "WHERE received_at > now() - interval '1 day' GROUP BY 4, 1 ORDER BY 2 DESC, 4, 1 "
        "LIMIT 10"
    ).fetchall()
    return [DeadLetterReason(*r) for r in rows]
