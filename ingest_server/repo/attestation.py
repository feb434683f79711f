"""Where the samples behind a report came from: how many a gateway signed (the one home of
this SQL; the ingest writer stores `samples.batch_id`, migration 0007).

A sample stored from a contract-v2 batch names its batch (`batch_id`): the gateway
signed it with its own Ed25519 key, which the server does not hold. A sample from a v1
batch (HMAC, a key the server issued and keeps) has none: the server could have made it.
kpi/fetch.py reads the counts per series; kpi/attestation.py turns them into each KPI's
gateway-signed share and the report's per-gateway summary.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import psycopg


def origin_counts(
    conn: psycopg.Connection,
    *,
    series_ids: Sequence[int],
    starts: Sequence[dt.datetime],
    ends: Sequence[dt.datetime],
) -> list[tuple[int, int, int]]:
    """(series_id, samples, of them from a gateway-signed batch) of each series over its
    own window [start, end) (the three sequences in one order): one statement for all of
    a report's series, each a range of the samples key (series_id, ts)."""
    if not series_ids:
        return []
    rows = conn.execute(
        """
        SELECT w.sid, x.n, x.signed
        FROM unnest(%s::int[], %s::timestamptz[], %s::timestamptz[]) AS w(sid, a, b)
        CROSS JOIN LATERAL (
            SELECT count(*) AS n, count(s.batch_id) AS signed FROM samples s
            WHERE s.series_id = w.sid AND s.ts >= w.a AND s.ts < w.b
        ) x
        ORDER BY 1
        """,
        (list(series_ids), list(starts), list(ends)),
    ).fetchall()
    return [(int(sid), int(n), int(signed)) for sid, n, signed in rows]


def gateway_contracts(conn: psycopg.Connection, *, gids: Sequence[int]) -> list[tuple[Any, ...]]:
    """(gid, site, id, contract) of the gateways, by site and id: the contract the
    registry holds now (1: HMAC, 2: Ed25519, `gateway enroll`)."""
    if not gids:
        return []
    return conn.execute(
        "SELECT gid, site_id, id, contract FROM gateways WHERE gid = ANY(%s) ORDER BY site_id, id",
        (list(gids),),
    ).fetchall()
