"""Versioned migrations and the storage mode (TimescaleDB or plain PostgreSQL).

Migrations are the files `migrations/NNNN_name.sql`, applied in order, each in its own
transaction, under an advisory lock so that several servers starting at once apply each
exactly once. A file has a common part and optional sections for one storage mode
(`--- mode: plain`, `--- mode: timescale`, `--- mode: timescale-autocommit` for what
TimescaleDB will not run inside a transaction).

The mode is chosen once, when the schema is created: `timescale` when the extension
can be created in the database, else `plain`; it is kept in `settings`. Everything
above the storage layer (derived data, KPI queries) reads the same tables and views in
both modes.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Literal

import psycopg
from psycopg import sql

from ingest_server.errors import UnavailableError

log = logging.getLogger(__name__)

Mode = Literal["plain", "timescale"]
_LOCK_ID = 0x6665_0001  # 'fe' 1: pg_advisory_xact_lock key for migrations
_SECTION = re.compile(r"^--- mode: (plain|timescale|timescale-autocommit)\s*$", re.MULTILINE)


class SchemaError(UnavailableError):
    """The database cannot be brought to the expected schema; the message says why."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    common: str
    sections: dict[str, str]

    def for_mode(self, mode: Mode) -> tuple[str, str]:
        """(SQL inside the transaction, SQL after it) for this mode."""
        inside = self.common + "\n" + self.sections.get(mode, "")
        after = self.sections.get("timescale-autocommit", "") if mode == "timescale" else ""
        return inside, after


def load_migrations() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("ingest_server.db.migrations").iterdir():
        m = re.fullmatch(r"(\d{4})_(\w+)\.sql", entry.name)
        if not m:
            continue
        text = entry.read_text(encoding="utf-8")
        parts = _SECTION.split(text)
        sections = {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}
        found.append(Migration(int(m.group(1)), m.group(2), parts[0], sections))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return found


@dataclass(frozen=True)
class SchemaInfo:
    mode: Mode
    version: int
    applied: list[int]
    timescale_version: str | None


def _timescale_available(conn: psycopg.Connection) -> bool:
    row = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return False
    try:
        with conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is installed but cannot be created (%s); add it to "
            "shared_preload_libraries to use it. Using plain PostgreSQL.",
            str(exc).strip().splitlines()[0],
        )
        return False
    return True


def _extension_version(conn: psycopg.Connection) -> str | None:
    row = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    return None if row is None else str(row[0])


def migrate(dsn: str, *, allow_timescale: bool = True) -> SchemaInfo:
    """Bring the database to the newest schema; returns the mode and what was applied."""
    migrations = load_migrations()
    applied: list[int] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        # under the lock too: two servers starting on a new database at once would both
        # CREATE TABLE IF NOT EXISTS, and one of them fail on the catalogue's unique key
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now(), mode text NOT NULL)"
            )
        for mig in migrations:
            after = ""
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                done = conn.execute(
                    "SELECT mode FROM schema_migrations WHERE version = %s", (mig.version,)
                ).fetchone()
                if done is not None:
                    continue
                mode = _current_mode(conn)
                if mode is None:
                    mode = (
                        "timescale" if allow_timescale and _timescale_available(conn) else "plain"
                    )
                inside, after = mig.for_mode(mode)
                conn.execute(inside.encode())  # our own file, not user input
                if mig.version == 1:
                    conn.execute(
                        "INSERT INTO settings (key, value) VALUES ('storage_mode', %s)", (mode,)
                    )
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, mode) VALUES (%s, %s, %s)",
                    (mig.version, mig.name, mode),
                )
            if after.strip():
                for statement in _statements(after):
                    conn.execute(statement.encode())
            applied.append(mig.version)
            log.info("applied migration %04d_%s (%s)", mig.version, mig.name, mode)
        info = describe(conn)
    return SchemaInfo(info.mode, info.version, applied, info.timescale_version)


