"""How the gateways' messages are received, as the console shows it: each gateway's
status (online, boot, agent, whether it has a key) and the messages refused from them
(dead letters, without their payload) (the one home of these reads; the ingest writer,
ingest/, writes them).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from edge_agent.contract.topics import ROOT


def list_gateways(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """The enterprise's gateways by site and id ({site, id, online, status_at, boot, agent,
    birth_at, has_key}); never the key itself."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT site_id AS site, id, online, status_at, boot, agent, birth_at, "
            "hmac_key IS NOT NULL AS has_key FROM gateways WHERE enterprise_id = %s "
            "ORDER BY site_id, id",
            (enterprise,),
        ).fetchall()


def dead_letters(conn: psycopg.Connection, *, enterprise: str, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` messages refused from the enterprise's gateways ({id,
    received_at, site, gateway, topic, reason, code, payload_bytes}), newest first.
    `code` is the kind of refusal (ingest/payload.py REFUSAL_CODES), `other` for the
    letters written before the codes. A letter with no gateway row (a gateway not in the
    registry, or one the database refused after the consumer had lost its lookup) is the
    enterprise's when its topic is under the enterprise's prefix (contract/topics.py:
    fe/v1/{enterprise}/{site}/{gateway}/{kind}); site and gateway then come from the topic."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT d.id, d.received_at, coalesce(g.site_id, split_part(d.topic, '/', 4)) AS site, "
            "coalesce(g.id, split_part(d.topic, '/', 5)) AS gateway, d.topic, "
            "d.reason, coalesce(d.code, 'other') AS code, d.payload_bytes "
            "FROM dead_letters d LEFT JOIN gateways g USING (gid) "
            "WHERE g.enterprise_id = %(e)s OR (d.gid IS NULL AND starts_with(d.topic, %(root)s) "
            "AND split_part(d.topic, '/', 3) = %(e)s) "
            "ORDER BY d.received_at DESC, d.id DESC LIMIT %(limit)s",
            {"e": enterprise, "root": f"{ROOT}/", "limit": limit},
        ).fetchall()
