"""Gateway ids and keys as the consumer's checks need them: read from `gateways`, cached.

A gateway speaks one contract (`gateways.contract`): 1, JSON signed with the HMAC key the
server issued (`key`); 2, v2 batches and JSON signed with its own Ed25519 key, of which
the server holds the public half (`public_key`).

A key is re-read when a signature fails and the cached entry is older than `refresh_s`
(a key rotated by a registry import while the server runs); every entry is re-read once
it is `max_age_s` old, so a revoked gateway is refused within that time.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from edge_agent.contract.topics import Origin


@dataclass(frozen=True)
class Gateway:
    gid: int
    key: bytes | None  # HMAC key (contract 1)
    contract: int = 1
    public_key: bytes | None = None  # raw Ed25519 (contract 2); None when revoked


def lookup_gateway(conn: psycopg.Connection, origin: Origin) -> Gateway | None:
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    row = conn.execute(
        "SELECT gid, hmac_key, contract, public_key FROM gateways "
        "WHERE enterprise_id = %s AND site_id = %s AND id = %s",
        (origin.enterprise, origin.site, origin.gateway),
    ).fetchone()
    if idle:  # a lookup between transactions must not hold one open
        conn.rollback()
    if row is None:
        return None
    gid, key, contract, public_key = row
    return Gateway(
        gid,
        None if key is None else bytes(key),
        int(contract),
        None if public_key is None else bytes(public_key),
    )


class GatewayDirectory:
    """Gateway ids and keys for the consumer's checks, cached, with a connection of its own.

    A key is re-read when a signature fails and the cached entry is older than
    `refresh_s` (a key rotated by a registry import while the server runs); an unknown
    gateway is asked about again after `refresh_s`, not at every message; and every
    entry is re-read once it is `max_age_s` old, so a revoked gateway (`ingest-server
    gateway revoke`: no key) is refused within that time even if it keeps signing with
    its old key.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        refresh_s: float = 5.0,
        max_age_s: float = 60.0,
    ) -> None:
        self._connect = connect
        self._conn: psycopg.Connection | None = None
        self._cache: dict[tuple[str, str, str], tuple[float, Gateway | None]] = {}
        self.refresh_s = refresh_s
        self.max_age_s = max_age_s

    def lookup(self, origin: Origin, *, stale_ok: bool = True) -> Gateway | None:
        key = (origin.enterprise, origin.site, origin.gateway)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and (
            (stale_ok and hit[1] is not None and now - hit[0] < self.max_age_s)
            or now - hit[0] < self.refresh_s
        ):
            return hit[1]
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self._connect()
            found = lookup_gateway(self._conn, origin)
        except psycopg.OperationalError:
            self.close()
            raise
        self._cache[key] = (now, found)
        return found

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
