"""`migrate` run by several processes at once on a new database: servers started together
(compose's two, `run --workers N`, a test's `prepare` beside a server) each migrate
first, and none may fail because another is creating the same tables."""

from __future__ import annotations

import threading

from ingest_server.db.schema import load_migrations, migrate
from tests.harness.ingest import dump
from tests.harness.pg import PgServer


def migrate_at_once(dsn: str, n: int) -> list[BaseException]:
    """`migrate` from n threads released together; what each raised."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            migrate(dsn)
        except Exception as exc:  # what a server starting would die of
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


def test_servers_migrating_one_new_database_at_once_all_succeed(pg_server: PgServer) -> None:
    newest = max(m.version for m in load_migrations())
    for _ in range(4):  # the race was lost about once in two tries before the lock
        with pg_server.database() as dsn:
            assert migrate_at_once(dsn, 3) == []
            versions = [v for (v,) in dump(dsn, "SELECT version FROM schema_migrations")]
            assert sorted(versions) == list(range(1, newest + 1))  # each applied once
