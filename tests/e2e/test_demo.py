"""`make demo` runs the whole pipeline: started, summarised, stopped cleanly by a signal,
with nothing left running (no process, no PostgreSQL in its work directory)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ingest_server.db.embedded_pg import EmbeddedPostgres

pytestmark = pytest.mark.slow


class Demo:
    """`factory-demo` as a subprocess; its output read as it comes."""

    def __init__(self, workdir: Path, *options: str) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "simulators.demo", "--workdir", str(workdir), *options],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )  # fmt: skip
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.lines)

    def wait_for(self, done: Callable[[], bool], what: str, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.proc.poll() is None, f"the demo ended before {what}:\n{self.out}"
            assert time.monotonic() < deadline, f"no {what} in {timeout:.0f} s:\n{self.out}"
            time.sleep(0.02)

    def stop_with(self, signum: int) -> None:
        self.proc.send_signal(signum)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            pytest.fail(f"the demo did not stop on signal {signum} in 120 s:\n{self.out}")
        self._reader.join(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        left = self.database_pid()
        if left is not None:  # only when the test failed: stop it, immediate shutdown
            os.kill(left, signal.SIGQUIT)

    def database_pid(self) -> int | None:
        """The running server's; None while none runs (initdb's standalone backend
        writes its pid negated)."""
        try:
            pid = int((self.workdir / "db" / "pgdata" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid > 0 and alive(pid) else None

    def assert_nothing_left(self, pids: list[int]) -> None:
        for pid in pids:
            assert not alive(pid), f"process {pid} is still running:\n{self.out}"
        assert not EmbeddedPostgres(self.workdir / "db").running(), "the database still runs"


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    """The demo's processes (direct children), as found in /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_the_demo_runs_the_pipeline_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    demo = Demo(tmp_path / "demo", "--every", "4", "--history-days", "0.25")
    try:
        demo.wait_for(lambda: len(re.findall(r"[\d,]+ stored,", demo.out)) >= 3, "3 summaries")
        pids = [*children(demo.proc.pid), demo.database_pid() or 0]
        demo.stop_with(signal.SIGINT)
    finally:
        demo.close()
    out = demo.out
    assert demo.proc.returncode == 0, out
    stored = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) stored,", out)]
    assert stored[-1] > stored[0] > 0, "samples keep arriving"
    online = re.findall(r"(\d+)/(\d+) devices online", out)
    assert online[-1][0] == online[-1][1] != "0", out
    states = re.findall(
        r"(RUNNING|IDLE|SETUP|DOWN|PLANNED_STOP|OFF|OFFLINE|UNKNOWN) ([a-z0-9 -]+)", out
    )
    assert any("cnc-01" in devices.split() for _, devices in states), out  # live states
    assert not any("em-main" in devices.split() for _, devices in states), "meters have none"
    assert "0 dead letters" in out
    # the demo gateway speaks contract 2: every sample stored came signed by its own key
    assert re.findall(r"stored, (\d+)% gateway-signed", out)[-1] == "100", out
    # six hours of the plant's past went in first, through the agent's outbox
    backfilled = re.search(r"backfill \S+: (\d+) samples in \d+ batches", out)
    assert backfilled, out
    assert stored[0] >= int(backfilled.group(1)), "the past is stored before the live data"
    # the API with a login per role; the passwords kept for the next run, private
    assert re.search(r"API +http://127\.0\.0\.1:\d+/docs", out), out
    logins = json.loads((tmp_path / "demo" / "logins.json").read_text())
    assert sorted(logins) == ["demo-admin", "demo-enterprise", "demo-verifier"]
    assert all(f"{name:<16} {pw}" in out for name, pw in logins.items())
    assert (tmp_path / "demo" / "logins.json").stat().st_mode & 0o777 == 0o600
    for name in ("ingest-api", "edge-agent", "ingest-server", "factory-sim", "mosquitto"):
        assert f"stopped {name}" in out
    assert "killed" not in out, "every process stops on SIGTERM"
    assert len(pids) >= 6, f"the five processes and the database: {pids}"
    demo.assert_nothing_left(pids)


def test_sigterm_while_the_demo_starts_leaves_nothing_running(tmp_path: Path) -> None:
    """systemd, docker and `kill` send SIGTERM, and not only once the demo runs: here
    while its first database user (the registry import, or the server just after it)
    holds the embedded PostgreSQL."""
    demo = Demo(tmp_path / "demo", "--history-days", "0")
    try:
        demo.wait_for(lambda: demo.database_pid() is not None, "the database")
        pids = [*children(demo.proc.pid), demo.database_pid() or 0]
        demo.stop_with(signal.SIGTERM)
    finally:
        demo.close()
    assert demo.proc.returncode == 0, demo.out
    assert "killed" not in demo.out, demo.out
    demo.assert_nothing_left(pids)
    assert (tmp_path / "demo" / "db" / "pgdata" / "PG_VERSION").exists(), "initdb ran whole"
