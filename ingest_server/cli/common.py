"""What the ingest-server commands share: where their data and keys live by default, and
a connection to a migrated database (the embedded one stopped again afterwards)."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from ingest_server.db.schema import migrate


def default_data_dir() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/factory-evidence")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "factory-evidence"


def default_key_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "report-signing.pem"


@contextlib.contextmanager
def migrated_connection(
    args: argparse.Namespace, resolve_dsn: Callable[..., tuple[str, Any]]
) -> Iterator[psycopg.Connection]:
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
