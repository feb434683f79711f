"""The outbox: order, bounds, counters, durability under kill -9, foreign files."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxError

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20


def open_box(path: Path, **kw: object) -> Outbox:
    args: dict[str, object] = {"max_bytes": 64 * MB, "max_age_s": 86400.0} | kw
    return Outbox(path, **args)  # type: ignore[arg-type]


def test_round_trip_in_key_order_across_boots(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.db") as ob:
        assert ob.start_boot() == 1
        ob.append(1, 1, 10.0, 5, b"a")
        ob.append(1, 2, 11.0, 6, b"bb")
    with open_box(tmp_path / "o.db") as ob:
        assert ob.start_boot() == 2
        ob.append(2, 1, 12.0, 7, b"ccc")
        assert [(b.boot, b.seq, b.payload) for b in ob.pending(10)] == [
            (1, 1, b"a"),
            (1, 2, b"bb"),
            (2, 1, b"ccc"),
        ]
        assert [(b.boot, b.seq) for b in ob.pending(10, exclude={(1, 1)})] == [(1, 2), (2, 1)]
        assert [(b.boot, b.seq) for b in ob.pending(1, exclude={(1, 1)})] == [(1, 2)]
        assert [(b.boot, b.seq) for b in ob.newest(10, since=(2, 1))] == [(2, 1)]
        assert ob.delete([(1, 1), (1, 1), (9, 9)]) == 1  # idempotent
        stats = ob.stats()
        assert (stats.batches, stats.samples, stats.bytes, stats.oldest_created) == (
            2,
            13,
            5,
            11.0,
        )


def test_byte_bound_drops_the_oldest_and_counts_it(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.db", max_bytes=MB) as ob:
        chunk = b"x" * (300 * 1024)
        dropped = [ob.append(1, seq, float(seq), 100, chunk) for seq in range(1, 6)]
        assert [len(d) for d in dropped] == [0, 0, 0, 1, 1]
        assert [(b.boot, b.seq) for b in ob.pending(10)] == [(1, 3), (1, 4), (1, 5)]
        assert ob.stats().bytes <= MB
    with open_box(tmp_path / "o.db", max_bytes=MB) as ob:  # the counters persist
        stats = ob.stats()
        assert (stats.dropped_batches, stats.dropped_samples) == (2, 200)


def test_a_single_oversize_batch_is_kept(tmp_path: Path) -> None:
    with open_box(tmp_path / "o.db", max_bytes=MB) as ob:
        ob.append(1, 1, 1.0, 1, b"a" * 100)
        dropped = ob.append(1, 2, 2.0, 1, b"b" * (2 * MB))
        assert [(b.boot, b.seq) for b in dropped] == [(1, 1)]
        assert [b.seq for b in ob.pending(10)] == [2]


def test_expire_by_age(tmp_path: Path) -> None:
    now = [1000.0]
    with open_box(tmp_path / "o.db", max_age_s=100.0, clock=lambda: now[0]) as ob:
        ob.append(1, 1, 850.0, 3, b"old")
        ob.append(1, 2, 950.0, 4, b"new")
        assert [b.seq for b in ob.expire()] == [1]
        assert [b.seq for b in ob.pending(10)] == [2]
        assert ob.stats().dropped_samples == 3


def test_running_totals_match_the_table_after_random_operations(tmp_path: Path) -> None:
    rng = random.Random(7)
    path = tmp_path / "o.db"
    with open_box(path, max_bytes=MB) as ob:
        seq = 0
        for _ in range(400):
            if rng.random() < 0.6:
                seq += 1
                ob.append(1, seq, float(seq), rng.randint(1, 50), b"z" * rng.randint(1, 90_000))
            else:
                keys = [(b.boot, b.seq) for b in ob.pending(rng.randint(1, 5))]
                ob.delete(keys)
        stats = ob.stats()
    with sqlite3.connect(path) as db:
        n, samples, size = db.execute(
            "SELECT count(*), coalesce(sum(samples),0), coalesce(sum(length(payload)),0) FROM batch"
        ).fetchone()
    db.close()
    assert (stats.batches, stats.samples, stats.bytes) == (n, samples, size)
    assert size <= MB


_WRITER = """
import sys
from pathlib import Path
from edge_agent.outbox import Outbox
ob = Outbox(Path(sys.argv[1]), max_bytes=1 << 30, max_age_s=1e9, durability=sys.argv[2])
boot = ob.start_boot()
seq = 0
while True:
    seq += 1
    ob.append(boot, seq, float(seq), seq % 7 + 1, (b"%d:" % seq) * 2000)
    print(seq, flush=True)
