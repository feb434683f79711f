"""Commands that start the embedded PostgreSQL stop it again: under SIGTERM (systemd,
docker, kill) and SIGINT (Ctrl-C), after a kill -9 and a restart, and from a relative
--data-dir; a start that fails names the log and shows its end.

Each test runs the real command as a subprocess on a data directory of its own: a copy
of one cluster initialised (and migrated) once for the module, since initdb is the slow
part (about 1.5 s here, a start about 0.1 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest_server.db.embedded_pg import EmbeddedPostgres
from ingest_server.db.schema import migrate
from tests.harness.broker import Broker
from tests.harness.netutil import free_port

CLI = [sys.executable, "-m", "ingest_server.cli.main"]


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    """A migrated cluster, stopped; copied by each test. Outside pytest's private temporary
    tree: the server runs as an unprivileged user when the tests run as root."""
    root = Path(tempfile.mkdtemp(prefix="fe-proc-tpl-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root / "d")
    try:
        migrate(pg.start())
        pg.stop()
        yield root / "d"
    finally:
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory for the test's data directories; any server left in them is stopped."""
    root = Path(tempfile.mkdtemp(prefix="fe-proc-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for pid_file in root.glob("**/pgdata/postmaster.pid"):
            pid = postmaster_pid(pid_file.parent.parent)
            if pid is not None and alive(pid):
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown: only if a test failed
                wait_gone(pid)
        shutil.rmtree(root, ignore_errors=True)


def copy_of(template: Path, scratch: Path, name: str = "d") -> Path:
    dest = scratch / name
    # cp -a: the files keep their owner (the fe-postgres user when the tests run as root)
    subprocess.run(["cp", "-a", str(template), str(dest)], check=True)
    return dest


def postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def assert_no_server(data_dir: Path, pid: int) -> None:
    assert wait_gone(pid), f"the PostgreSQL server (pid {pid}) of {data_dir} is still running"
    assert not EmbeddedPostgres(data_dir).running(), f"a PostgreSQL server runs in {data_dir}"


def start_run(data_dir: Path, broker: Broker, tag: str) -> tuple[subprocess.Popen[str], int]:
    """`ingest-server run` on `data_dir`, consuming; (the process, its PostgreSQL's pid)."""
    ready = data_dir.parent / f"{tag}.ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [*CLI, "run", "--data-dir", str(data_dir), "--mqtt", f"mqtt://127.0.0.1:{broker.port}",
         "--client-id", f"proc-{tag}-{os.getpid()}", "--summary-every", "0",
         "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_until(ready.exists, proc, "the ready file")
    assert json.loads(ready.read_text())["pid"] == proc.pid
    return proc, server_pid(data_dir)


def start_api(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    """`ingest-server api` on `data_dir`, answering; (the process, its PostgreSQL's pid)."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "api", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=2):
                return True
        except OSError:
            return False

    wait_until(answers, proc, "the API to answer")
    return proc, server_pid(data_dir)


def server_pid(data_dir: Path) -> int:
    pid = postmaster_pid(data_dir)
    assert pid is not None, f"no PostgreSQL server in {data_dir}"
    assert alive(pid), f"the PostgreSQL server of {data_dir} is gone"
    return pid


def wait_until(
    ready: Callable[[], bool], proc: subprocess.Popen[str], what: str, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"{proc.args!r} exited ({proc.returncode}) before {what}:\n{out}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{proc.args!r}: no {what} in {timeout:.0f} s")
        time.sleep(0.1)


def stop_with(proc: subprocess.Popen[str], signum: int) -> str:
    proc.send_signal(signum)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
        pytest.fail(f"{proc.args!r} did not stop on signal {signum} within 60 s:\n{out}")
    return out


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("command", ["run", "api"])
def test_a_signal_stops_the_command_and_its_database(
    command: str, signum: int, template: Path, scratch: Path, mosquitto: Broker
) -> None:
    data_dir = copy_of(template, scratch)
    proc, pid = start_run(data_dir, mosquitto, "a") if command == "run" else start_api(data_dir)
    out = stop_with(proc, signum)
    assert proc.returncode == 0, out
    assert "Traceback" not in out, out
    assert_no_server(data_dir, pid)


def test_a_server_restarted_after_kill_9_owns_the_orphaned_database(
    template: Path, scratch: Path, mosquitto: Broker
) -> None:
    data_dir = copy_of(template, scratch)
    first, pid = start_run(data_dir, mosquitto, "first")
    first.kill()
    first.communicate(timeout=30)
    assert alive(pid), "kill -9 leaves the database running: no one could stop it"
    second, adopted = start_run(data_dir, mosquitto, "second")
    assert adopted == pid, "the restarted server goes on with the running database"
    out = stop_with(second, signal.SIGTERM)
    assert second.returncode == 0, out
    assert_no_server(data_dir, pid)
    assert "adopting it" in out, "the log says it took over a server left running"


def test_a_relative_data_dir_works(scratch: Path) -> None:
    """initdb and pg_ctl run in another directory: a relative path must not reach them."""
    done = subprocess.run(
        [*CLI, "migrate", "--data-dir", "data"],
        cwd=scratch, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (scratch / "data" / "pgdata" / "PG_VERSION").exists()
    assert "storage mode" in done.stdout
    assert not EmbeddedPostgres(scratch / "data").running(), "migrate stops what it started"


def test_a_failed_start_names_the_log_and_shows_its_end(template: Path, scratch: Path) -> None:
    data_dir = copy_of(template, scratch)
    with (data_dir / "pgdata" / "postgresql.conf").open("a") as conf:
        conf.write("shared_buffers = = 'lots'\n")
    done = subprocess.run(
        [*CLI, "status", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    log_file = data_dir / "postgresql.log"
    assert f"log {log_file}" in done.stderr, done.stderr
    last = [line for line in log_file.read_text().splitlines() if line.strip()][-1]
    assert last in done.stderr, "the log's last lines are in the message"
    assert "syntax error" in done.stderr, done.stderr
    assert "postgresql.conf" in done.stderr, done.stderr
    assert not EmbeddedPostgres(data_dir).running()
