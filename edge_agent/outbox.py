"""The durable outbox: sealed batches wait here, in SQLite (WAL), until the broker acks.

    Agent._seal (Backfill._seal) --append(boot, seq, created, samples, payload)-->
        batch table --pending/newest--> Delivery
    Delivery --delete(keys) after PUBACK--> gone

Batches, not samples, are the rows: one INSERT per batch of up to thousands of samples
keeps the outbox cheap on a gateway's flash. A batch is keyed by ``(boot, seq)``;
``boot`` is a counter kept in the file and incremented by `start_boot` at each start.
With ``durability="power"`` every append is fsynced (synchronous=FULL) and survives
power loss; ``"process"`` (synchronous=NORMAL) survives kill -9 of the agent.

Bounds, policy ``drop_oldest``: after an append, while the payload bytes exceed
``max_bytes`` the oldest batch is deleted (never the one just appended); `expire` deletes
batches older than ``max_age_s``. Both count what they dropped (lifetime totals kept in
the file) and log it: losing data is never silent.

Exceptions::

    OutboxError    the file cannot be opened or used: not ours, unreadable, disk full
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_APP_ID = 0x46454F42  # "FEOB": marks the file as a factory-evidence outbox
_SCHEMA = """
CREATE TABLE batch (
    boot    INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    created REAL    NOT NULL,
    samples INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    PRIMARY KEY (boot, seq)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('boot', 0), ('dropped_batches', 0), ('dropped_samples', 0);
"""

Key = tuple[int, int]


def _when_unlocked(step: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Run a statement SQLite answers "database is locked" without waiting (changing the
    journal mode while another connection opens the file), retrying for a while."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class OutboxError(Exception):
    """The outbox file cannot be used; the message names the path and what to do."""


@dataclass(frozen=True, slots=True)
class StoredBatch:
    boot: int
    seq: int
    created: float
    samples: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    batches: int
    samples: int
    bytes: int
    oldest_created: float | None
    dropped_batches: int
    dropped_samples: int


class Outbox:
    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int,
        max_age_s: float,
        durability: Literal["power", "process"] = "power",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(
                f"{self.path}: cannot open the outbox ({exc}); check that the directory "
                "exists and the agent may write there (outbox.path)"
            ) from None
        try:
            self._open(durability)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise OutboxError(
                f"{self.path}: not a usable outbox ({exc}); move the file away (it is kept "
                "for you to inspect) or point outbox.path elsewhere"
            ) from None
        except OutboxError:
            self._db.close()
            raise

    def _open(self, durability: str) -> None:
        db = self._db
        _when_unlocked(lambda: db.execute("PRAGMA journal_mode=WAL"))
        db.execute(f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
        # look and create in one write transaction: another process may be creating the
        # same new file right now (the agent, and a tool reading its outbox)
        db.execute("BEGIN IMMEDIATE")
        try:
            app_id = db.execute("PRAGMA application_id").fetchone()[0]
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not tables:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={_APP_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                app_id, tables = _APP_ID, {"batch", "meta"}
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if app_id != _APP_ID or tables != {"batch", "meta"}:
            raise OutboxError(
                f"{self.path}: this SQLite file is not a factory-evidence outbox (tables "
                f"{sorted(tables)}); move it away or point outbox.path elsewhere"
            )
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            raise OutboxError(
                f"{self.path}: outbox format {version}, this agent reads {SCHEMA_VERSION}; "
                "publish it with the agent version that wrote it, or move it away"
            )
        self._recount()

    def _recount(self) -> None:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(samples), 0), coalesce(sum(bytes), 0) FROM batch"
        ).fetchone()
        self._batches, self._samples, self._bytes = int(row[0]), int(row[1]), int(row[2])

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; a failure rolls back and names the file."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException as exc:
            if self._db.in_transaction:  # SQLite has rolled back itself on SQLITE_FULL
                self._db.execute("ROLLBACK")
            self._recount()  # the running totals followed the rolled-back statements
            if isinstance(exc, sqlite3.OperationalError):
                raise OutboxError(f"{self.path}: cannot write the outbox ({exc})") from exc
            raise
        self._db.execute("COMMIT")

    # --- writing ------------------------------------------------------------------------

    def start_boot(self) -> int:
        with self._lock, self._tx():
            self._db.execute("UPDATE meta SET value = value + 1 WHERE key = 'boot'")
            return int(self._db.execute("SELECT value FROM meta WHERE key='boot'").fetchone()[0])

    def append(
        self, boot: int, seq: int, created: float, samples: int, payload: bytes
    ) -> list[StoredBatch]:
        """Store a sealed batch; returns the batches dropped to stay within max_bytes."""
        with self._lock, self._tx():
            self._db.execute(
                "INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?)",
                (boot, seq, created, samples, len(payload), payload),
            )
            self._batches += 1
            self._samples += samples
            self._bytes += len(payload)
            dropped = self._enforce_bytes((boot, seq)) if self._bytes > self.max_bytes else []
        if dropped:
            self._report(dropped, f"over outbox.max_bytes ({self.max_bytes} bytes)")
        return dropped

    def _enforce_bytes(self, keep: Key) -> list[StoredBatch]:
        dropped: list[StoredBatch] = []
        rows = self._db.execute(
            "SELECT boot, seq, created, samples, bytes FROM batch ORDER BY boot, seq"
        )
        for boot, seq, created, samples, size in rows.fetchall():
            if self._bytes <= self.max_bytes:
                break
            if (boot, seq) == keep:
                logger.error(
                    "%s: one batch of %d bytes exceeds outbox.max_bytes (%d); kept, but "
                    "raise outbox.max_bytes or lower mqtt.batch_max_samples",
                    self.path,
                    size,
                    self.max_bytes,
                )
                break
            dropped.append(StoredBatch(boot, seq, created, samples, b""))
            self._forget(boot, seq, samples, size)
        self._count_dropped(dropped)
        return dropped

    def _forget(self, boot: int, seq: int, samples: int, size: int) -> None:
        self._db.execute("DELETE FROM batch WHERE boot = ? AND seq = ?", (boot, seq))
        self._batches -= 1
        self._samples -= samples
        self._bytes -= size

    def _count_dropped(self, dropped: list[StoredBatch]) -> None:
        if dropped:
            self._db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'dropped_batches'", (len(dropped),)
            )
            self._db.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'dropped_samples'",
                (sum(b.samples for b in dropped),),
            )

    def _report(self, dropped: list[StoredBatch], why: str) -> None:
        logger.warning(
            "%s: dropped the %d oldest batch(es), %d samples, %s (policy drop_oldest)",
            self.path,
            len(dropped),
            sum(b.samples for b in dropped),
            why,
        )

    def expire(self) -> list[StoredBatch]:
        """Drop batches older than max_age_s; returns them (without payloads)."""
        cutoff = self.clock() - self.max_age_s
        with self._lock, self._tx():
            rows = self._db.execute(
                "SELECT boot, seq, created, samples, bytes FROM batch WHERE created < ?",
                (cutoff,),
            ).fetchall()
            dropped = []
            for boot, seq, created, samples, size in rows:
                dropped.append(StoredBatch(boot, seq, created, samples, b""))
                self._forget(boot, seq, samples, size)
            self._count_dropped(dropped)
        if dropped:
            self._report(dropped, f"older than outbox.max_age_s ({self.max_age_s:g} s)")
        return dropped

    def delete(self, keys: Iterable[Key]) -> int:
        """Forget acknowledged batches (idempotent); returns how many were there."""
        n = 0
        with self._lock, self._tx():
            for boot, seq in keys:
                row = self._db.execute(
                    "SELECT samples, bytes FROM batch WHERE boot = ? AND seq = ?", (boot, seq)
                ).fetchone()
                if row is not None:
                    self._forget(boot, seq, int(row[0]), int(row[1]))
                    n += 1
        return n

    # --- reading ------------------------------------------------------------------------

    def pending(self, limit: int, *, exclude: Collection[Key] = ()) -> list[StoredBatch]:
        """The oldest batches, by (boot, seq), skipping those in exclude."""
        return self._select("", (), limit, exclude)

    def newest(self, limit: int, *, since: Key, exclude: Collection[Key] = ()) -> list[StoredBatch]:
        """Batches at or after `since`, oldest first: the live lane."""
        return self._select("WHERE (boot, seq) >= (?, ?)", since, limit, exclude)

    def _select(
        self, where: str, args: tuple[int, ...], limit: int, exclude: Collection[Key]
    ) -> list[StoredBatch]:
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                f"SELECT boot, seq, created, samples, payload FROM batch {where} "
                "ORDER BY boot, seq LIMIT ?",
                (*args, limit + len(exclude)),
            ).fetchall()
        out = [StoredBatch(*r) for r in rows if (r[0], r[1]) not in exclude]
        return out[:limit]

    def stats(self) -> OutboxStats:
        with self._lock:
            oldest = self._db.execute("SELECT min(created) FROM batch").fetchone()[0]
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            return OutboxStats(
                batches=self._batches,
                samples=self._samples,
                bytes=self._bytes,
                oldest_created=oldest,
                dropped_batches=int(meta["dropped_batches"]),
                dropped_samples=int(meta["dropped_samples"]),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
