"""What the ingest-server commands share: where their data and keys live by default, the
--dsn/--data-dir options, the database they name (the embedded PostgreSQL started when
there is no --dsn), and a connection to it migrated (the embedded one stopped again
afterwards)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.contract.backoff import Backoff
from ingest_server.db.embedded_pg import EmbeddedPostgres
from ingest_server.db.schema import migrate
from ingest_server.errors import UnavailableError

log = logging.getLogger("ingest_server")


def date_arg(text: str) -> dt.date:
    """An argparse type: a calendar day, YYYY-MM-DD."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date: write YYYY-MM-DD") from None


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/factory-evidence")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "factory-evidence"


def default_key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "report-signing.pem"


def signing_key_path(args: argparse.Namespace) -> Path:
    """--signing-key, else the default key in --data-dir (or the default data dir)."""
    if args.signing_key is not None:
        return Path(args.signing_key)
    return default_key_path(getattr(args, "data_dir", None) or default_data_dir())


def _directory(text: str) -> Path:
    """A path made absolute where it enters: the embedded PostgreSQL's tools run in
    another directory."""
    return Path(text).expanduser().resolve()


def db_args(sp: argparse.ArgumentParser) -> None:
    """--dsn, --data-dir and --verbose: the options of every command that uses the
    database."""
    sp.add_argument(
        "--dsn",
        default=os.environ.get("FE_DSN"),
        help="PostgreSQL/TimescaleDB connection string (env FE_DSN); "
        "default: the embedded server in --data-dir",
    )
    sp.add_argument(
        "--data-dir",
        type=_directory,
        default=default_data_dir(),
        help="the embedded PostgreSQL's directory, used without --dsn (default %(default)s)",
    )
    sp.add_argument("-v", "--verbose", action="store_true")


class DatabaseUnavailableError(UnavailableError):
    """The database given by --dsn cannot be reached, after waiting for it."""


def resolve_dsn(args: argparse.Namespace, *, wait_s: float = 0) -> tuple[str, Any]:
    """The DSN to use and the embedded server started for it (or None)."""
    if args.dsn:
        _wait_for(args.dsn, wait_s)
        return args.dsn, None

    pg = EmbeddedPostgres(args.data_dir)
    dsn = pg.start()
    log.info("no --dsn: using the embedded PostgreSQL in %s (%s)", pg.pgdata, dsn)
    return dsn, pg


def _wait_for(dsn: str, wait_s: float) -> None:
    """Connect once; if the server is unreachable, retry with backoff for up to wait_s."""
    backoff, deadline = Backoff(0.5, 30), time.monotonic() + wait_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=10):
                return
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailableError(
                    f"cannot connect to the database ({first}); check --dsn and that the "
                    "server is running"
                ) from None
            log.warning("database unreachable (%s); retrying in %.0f s", first, delay)
            time.sleep(delay)


@contextlib.contextmanager
def migrated_connection(args: argparse.Namespace) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the database of --dsn / --data-dir, its schema brought
    up to date; an embedded server started for it is stopped afterwards."""
    dsn, pg = resolve_dsn(args)
    try:
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield conn
    finally:
        if pg is not None:
            pg.release()


def duration(text: str) -> timedelta | None:
    """An option's duration: '7d', '12h', '30m', '45s', or '0' / 'off' (none)."""
    text = text.strip().lower()
    if text in ("0", "off", "none"):
        return None
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write e.g. 7d, 12h, 30m, or off"
        ) from None
