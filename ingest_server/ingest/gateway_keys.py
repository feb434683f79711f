"""Gateway ids and keys as the consumer's checks need them: read from `gateways`, cached.

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
    key: bytes | None


def lookup_gateway(conn: psycopg.Connection, origin: Origin) -> Gateway | None:
    idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    row = conn.execute(
        "SELECT gid, hmac_key FROM gateways WHERE enterprise_id = %s AND site_id = %s AND id = %s",
        (origin.enterprise, origin.site, origin.gateway),
    ).fetchone()
    if idle:  # a lookup between transactions must not hold one open
        conn.rollback()
    if row is None:
        return None
    return Gateway(row[0], None if row[1] is None else bytes(row[1]))


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
