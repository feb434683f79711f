"""`ingest-server migrate | status | registry import`: set the database up and look into it.

`migrate` applies the schema migrations, `status` prints what the database holds
(ingest_server/repo/status.py), `registry import` loads a registry file of enterprises,
sites, equipment and gateways with their keys (ingest_server/repo/registry.py).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

from ingest_server.cli.common import db_args, resolve_dsn
from ingest_server.cli.registry_targets import target_problems
from ingest_server.db.schema import describe, migrate
from ingest_server.repo import status
from ingest_server.repo.registry import (
    RegistryError,
    gateway_keys,
    import_with_trail,
    load_registry,
)


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
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
    imp.add_argument(
        "--account",
        metavar="NAME",
        help="who makes the changes, in the edit trail (default: cli:<OS user>)",
    )
    imp.add_argument(
        "--note", default="", metavar="TEXT", help="why, in the edit trail of each change"
    )


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
    """What `status --json` prints: the storage mode and schema, the counts, each
    gateway's last status, contract, newest batch and missing batches, and the dead
    letters' reasons of the last 24 hours."""
    with psycopg.connect(dsn) as conn:
        info = describe(conn)
        gateways = [
            {
                "gateway": f"{g.enterprise}/{g.site}/{g.gateway}",
                "online": g.online,
                "status_at": None if g.status_at is None else g.status_at.isoformat(),
                "boot": g.boot,
                "has_key": g.has_key,
                "contract": g.contract,
                "newest_batch": None
                if g.newest is None
                else {
                    "boot": g.newest[0],
                    "seq": g.newest[1],
                    "received_at": _iso(g.newest_at),
                },
                # the ledger: v2 batches sealed but not stored, i.e. not acked
                "missing_batches": g.missing,
                "declared_dropped": g.declared_dropped,
                "oldest_missing": None
                if g.oldest_missing is None
                else {
                    "boot": g.oldest_missing[0],
                    "seq": g.oldest_missing[1],
                },
            }
            for g in status.gateway_statuses(conn)
        ]
        reasons = [
            {"code": r.code, "reason": r.reason, "count": r.count, "last": r.last.isoformat()}
            for r in status.recent_dead_letter_reasons(conn)
        ]
        counts = {name: _iso(v) for name, v in status.counts(conn).items()}
        return {
            "storage_mode": info.mode,
            "timescaledb": info.timescale_version,
            "schema_version": info.version,
            **counts,
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
    print(f"{'storage mode:':<19}{mode}")
    print(f"{'schema version:':<19}{report['schema_version']}")
    for key in (
        "enterprises", "equipment", "devices", "series", "samples", "batches", "last_batch_at",
        "newest_sample", "state_intervals", "counter_deltas", "counter_anomalies", "dead_letters",
    ):  # fmt: skip
        print(f"{key + ':':<19}{report[key]}")  # the longest, counter_anomalies:, and a space
    if report["dead_letter_reasons_24h"]:
        print("dead letters in the last 24 h, by reason:")
        for r in report["dead_letter_reasons_24h"]:
            print(f"  {r['count']:>6}  [{r['code']}] {r['reason'][:90]}  (last {r['last']})")
    print("gateways:")
    for g in report["gateways"]:
        state = {True: "online", False: "offline", None: "never seen"}[g["online"]]
        key = "" if g["has_key"] else "  NO KEY: messages are dead-lettered"
        print(f"  {g['gateway']:<40} {state:<10} since {g['status_at']}{key}")
        newest = g["newest_batch"]
        line = f"    contract {g['contract']}, newest batch " + (
            "none" if newest is None else
            f"boot {newest['boot']} seq {newest['seq']} (received {newest['received_at']})"
        )  # fmt: skip
        if g["missing_batches"]:
            old = g["oldest_missing"]
            line += (f"; {g['missing_batches']} batch(es) missing in its chain, oldest boot "
                     f"{old['boot']} seq {old['seq']}: not stored, not acked")  # fmt: skip
        if g["declared_dropped"]:
            line += (f"; {g['declared_dropped']} batch(es) declared dropped by the gateway's "
                     "outbox (ledger check verifies the declaration)")  # fmt: skip
        print(line)
    return 0


def _os_account() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for the uid (a bare container)
        return "cli:unknown"


def cmd_registry_import(args: argparse.Namespace) -> int:

    account = args.account if args.account is not None else _os_account()
    if not account.strip():
        print("ingest-server: --account is empty: name who makes the changes, e.g. "
              "--account alice", file=sys.stderr)  # fmt: skip
        return 2
    registry = load_registry(args.file)
    problems = target_problems(registry)
    if problems:
        raise RegistryError(str(args.file), problems)
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
            counts, changes = import_with_trail(
                conn, registry, keys, account=account, note=args.note
            )
    finally:
        if pg is not None:
            pg.release()
    print(
        f"imported {args.file}: "
        + ", ".join(f"{n} {what}" for what, n in counts.items())
        + f"; keys for {len(keys)} gateway(s); {changes} change(s) on the edit trail"
        + (f" as {account}" if changes else "")
    )
    missing = sorted(
        g.id for e in registry.enterprises for s in e.sites for g in s.gateways if g.id not in keys
    )
    if missing:
        print(
            f"warning: no HMAC key given for gateway(s) {missing}; unless the database "
            "already has one, a contract-1 gateway's messages are dead-lettered until --key "
            "GATEWAY=KEYFILE is given (a contract-2 gateway needs none: enrol its own "
            "public key with `ingest-server gateway enroll`)",
            file=sys.stderr,
        )
    return 0
