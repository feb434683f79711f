"""The durable outbox: sealed batches wait here, in SQLite (WAL), until they are acked.

    Agent._seal (Backfill._seal) --append(boot, seq, created, samples, payload[, digest])-->
        batch table --pending/newest--> Delivery
    contract 1: Delivery --delete(keys) after PUBACK--> gone
    contract 2: Delivery --mark_sent(keys) after PUBACK--> sent table (re-sent when due)
                Delivery --remove(keys) on the server's ack--> gone

Batches, not samples, are the rows: one INSERT per batch of up to thousands of samples
keeps the outbox cheap on a gateway's flash. A batch is keyed by ``(boot, seq)``;
``boot`` is a counter kept in the file and incremented by `start_boot` at each start.
With ``durability="power"`` every append is fsynced (synchronous=FULL) and survives
power loss; ``"process"`` (synchronous=NORMAL) survives kill -9 of the agent.

Contract 2 chains batches: each one's ``prev`` is the digest of the batch sealed before
it, across restarts, so the file keeps the last digest (meta ``last_digest``), written
in the transaction that appends the batch: a batch in the file and the chain's head
never disagree. A batch the broker has acknowledged (PUBACK) but the server has not yet
is a row of ``sent`` with when it is due again; a reconnection makes all of them due.
Format 1 files (before contract 2) and format 2 files (before the drop ledger) are
upgraded in place when opened.

Bounds, policy ``drop_oldest``: after an append, while the payload bytes exceed
``max_bytes`` the oldest batch is deleted (never the one just appended); `expire` deletes
batches older than ``max_age_s``. Both count what they dropped (lifetime totals kept in
the file) and log it: losing data is never silent. Each run of consecutive batches
dropped is also kept as a range (``dropped`` table, the newest `DROPPED_KEPT`): boot,
first and last seq, the reason (``full`` or ``expired``), when, and the digest of its
last batch. A contract-2 agent declares the newest of them in its signed status, so that
the server's ledger can tell the gateway's own loss from batches deleted on the server.
A drop that continues the newest range (same boot and reason, the next seq) extends it:
an outage that drops one batch per append stays one range.

Exceptions::

    OutboxError    the file cannot be opened or used: not ours, unreadable, disk full
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 3
DROPPED_KEPT = 1000  # ranges of dropped batches kept in the file (the newest)
DropReason = Literal["full", "expired"]
_APP_ID = 0x46454F42  # "FEOB": marks the file as a factory-evidence outbox
_SENT = """
CREATE TABLE sent (
    boot    INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    first   REAL    NOT NULL,
    due     REAL    NOT NULL,
    tries   INTEGER NOT NULL,
    PRIMARY KEY (boot, seq)
) WITHOUT ROWID
"""
_DROPPED = """
CREATE TABLE dropped (
    boot      INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    reason    TEXT    NOT NULL,
    at        REAL    NOT NULL,
    digest    BLOB,
    PRIMARY KEY (boot, first_seq)
) WITHOUT ROWID
"""
_SCHEMA = f"""
CREATE TABLE batch (
    boot    INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    created REAL    NOT NULL,
    samples INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    payload BLOB    NOT NULL,
    digest  BLOB,
    PRIMARY KEY (boot, seq)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('boot', 0), ('dropped_batches', 0), ('dropped_samples', 0);
{_SENT};
{_DROPPED};
"""
# format 1 -> 2: the batch's digest and the sent table (contract 2); nothing else moves
_UPGRADE_1 = f"ALTER TABLE batch ADD COLUMN digest BLOB;{_SENT}"
# format 2 -> 3: the ranges of dropped batches (what a contract-2 gateway declares)
_UPGRADE_2 = _DROPPED
_TABLES = frozenset({"batch", "meta", "sent", "dropped"})

# (format, its tables) -> the steps to the current format
_UPGRADES: dict[tuple[int, frozenset[str]], tuple[str, ...]] = {
    (1, frozenset({"batch", "meta"})): (_UPGRADE_1, _UPGRADE_2),
    (2, frozenset({"batch", "meta", "sent"})): (_UPGRADE_2,),
}

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
    resend: bool = False  # sent before and not acked by the server (contract 2)


@dataclass(frozen=True, slots=True)
class DroppedRange:
    """Batches boot/first_seq..last_seq, dropped by the outbox's bounds at `at`."""

    boot: int
    first_seq: int
    last_seq: int
    reason: DropReason
    at: float  # when the newest of them was dropped (the file's clock)
    digest: bytes | None  # of the last of them, if it had one (contract 2)

    def wire(self) -> list[Any]:
        """As a v2 status declares it: [boot, first, last, reason, ts_ms]."""
        return [self.boot, self.first_seq, self.last_seq, self.reason, round(self.at * 1000)]


@dataclass(frozen=True, slots=True)
class OutboxStats:
    batches: int
    samples: int
    bytes: int
    oldest_created: float | None
    dropped_batches: int
    dropped_samples: int
    sent: int = 0  # acknowledged by the broker, not yet by the server (contract 2)
    oldest_sent: float | None = None  # when the oldest of those was first acknowledged


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
            tables = frozenset(
                r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            )
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if not tables:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA application_id={_APP_ID}")
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                app_id, tables, version = _APP_ID, _TABLES, SCHEMA_VERSION
            elif app_id == _APP_ID and (version, tables) in _UPGRADES:
                # in the same transaction: a crash leaves the old format, never half of 3
                old = version
                for upgrade in _UPGRADES[version, tables]:
                    for statement in filter(str.strip, upgrade.split(";")):
                        db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                tables, version = _TABLES, SCHEMA_VERSION
                logger.info("%s: outbox upgraded from format %d to %d", self.path, old, version)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if app_id != _APP_ID or tables != _TABLES:
            raise OutboxError(
                f"{self.path}: this SQLite file is not a factory-evidence outbox (tables "
                f"{sorted(tables)}); move it away or point outbox.path elsewhere"
            )
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
        self,
        boot: int,
        seq: int,
        created: float,
        samples: int,
        payload: bytes,
        *,
        digest: bytes | None = None,
    ) -> list[StoredBatch]:
        """Store a sealed batch; returns the batches dropped to stay within max_bytes.
        With a digest (contract 2) it becomes the chain's head, `last_digest`."""
        return self.append_many(boot, created, [(seq, samples, payload, digest)])

    def append_many(
        self, boot: int, created: float, batches: Sequence[tuple[int, int, bytes, bytes | None]]
    ) -> list[StoredBatch]:
        """`append` for (seq, samples, payload, digest) of one boot, in one transaction:
        the pieces of a batch cut to fit mqtt.batch_max_bytes go in together or not."""
        dropped: list[StoredBatch] = []
        with self._lock, self._tx():
            for seq, samples, payload, digest in batches:
                self._db.execute(
                    "INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (boot, seq, created, samples, len(payload), payload, digest),
                )
                self._batches += 1
                self._samples += samples
                self._bytes += len(payload)
                if digest is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta VALUES ('last_digest', ?)", (digest,)
                    )
                if self._bytes > self.max_bytes:
                    dropped += self._enforce_bytes((boot, seq))
        if dropped:
            self._report(dropped, f"over outbox.max_bytes ({self.max_bytes} bytes)")
        return dropped

    def _enforce_bytes(self, keep: Key) -> list[StoredBatch]:
        dropped: list[StoredBatch] = []
        digests: list[bytes | None] = []
        rows = self._db.execute(
            "SELECT boot, seq, created, samples, bytes, digest FROM batch ORDER BY boot, seq"
        )
        for boot, seq, created, samples, size, digest in rows.fetchall():
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
            digests.append(digest)
            self._forget(boot, seq, samples, size)
        self._count_dropped(dropped)
        self._record(dropped, digests, "full")
        return dropped

    def _forget(self, boot: int, seq: int, samples: int, size: int) -> None:
        self._db.execute("DELETE FROM batch WHERE boot = ? AND seq = ?", (boot, seq))
        self._db.execute("DELETE FROM sent WHERE boot = ? AND seq = ?", (boot, seq))
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

    def _record(
        self, dropped: Sequence[StoredBatch], digests: Sequence[bytes | None], reason: DropReason
    ) -> None:
        """Keep the runs of consecutive dropped batches as ranges (in the transaction that
        dropped them), extending the newest range when a run continues it; then only the
        newest DROPPED_KEPT ranges."""
        if not dropped:
            return
        now = self.clock()
        runs: list[list[Any]] = []  # [boot, first, last, digest]
        for b, digest in sorted(
            zip(dropped, digests, strict=True), key=lambda x: (x[0].boot, x[0].seq)
        ):
            if runs and runs[-1][0] == b.boot and runs[-1][2] + 1 == b.seq:
                runs[-1][2:] = [b.seq, digest]
            else:
                runs.append([b.boot, b.seq, b.seq, digest])
        for boot, first, last, digest in runs:
            newest = self._db.execute(
                "SELECT boot, first_seq, last_seq, reason FROM dropped "
                "ORDER BY boot DESC, first_seq DESC LIMIT 1"
            ).fetchone()
            if newest is not None and (newest[0], newest[2] + 1, newest[3]) == (
                boot,
                first,
                reason,
            ):
                self._db.execute(
                    "UPDATE dropped SET last_seq = ?, at = ?, digest = ? "
                    "WHERE boot = ? AND first_seq = ?",
                    (last, now, digest, newest[0], newest[1]),
                )
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO dropped VALUES (?, ?, ?, ?, ?, ?)",
                    (boot, first, last, reason, now, digest),
                )
        self._db.execute(
            "DELETE FROM dropped WHERE (boot, first_seq) < (SELECT boot, first_seq FROM dropped "
            f"ORDER BY boot DESC, first_seq DESC LIMIT 1 OFFSET {DROPPED_KEPT - 1})"
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
                "SELECT boot, seq, created, samples, bytes, digest FROM batch WHERE created < ?",
                (cutoff,),
            ).fetchall()
            dropped = []
            for boot, seq, created, samples, size, _digest in rows:
                dropped.append(StoredBatch(boot, seq, created, samples, b""))
                self._forget(boot, seq, samples, size)
            self._count_dropped(dropped)
            self._record(dropped, [r[5] for r in rows], "expired")
        if dropped:
            self._report(dropped, f"older than outbox.max_age_s ({self.max_age_s:g} s)")
        return dropped

    def delete(self, keys: Iterable[Key]) -> int:
        """Forget acknowledged batches (idempotent); returns how many were there."""
        return len(self.remove(keys))

    def remove(self, keys: Iterable[Key]) -> dict[Key, int]:
        """Forget acknowledged batches (idempotent); returns those that were there, with
        their sample counts."""
        gone: dict[Key, int] = {}
        with self._lock, self._tx():
            for boot, seq in keys:
                row = self._db.execute(
                    "SELECT samples, bytes FROM batch WHERE boot = ? AND seq = ?", (boot, seq)
                ).fetchone()
                if row is not None:
                    self._forget(boot, seq, int(row[0]), int(row[1]))
                    gone[(boot, seq)] = int(row[0])
        return gone

    def mark_sent(
        self, keys: Iterable[Key], *, now: float, timeout_s: float, backoff_max_s: float
    ) -> None:
        """The broker has these batches (PUBACK), the server has not acked them yet:
        due again after timeout_s, then after twice as long each time, up to
        backoff_max_s. A batch acked meanwhile (gone from `batch`) is left out."""
        with self._lock, self._tx():
            for boot, seq in keys:
                row = self._db.execute(
                    "SELECT tries FROM sent WHERE boot = ? AND seq = ?", (boot, seq)
                ).fetchone()
                tries = 0 if row is None else int(row[0])
                wait = min(timeout_s * 2.0 ** min(tries, 32), backoff_max_s)
                self._db.execute(
                    "INSERT INTO sent SELECT boot, seq, ?, ?, 1 FROM batch "
                    "WHERE boot = ? AND seq = ? "
                    "ON CONFLICT (boot, seq) DO UPDATE SET due = excluded.due, tries = tries + 1",
                    (now, now + wait, boot, seq),
                )

    def resend_all(self) -> int:
        """Make every sent, unacked batch due now (a new connection: the server's ack may
        have been lost with the old one); returns how many."""
        with self._lock, self._tx():
            return self._db.execute("UPDATE sent SET due = 0").rowcount

    def last_digest(self) -> bytes | None:
        """The digest of the last batch appended with one (the chain's head), if any."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'last_digest'").fetchone()
        return None if row is None else bytes(row[0])

    # --- reading ------------------------------------------------------------------------

    def dropped_ranges(self, limit: int = DROPPED_KEPT) -> list[DroppedRange]:
        """The newest `limit` ranges of dropped batches, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT boot, first_seq, last_seq, reason, at, digest FROM dropped "
                "ORDER BY boot DESC, first_seq DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            DroppedRange(r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]))
            for r in reversed(rows)
        ]

    def pending(
        self,
        limit: int,
        *,
        exclude: Collection[Key] = (),
        now: float = math.inf,
        horizon: float = math.inf,
    ) -> list[StoredBatch]:
        """The oldest batches, by (boot, seq), skipping those in exclude and the sent
        ones not due at `now`. One due after `horizon` counts as due: the wall clock
        went back (a gateway's first NTP sync), and waiting for it would be waiting for
        nothing."""
        return self._select(
            "WHERE s.boot IS NULL OR s.due <= ? OR s.due > ?", (now, horizon), limit, exclude
        )

    def newest(self, limit: int, *, since: Key, exclude: Collection[Key] = ()) -> list[StoredBatch]:
        """Batches at or after `since`, oldest first, never sent: the live lane."""
        return self._select(
            "WHERE (b.boot, b.seq) >= (?, ?) AND s.boot IS NULL", since, limit, exclude
        )

    def _select(
        self, where: str, args: tuple[float, ...], limit: int, exclude: Collection[Key]
    ) -> list[StoredBatch]:
        if limit <= 0:
            return []
        with self._lock:
            rows = self._db.execute(
                "SELECT b.boot, b.seq, b.created, b.samples, b.payload, s.boot IS NOT NULL "
                f"FROM batch b LEFT JOIN sent s ON s.boot = b.boot AND s.seq = b.seq {where} "
                "ORDER BY b.boot, b.seq LIMIT ?",
                (*args, limit + len(exclude)),
            ).fetchall()
        out = [
            StoredBatch(r[0], r[1], r[2], r[3], r[4], bool(r[5]))
            for r in rows
            if (r[0], r[1]) not in exclude
        ]
        return out[:limit]

    def stats(self) -> OutboxStats:
        with self._lock:
            oldest = self._db.execute("SELECT min(created) FROM batch").fetchone()[0]
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            sent, oldest_sent = self._db.execute("SELECT count(*), min(first) FROM sent").fetchone()
            return OutboxStats(
                batches=self._batches,
                samples=self._samples,
                bytes=self._bytes,
                oldest_created=oldest,
                dropped_batches=int(meta["dropped_batches"]),
                dropped_samples=int(meta["dropped_samples"]),
                sent=int(sent),
                oldest_sent=oldest_sent,
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
