"""`ingest-server run`: consume MQTT and store, in this process or in N worker processes.

The command's options; its start (migrations, TimescaleDB policies, the report signing
key); the consumer loop with its periodic summary and upkeep (rollups for late data,
retention); and the supervisor of `--workers N`, which starts each worker as
`ingest-server run` again and restarts it when it exits. SIGTERM and SIGINT, once
consuming, finish the group in hand and stop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.contract.secrets import read_secret
from ingest_server.cli.common import (
    DatabaseUnavailableError,
    db_args,
    default_key_path,
    duration,
    resolve_dsn,
)
from ingest_server.db.schema import (
    apply_policies,
    delete_expired,
    migrate,
    policy_jobs,
    refresh_rollups,
    run_policy_job,
)
from ingest_server.errors import FactoryEvidenceError
from ingest_server.evidence.keys import key_id, load_or_create_key, register_key
from ingest_server.files import write_atomic
from ingest_server.ingest.consumer import Consumer, ConsumerConfig

log = logging.getLogger("ingest_server")


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    run = sub.add_parser("run", help="consume MQTT and store")
    db_args(run)
    run.add_argument("--mqtt", default=os.environ.get("FE_MQTT_URL", "mqtt://127.0.0.1:1883"))
    run.add_argument("--client-id", default=f"ingest-{socket.gethostname()}")
    run.add_argument("--share-group", default="ingest")
    run.add_argument("--mqtt-username")
    run.add_argument("--mqtt-password-file", type=Path)
    run.add_argument("--mqtt-ca", type=Path, help="CA bundle for mqtts://")
    run.add_argument("--max-past", type=duration, default=timedelta(days=400))
    run.add_argument("--max-future", type=duration, default=timedelta(minutes=5))
    run.add_argument("--compress-after", type=duration, default=timedelta(days=7))
    run.add_argument("--retention", type=duration, default=None, help="e.g. 1095d; default keep")
    run.add_argument("--summary-every", type=float, default=10.0, help="seconds; 0: quiet")
    run.add_argument(
        "--upkeep-every", type=float, default=60.0, help="seconds between retention/rollup runs"
    )
    run.add_argument(
        "--tsa",
        action="append",
        default=[],
        metavar="URL",
        help="an RFC 3161 time-stamping authority: each finished day's signed batches are "
        "anchored with it (ingest-server anchor --pending, every --anchor-every); repeat for "
        "several",
    )
    run.add_argument(
        "--tsa-cert",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="a TSA's certificate chain (PEM); a token is kept only if it verifies",
    )
    run.add_argument(
        "--anchor-every", type=float, default=3600.0, help="seconds between anchoring runs"
    )
    run.add_argument("--ready-file", type=Path, help="write the DSN and mode here once consuming")
    run.add_argument(
        "--retire",
        action="store_true",
        help="take this --client-id out of service: leave the share group, write what the "
        "broker queued for it, then end its session and exit",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="consumer processes on this machine (client ids CLIENT-ID-0..N-1); one Python "
        "process is bound by its GIL, two take about twice the samples on two cores",
    )
    run.add_argument(
        "--signing-key",
        type=Path,
        help="report signing key, created on first start (default DATA_DIR/keys/"
        "report-signing.pem)",
    )


def _write_ready(path: Path, doc: dict[str, Any]) -> None:
    """Written whole, then renamed into place: whoever waits for the file never reads it
    half-written (a test did, and failed on an empty file)."""
    write_atomic(path, json.dumps(doc).encode(), 0o644)


def cmd_run(args: argparse.Namespace, argv: list[str]) -> int:

    if args.retire and args.workers > 1:
        raise ValueError(
            "--retire takes one client id: run it without --workers, once for each worker "
            "id to retire (CLIENT-ID-0, CLIENT-ID-1, ...)"
        )
    password = None
    if args.mqtt_password_file is not None:
        password = read_secret(args.mqtt_password_file, "MQTT password").decode()
    dsn, pg = resolve_dsn(args, wait_s=float("inf"))
    stop = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("signal %d: finishing the group in hand and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        info = migrate(dsn)
        log.info(
            "storage mode: %s%s, schema version %d",
            info.mode,
            f" (TimescaleDB {info.timescale_version})"
            if info.timescale_version
            else " (TimescaleDB not available: plain PostgreSQL, rollups kept by the server)",
            info.version,
        )
        for done in apply_policies(
            dsn, compress_after=args.compress_after, retention=args.retention
        ):
            log.info("TimescaleDB policy: %s", done)
        _signing_key(args, dsn)
        if args.workers > 1:
            return _supervise(args, argv, dsn, info.mode, stop)
        return _consume(args, dsn, info.mode, password, stop)
    finally:
        if pg is not None:
            pg.release()


def _signing_key(args: argparse.Namespace, dsn: str) -> None:
    """The report signing key exists from the first start on; its public half is in the
    database, where verifiers find it by id."""

    path = args.signing_key or default_key_path(args.data_dir)
    key = load_or_create_key(path)
    with psycopg.connect(dsn) as conn:
        register_key(conn, key.public_key())
    log.info("report signing key %s (%s)", key_id(key.public_key()), path)


def _consume(
    args: argparse.Namespace, dsn: str, mode: str, password: str | None, stop: threading.Event
) -> int:

    cfg = ConsumerConfig(
        mqtt_url=args.mqtt,
        dsn=dsn,
        client_id=args.client_id,
        share_group=args.share_group,
        username=args.mqtt_username,
        password=password,
        ca_file=args.mqtt_ca,
        max_past_ms=int(args.max_past.total_seconds() * 1000) if args.max_past else 2**62,
        max_future_ms=int(args.max_future.total_seconds() * 1000) if args.max_future else 2**62,
        mode=mode,
        retire=args.retire,
    )
    consumer = Consumer(cfg)
    consumer.start()
    try:
        if args.ready_file:
            # "once consuming": subscribed, not merely connecting; a message published
            # before a new session's SUBACK reaches no one
            while not consumer.subscribed.wait(0.2) and not stop.is_set():
                pass
            if consumer.subscribed.is_set():
                _write_ready(args.ready_file, {"dsn": dsn, "mode": mode, "pid": os.getpid()})
        last, last_samples = time.monotonic(), 0
        last_upkeep = time.monotonic()
        policy_runs = PolicyJobRunner()
        anchoring = _Anchoring(args, dsn)
        while not stop.wait(0.5):
            now = time.monotonic()
            if args.retire and consumer.drained(idle_s=5.0):
                log.info(
                    "retired %s: drained %d samples; its broker session ends now",
                    args.client_id,
                    consumer.counters.samples_new,
                )
                break
            if args.upkeep_every and now - last_upkeep >= args.upkeep_every:
                last_upkeep = now
                upkeep(
                    dsn, mode, consumer.counters.take_written_span(), args.retention, policy_runs
                )
            anchoring.maybe(now)
            if args.summary_every and now - last >= args.summary_every:
                c = consumer.counters
                rate = (c.samples_new - last_samples) / (now - last)
                log.info(
                    "%.0f samples/s; stored %d samples in %d batches (%d repeated), "
                    "%d dead letters, %d db errors%s",
                    rate,
                    c.samples_new,
                    c.batches_new,
                    c.batches_repeated,
                    c.dead_letters,
                    c.db_errors,
                    "" if consumer.connected.is_set() else "; broker not connected",
                )
                last, last_samples = now, c.samples_new
    finally:
        consumer.stop()
    return 0


# options a worker gets from its supervisor, not from the command line
_OWN = {"--workers": 1, "--client-id": 1, "--dsn": 1, "--data-dir": 1, "--ready-file": 1}


def _worker_argv(argv: list[str], dsn: str, client_id: str, ready: Path) -> list[str]:
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in _OWN:
            skip = 0 if "=" in arg else _OWN[name]
            continue
        out.append(arg)
    own = ["--workers", "1", "--client-id", client_id, "--dsn", dsn, "--ready-file", str(ready)]
    return [*out, *own]


def _supervise(
    args: argparse.Namespace, argv: list[str], dsn: str, mode: str, stop: threading.Event
) -> int:
    """N consumer processes on the shared subscription (one Python process is bounded by
    its GIL); each keeps its client id, and so its broker session, across restarts, and
    does its own upkeep."""

    run_dir = Path(tempfile.mkdtemp(prefix="ingest-workers-"))
    cmd = [sys.executable, "-m", "ingest_server.cli.main", "run"]
    workers: dict[int, subprocess.Popen[bytes]] = {}

    def spawn(i: int) -> None:
        ready = run_dir / f"worker-{i}.ready"
        ready.unlink(missing_ok=True)
        worker_args = _worker_argv(argv, dsn, f"{args.client_id}-{i}", ready)
        workers[i] = subprocess.Popen([*cmd, *worker_args])

    for i in range(args.workers):
        spawn(i)
    try:
        deadline = time.monotonic() + 120
        while not all((run_dir / f"worker-{i}.ready").exists() for i in workers):
            if stop.wait(0.1) or time.monotonic() > deadline:
                break
            for i, proc in workers.items():
                if proc.poll() is not None:
                    raise DatabaseUnavailableError(
                        f"worker {i} stopped at start ({proc.returncode})"
                    )
        log.info("%d workers consuming as %s-0..%d", len(workers), args.client_id, len(workers) - 1)
        if args.ready_file:
            pids = [p.pid for p in workers.values()]
            _write_ready(
                args.ready_file, {"dsn": dsn, "mode": mode, "pid": os.getpid(), "workers": pids}
            )
        while not stop.wait(0.5):
            for i, proc in list(workers.items()):
                if proc.poll() is not None:
                    log.error("worker %d exited (%s); restarting it", i, proc.returncode)
                    spawn(i)
    finally:
        _stop_workers(workers)
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0


def _stop_workers(workers: dict[int, Any]) -> None:

    for proc in workers.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers.values():
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


class PolicyJobRunner:
    """Runs the project's TimescaleDB policy jobs (compression, retention, the refresh of
    `samples_hourly`) itself while the TimescaleDB scheduler's runs of them fail.

    Seen with TimescaleDB 2.28.3 on PostgreSQL 15.20: every background run ends with
    `cannot drop portal "" while it is being set up`, so job_stats says Failed and the
    scheduler falls back to its retry backoff; `CALL run_job` from a session works. A
    job is run at most once per its schedule_interval, timed here: a run by `run_job`
    does not show in job_stats. When the scheduler's runs succeed, nothing is done."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_run: dict[int, float] = {}  # job id -> clock() when this process ran it
        self._announced: set[int] = set()  # jobs whose failing scheduler has been logged

    def __call__(self, dsn: str) -> list[int]:
        """One round; returns the ids of the jobs this process ran."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            jobs = policy_jobs(conn)
        ran: list[int] = []
        for job in jobs:
            name = f"TimescaleDB job {job.job_id} ({job.proc_name} on {job.relation})"
            if not job.scheduler_fails:
                if job.job_id in self._announced:
                    log.info("%s: the scheduler's runs succeed again; left to it", name)
                    self._announced.discard(job.job_id)
                self._last_run.pop(job.job_id, None)
                continue
            if job.job_id not in self._announced:
                self._announced.add(job.job_id)
                log.warning(
                    "%s: the TimescaleDB scheduler's runs of it fail (%s); the server runs "
                    "it itself, every %s, while they do",
                    name,
                    job.last_error or "no row in job_errors",
                    job.schedule_interval,
                )
            now = self._clock()
            last = self._last_run.get(job.job_id)
            if last is not None and now - last < job.schedule_interval.total_seconds():
                continue
            self._last_run[job.job_id] = now  # a failed run, too, is retried next interval
            started = time.monotonic()
            try:
                if not run_policy_job(dsn, job.job_id):
                    log.debug("%s: another server process is running it", name)
                    continue
            except psycopg.Error as exc:
                log.warning(
                    "%s: the server's run of it failed (%s); next try in %s",
                    name,
                    str(exc).strip(),
                    job.schedule_interval,
                )
                continue
            log.debug("%s: run by the server in %.1f s", name, time.monotonic() - started)
            ran.append(job.job_id)
        return ran


class _Anchoring:
    """`run --tsa`: each finished day anchored in time (cli/anchor.py), every
    --anchor-every seconds, the first time a minute after the start. A failure is logged
    and retried next time: the consumer goes on."""

    def __init__(self, args: argparse.Namespace, dsn: str) -> None:
        from ingest_server.cli.anchor import anchor_pending_everywhere  # noqa: PLC0415 - on --tsa only
        from ingest_server.evidence.timestamp import load_trust  # noqa: PLC0415 - on --tsa only

        self.run = anchor_pending_everywhere
        self.dsn, self.urls, self.every = dsn, list(args.tsa), args.anchor_every
        self.trusts = [load_trust(f) for f in args.tsa_cert] if args.tsa else []
        self.next = time.monotonic() + min(60.0, self.every)

    def maybe(self, now: float) -> None:
        if not self.urls or self.every <= 0 or now < self.next:
            return
        self.next = now + self.every
        try:
            done = self.run(self.dsn, self.urls, self.trusts)
        except (psycopg.Error, FactoryEvidenceError) as exc:
            log.warning("anchoring failed (%s); retrying in %.0f s", str(exc).strip(), self.every)
            return
        if done and any(code != 0 for codes in done.values() for code in codes):
            log.warning("anchoring: a day is not anchored yet (see above); retried in %.0f s",
                        self.every)  # fmt: skip


def upkeep(
    dsn: str,
    mode: str,
    span: tuple[datetime, datetime] | None,
    retention: timedelta | None,
    policy_runs: PolicyJobRunner | None = None,
) -> None:
    """Periodic work beside the consumer: rollups for late data (TimescaleDB), retention
    (plain PostgreSQL; TimescaleDB has its own policy), and the TimescaleDB policy jobs
    the scheduler fails to run (`policy_runs`, kept for the process). Failures are
    logged and retried at the next round: the consumer goes on."""

    try:
        # the policy refreshes the last 3 days; older late data is refreshed here
        horizon = datetime.now(UTC) - timedelta(days=2)
        if mode == "timescale" and span is not None and span[0] < horizon:
            refresh_rollups(dsn, span[0], min(span[1], horizon))
        if mode == "plain" and retention is not None:
            with psycopg.connect(dsn) as conn:
                n = delete_expired(conn, retention)
            if n:
                log.info("retention: deleted %d samples older than %s", n, retention)
    except psycopg.Error as exc:
        log.warning("upkeep failed (%s); retrying at the next round", str(exc).strip())
    if mode == "timescale" and policy_runs is not None:
        try:
            policy_runs(dsn)
        except psycopg.Error as exc:
            log.warning(
                "upkeep: checking the TimescaleDB policy jobs failed (%s); retrying at the "
                "next round",
                str(exc).strip(),
            )