"""


@pytest.mark.parametrize(("durability", "kill_after"), [("process", 40), ("power", 15)])
def test_kill_9_keeps_every_acknowledged_append(
    tmp_path: Path, durability: str, kill_after: int
) -> None:
    path = tmp_path / "o.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), durability],
        stdout=subprocess.PIPE,
        cwd=REPO,
        text=True,
    )
    assert proc.stdout is not None
    confirmed = 0
    for line in proc.stdout:
        confirmed = int(line)
        if confirmed >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=10)
    proc.stdout.close()
    with open_box(path) as ob:
        kept = ob.pending(100_000)
    # every append that returned is there, intact; at most the one in progress is not
    assert [b.seq for b in kept][:confirmed] == list(range(1, confirmed + 1))
    for b in kept:
        assert b.payload == (b"%d:" % b.seq) * 2000


def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    path.write_bytes(b"this is a log file, not a database" * 100)
    with pytest.raises(OutboxError, match=rf"{path}: not a usable outbox .* move the file away"):
        open_box(path)
    assert path.read_bytes().startswith(b"this is a log file")


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    db.close()
    with pytest.raises(OutboxError, match="is not a factory-evidence outbox"):
        open_box(path)


def test_an_unwritable_place_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="cannot open the outbox"):
        open_box(blocker / "sub" / "o.db")


def test_two_openers_creating_the_same_new_outbox_both_succeed(tmp_path: Path) -> None:
    """The agent creating its outbox while a tool opens the same new file: both find it
    empty. Before the schema was idempotent the later one failed ("table batch already
    exists"), which a test reading the agent's outbox hit under load."""
    for i in range(30):
        path = tmp_path / f"outbox-{i}.db"
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_it(
            p: Path = path, b: threading.Barrier = barrier, errors: list[BaseException] = errors
        ) -> None:
            b.wait()
            try:
                with Outbox(p, max_bytes=1 << 20, max_age_s=60) as ob:
                    ob.start_boot()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        with Outbox(path, max_bytes=1 << 20, max_age_s=60) as ob:
            assert ob.start_boot() == 5  # four boots before this one, none lost


def test_dropped_batches_are_kept_as_ranges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    with open_box(tmp_path / "o.db", max_bytes=MB, max_age_s=100.0, clock=lambda: now[0]) as ob:
        chunk = b"x" * (300 * 1024)
        for seq in range(1, 8):  # seq 1..4 dropped, one per append: one range, extended
            now[0] += 1
            ob.append(1, seq, now[0], 10, chunk, digest=bytes([seq]) * 32)
        assert [(r.boot, r.first_seq, r.last_seq, r.reason) for r in ob.dropped_ranges()] == [
            (1, 1, 4, "full")
        ]
        assert ob.dropped_ranges()[0].digest == bytes([4]) * 32  # the range's last batch
        assert ob.dropped_ranges()[0].wire() == [1, 1, 4, "full", 1_007_000]
        now[0] += 200  # the rest ages out: another reason, another range
        assert [b.seq for b in ob.expire()] == [5, 6, 7]
        ob.append(1, 8, now[0], 1, b"y")
        ob.append(1, 9, now[0] - 500, 1, b"z")  # sealed under a wrong clock: expired alone
        ob.delete([(1, 8)])
        ob.expire()
    with open_box(tmp_path / "o.db") as ob:  # kept in the file
        assert [(r.first_seq, r.last_seq, r.reason) for r in ob.dropped_ranges()] == [
            (1, 4, "full"),
            (5, 7, "expired"),
            (9, 9, "expired"),
        ]
        assert [r.first_seq for r in ob.dropped_ranges(2)] == [5, 9]  # the newest, oldest first
        monkeypatch.setattr("edge_agent.outbox.DROPPED_KEPT", 2)
        ob.append(2, 1, 0.0, 1, b"old")
        ob.expire()  # a fourth range: only the newest two are kept
        assert [(r.boot, r.first_seq) for r in ob.dropped_ranges()] == [(1, 9), (2, 1)]


_FORMAT_2 = """
CREATE TABLE batch (boot INTEGER NOT NULL, seq INTEGER NOT NULL, created REAL NOT NULL,
    samples INTEGER NOT NULL, bytes INTEGER NOT NULL, payload BLOB NOT NULL, digest BLOB,
    PRIMARY KEY (boot, seq)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('boot', 4), ('dropped_batches', 2), ('dropped_samples', 9);
CREATE TABLE sent (boot INTEGER NOT NULL, seq INTEGER NOT NULL, first REAL NOT NULL,
    due REAL NOT NULL, tries INTEGER NOT NULL, PRIMARY KEY (boot, seq)) WITHOUT ROWID;
INSERT INTO batch VALUES (4, 1, 1.0, 3, 1, X'61', X'00');
INSERT INTO sent VALUES (4, 1, 2.0, 3.0, 1);
INSERT INTO meta VALUES ('last_digest', X'00');
PRAGMA application_id = 1178947394;
PRAGMA user_version = 2;
"""


def test_an_outbox_of_format_2_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with sqlite3.connect(path) as db:  # the contract-2 agent before the drop ranges
        db.executescript(_FORMAT_2)
    db.close()
    with open_box(path, max_bytes=MB) as ob:
        assert [(b.boot, b.seq, b.payload, b.resend) for b in ob.pending(10)] == [
            (4, 1, b"a", True)
        ]
        stats = ob.stats()
        assert (stats.sent, stats.dropped_batches, stats.dropped_samples) == (1, 2, 9)
        assert ob.last_digest() == b"\x00"
        assert ob.dropped_ranges() == []
        assert ob.start_boot() == 5
        ob.append(5, 1, 2.0, 1, b"b" * (MB + 1))  # drops boot 4 seq 1: recorded
        assert [(r.boot, r.first_seq, r.last_seq) for r in ob.dropped_ranges()] == [(4, 1, 1)]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