def _statements(text: str) -> list[str]:
    """Split a section on statement ends (our files put no ';' inside literals)."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _current_mode(conn: psycopg.Connection) -> Mode | None:
    exists = conn.execute("SELECT to_regclass('settings')").fetchone()
    if exists is None or exists[0] is None:
        return None
    row = conn.execute("SELECT value FROM settings WHERE key = 'storage_mode'").fetchone()
    if row is None:
        return None
    mode = str(row[0])
    if mode not in ("plain", "timescale"):
        raise SchemaError(f"settings.storage_mode is {mode!r}; expected plain or timescale")
    return mode  # type: ignore[return-value]


def describe(conn: psycopg.Connection) -> SchemaInfo:
    """The schema version and mode of a migrated database."""
    exists = conn.execute("SELECT to_regclass('schema_migrations')").fetchone()
    if exists is None or exists[0] is None:
        raise SchemaError("the database has no factory-evidence schema: run ingest-server migrate")
    rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    versions = [int(r[0]) for r in rows]
    mode = _current_mode(conn) or "plain"
    newest = len(load_migrations())
    if versions and versions[-1] > newest:
        raise SchemaError(
            f"the database is at schema version {versions[-1]}, newer than this server "
            f"({newest}): upgrade factory-evidence"
        )
    return SchemaInfo(mode, versions[-1] if versions else 0, [], _extension_version(conn))


def apply_policies(
    dsn: str, *, compress_after: timedelta | None, retention: timedelta | None
) -> list[str]:
    """TimescaleDB compression and retention policies; in plain mode, nothing to set up
    (retention is enforced by `delete_expired`). Returns what was done, for the log."""
    done: list[str] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        if describe(conn).mode != "timescale":
            return done
        conn.execute("SELECT remove_compression_policy('samples', if_exists => true)")
        if compress_after is not None:
            conn.execute(
                "SELECT add_compression_policy('samples', %s::interval)", (compress_after,)
            )
            done.append(f"compress chunks older than {compress_after}")
        conn.execute("SELECT remove_retention_policy('samples', if_exists => true)")
        if retention is not None:
            conn.execute("SELECT add_retention_policy('samples', %s::interval)", (retention,))
            done.append(f"drop chunks older than {retention}")
    return done


def refresh_rollups(dsn: str, first: datetime, last: datetime) -> None:
    """TimescaleDB: materialise the hourly rollups over [first, last] now. The policy
    refreshes only the last days; a backlog replayed after a long outage would otherwise
    stay out of the materialised rollups (real-time aggregation covers only new data)."""
    start = first.replace(minute=0, second=0, microsecond=0)
    end = last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CALL refresh_continuous_aggregate('samples_hourly', %s, %s)", (start, end))


# The policies the project sets up: compression and retention on `samples` (apply_policies),
# the refresh of `samples_hourly` (migration 0001). Other jobs in the database are not ours.
_POLICY_PROCS = ("policy_compression", "policy_retention", "policy_refresh_continuous_aggregate")
_JOB_LOCK = 0x6665_0002  # 'fe' 2: pg_try_advisory_lock(key, job id) while the server runs a job


@dataclass(frozen=True)
class PolicyJob:
    """One of the project's TimescaleDB policy jobs and how the scheduler's last run went."""

    job_id: int
    proc_name: str
    relation: str  # samples or samples_hourly
    schedule_interval: timedelta
    last_run_status: str | None  # Success, Failed; None: the scheduler has not run it yet
    last_error: str | None  # the newest row of job_errors: "SQLSTATE: message"

    @property
    def scheduler_fails(self) -> bool:
        return self.last_run_status == "Failed"


def policy_jobs(conn: psycopg.Connection) -> list[PolicyJob]:
    """The project's own scheduled policy jobs (on `samples` and on the `samples_hourly`
    continuous aggregate), with the status of the scheduler's last run. A run by
    `CALL run_job` does not show in job_stats or job_errors (TimescaleDB 2.28)."""
    rows = conn.execute(
        """
        SELECT j.job_id, j.proc_name, j.hypertable_name, j.schedule_interval,
               s.last_run_status, e.sqlerrcode || ': ' || e.err_message
        FROM timescaledb_information.jobs j
        LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
        LEFT JOIN LATERAL (
            SELECT sqlerrcode, err_message FROM timescaledb_information.job_errors x
            WHERE x.job_id = j.job_id ORDER BY x.start_time DESC LIMIT 1
        ) e ON true
        WHERE j.scheduled
          AND j.proc_schema = '_timescaledb_functions'
          AND j.proc_name = ANY(%s)
          AND to_regclass(format('%%I.%%I', j.hypertable_schema, j.hypertable_name))
              IN (to_regclass('samples'), to_regclass('samples_hourly'))
        ORDER BY j.job_id
        """,
        (list(_POLICY_PROCS),),
    ).fetchall()
    return [
        PolicyJob(int(r[0]), str(r[1]), str(r[2]), r[3], r[4], r[5] and str(r[5])) for r in rows
    ]


def run_policy_job(dsn: str, job_id: int) -> bool:
    """Run a job now, in this session (`CALL run_job`, which commits as it goes). False
    when another server process is running it already (an advisory lock per job)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (_JOB_LOCK, job_id)).fetchone()
        if row is None or not row[0]:
            return False
        conn.execute("CALL run_job(%s::integer)", (job_id,))
    return True  # the session lock ends with the connection


def delete_expired(conn: psycopg.Connection, retention: timedelta) -> int:
    """Plain mode retention: delete raw samples older than `retention` (derived data and
    rollups stay). Returns the number of rows deleted."""
    cur = conn.execute(sql.SQL("DELETE FROM samples WHERE ts < now() - %s::interval"), (retention,))
    return cur.rowcount
