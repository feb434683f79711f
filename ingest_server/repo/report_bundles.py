"""report_bundles: each issued report's evidence bundle, kept with it (the one home of
their SQL; migration 0009, docs/console.md "Evidence bundles").

    keep        build a report's bundle (a callback writes the zip) and store it, or store
                why it could not be built: the report is issued either way
    summaries   per report of an enterprise: built or not, bytes, SHA-256, samples, error
    stored      one report's bundle as the download route needs it (enterprise, size, hash)
    chunks      its bytes, piece by piece, for a streamed download

`keep` runs in the report's transaction (and snapshot: evidence/bundle.py `one_snapshot`),
inside a savepoint of its own, so a bundle that fails rolls back alone and leaves the
report to commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)

CHUNK = 8 << 20  # bytes a row of report_bundle_chunks holds at most
NAME = "bundle.zip"


@dataclass(frozen=True, slots=True)
class StoredBundle:
    report_id: str
    enterprise: str
    sha256: str | None  # hex; None when it could not be built (then `error` says why)
    bytes: int | None
    samples: int | None
    chunks: int | None
    error: str | None
    created_at: dt.datetime | None


def keep(
    conn: psycopg.Connection, *, report_id: str, build: Callable[[Path], int]
) -> StoredBundle | None:
    """Call `build(path)`, which writes the report's bundle zip at `path` and returns its
    sample count, then store the zip with the report `report_id` (stored already, in this
    transaction). When building or storing fails, store the reason instead: a report is
    never refused for its bundle. None when not even the reason could be stored."""
    started = time.perf_counter()
    try:
        with conn.transaction(), tempfile.TemporaryDirectory(prefix="fe-bundle-") as tmp:
            path = Path(tmp) / NAME
            samples = build(path)
            built = time.perf_counter()
            kept = _store(conn, report_id=report_id, path=path, samples=samples)
        log.info(
            "report %s: bundle of %d samples, %d bytes, built in %.2f s, stored in %.2f s",
            report_id, samples, kept.bytes, built - started, time.perf_counter() - built,
        )  # fmt: skip
        return kept
    except Exception as exc:  # any failure of the bundle is recorded, not raised
        if conn.broken:
            raise  # the connection is gone: the report cannot be stored either
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("report %s issued without its evidence bundle: %s", report_id, reason)
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO report_bundles (report_id, error) VALUES (%s, %s)",
                (report_id, reason),
            )
    except psycopg.Error as exc:  # e.g. the transaction itself failed meanwhile
        log.warning("report %s: the bundle's failure could not be recorded: %s", report_id, exc)
        return None
    return stored(conn, report_id)


def _store(conn: psycopg.Connection, *, report_id: str, path: Path, samples: int) -> StoredBundle:
    digest = hashlib.sha256()
    size = n = 0
    conn.execute(
        "INSERT INTO report_bundles (report_id, sha256, bytes, samples, chunks) "
        "VALUES (%s, %s, 1, %s, 1)",
        (report_id, bytes(32), samples),
    )  # the chunks need their parent row; its figures are set once they are known
    with open(path, "rb") as f:
        while piece := f.read(CHUNK):
            digest.update(piece)
            conn.execute(
                "INSERT INTO report_bundle_chunks (report_id, n, data) VALUES (%s, %s, %s)",
                (report_id, n, piece),
            )
            size += len(piece)
            n += 1
    if size == 0:
        raise ValueError("the bundle's zip is empty")
    conn.execute(
        "UPDATE report_bundles SET sha256 = %s, bytes = %s, chunks = %s WHERE report_id = %s",
        (digest.digest(), size, n, report_id),
    )
    found = stored(conn, report_id)
    assert found is not None
    return found


_COLUMNS = (
    "b.report_id::text, r.enterprise_id, b.sha256, b.bytes, b.samples, b.chunks, b.error, "
    "b.created_at"
)


def _bundle(row: tuple[Any, ...]) -> StoredBundle:
    sha = None if row[2] is None else bytes(row[2]).hex()
    return StoredBundle(row[0], row[1], sha, *row[3:])


def stored(conn: psycopg.Connection, report_id: str) -> StoredBundle | None:
    """The bundle kept with report `report_id` (any text: an id that is no UUID is simply
    not found), built or not; None when the report has no bundle row or does not exist."""
    try:
        key = uuid.UUID(report_id)
    except ValueError:
        return None
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM report_bundles b JOIN reports r ON r.id = b.report_id "
        "WHERE b.report_id = %s",
        (key,),
    ).fetchone()
    return None if row is None else _bundle(row)


def summaries(conn: psycopg.Connection, *, enterprise: str) -> dict[str, StoredBundle]:
    """The bundles of the enterprise's reports, by report id (a report issued before
    bundles were kept has none)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM report_bundles b JOIN reports r ON r.id = b.report_id "
        "WHERE r.enterprise_id = %s",
        (enterprise,),
    ).fetchall()
    return {str(r[0]): _bundle(r) for r in rows}


def chunks(conn: psycopg.Connection, *, report_id: str, count: int) -> Iterator[bytes]:
    """The zip's bytes, one stored piece at a time (one row read per piece)."""
    key = uuid.UUID(report_id)
    for n in range(count):
        row = conn.execute(
            "SELECT data FROM report_bundle_chunks WHERE report_id = %s AND n = %s",
            (key, n),
        ).fetchone()
        if row is None:
            raise LookupError(f"report {report_id}: piece {n} of its bundle is missing")
        yield bytes(row[0])
