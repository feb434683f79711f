"""`ingest-server ledger check`: do the stored batches of a period still say what each
gateway signed, and is every batch of their chains stored? (docs/ledger.md)

    ingest-server ledger check --enterprise E --from 2026-11-01 --to 2026-11-30 [--json]
                               [--max-past 400d]

One line per finding, naming the batch and what is wrong, then the notes (a new outbox;
batches the gateway declared its outbox dropped: lost, but disclosed, so not a finding),
then a summary. Exit codes: 0 clean (declared losses included), 3 something found, 2 bad
arguments (an unknown enterprise, bad dates), 1 the database could not be used.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ingest_server.cli.common import date_arg, db_args, duration, migrated_connection
from ingest_server.cli.verifier import VERIFY_FAILED
from ingest_server.evidence import ledger
from ingest_server.kpi.period import check_period
from ingest_server.repo import enterprises
from ingest_server.repo import ledger as rows
from ingest_server.repo.enterprises import EnterpriseNotFoundError


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    led = sub.add_parser("ledger", help="the ledger of gateway-signed batches")
    led_sub = led.add_subparsers(dest="ledger_command", required=True)
    chk = led_sub.add_parser(
        "check", help="recompute every stored batch of a period and follow the chains"
    )
    db_args(chk)
    chk.add_argument("--enterprise", required=True)
    chk.add_argument("--from", dest="date_from", type=date_arg, required=True, help="local date")
    chk.add_argument(
        "--to", dest="date_to", type=date_arg, required=True, help="local date, inclusive"
    )
    chk.add_argument(
        "--max-past",
        type=duration,
        default=rows.DEFAULT_MAX_PAST,
        help="the servers' `run --max-past` (default 400d): how old a stored sample can be "
        "when its batch arrived",
    )
    chk.add_argument("--json", action="store_true", help="the findings as JSON")


def cmd_ledger(args: argparse.Namespace) -> int:
    check_period(args.date_from, args.date_to)
    with migrated_connection(args) as conn:
        if not enterprises.enterprise_exists(conn, enterprise=args.enterprise):
            known = [e["id"] for e in enterprises.list_enterprises(conn)]
            raise EnterpriseNotFoundError(
                f"--enterprise: no enterprise {args.enterprise!r} in the registry (known: {known})"
            )
        where = {"enterprise": args.enterprise, "date_from": args.date_from,
                 "date_to": args.date_to}  # fmt: skip
        period = rows.period_batches(conn, **where)
        batches = [ledger.Batch(*r) for r in period.batches]
        named = [ledger.Batch(*r) for r in period.named]
        samples = (
            ledger.StoredSample(*r)
            for r in rows.batch_samples(
                conn,
                [r for r in period.batches if r[-1] == "period"],
                gids=list(period.gids.values()),
                max_past=args.max_past,
            )
        )
        keys = [ledger.GatewayKey(*r) for r in rows.gateway_keys(conn, period.gids)]
        orphans = [ledger.Orphans(*r) for r in rows.orphan_samples(conn, **where)]
        declared = [
            ledger.Declaration(*r) for r in rows.declarations(conn, period.batches, period.gids)
        ]
        result = ledger.check(
            batches, samples, keys, orphans=orphans, named=named, v1_batches=period.v1,
            declarations=declared,
        )  # fmt: skip
    if args.json:
        print(json.dumps(_json(args, result), ensure_ascii=False, indent=1))
    else:
        _print(args, result)
    return 0 if result.ok else VERIFY_FAILED


def _finding(f: ledger.Finding) -> dict[str, Any]:
    return {"gateway": f.gateway, "boot": f.boot, "seq": f.seq, "kind": f.kind,
            "message": f.message}  # fmt: skip


def _json(args: argparse.Namespace, r: ledger.Result) -> dict[str, Any]:
    return {
        "enterprise": args.enterprise,
        "from": args.date_from.isoformat(),
        "to": args.date_to.isoformat(),
        "ok": r.ok,
        "batches_checked": r.batches_checked,
        "samples_recomputed": r.samples_recomputed,
        "gaps": r.gaps,
        "batches_missing": r.missing,
        "gaps_declared": r.declared,
        "batches_lost": r.lost,
        "v1_batches": r.v1_batches,
        "findings": [_finding(f) for f in r.findings],
        "notes": [_finding(f) for f in r.notes],
    }


def _print(args: argparse.Namespace, r: ledger.Result) -> None:
    for f in r.findings:
        print(f"{f.kind:<15} {f.where()}: {f.message}")
    for f in r.notes:
        print(f"{'note':<15} {f.where()}: {f.message}")
    print(
        f"{args.enterprise} {args.date_from}..{args.date_to}: {r.batches_checked} batch(es) "
        f"checked, {r.samples_recomputed} sample(s) recomputed, {r.gaps} gap(s)"
        + (f" ({r.missing} batch(es) known missing)" if r.missing else "")
    )
    if r.declared:
        print(
            f"{r.declared} loss(es) declared by the gateways, {r.lost} batch(es) known lost: "
            "dropped by their outboxes (signed statuses verified), not missing on the server"
        )
    if r.v1_batches:
        print(f"{r.v1_batches} v1 batch(es) in the period: not gateway-signed, not checked")
    print("LEDGER OK" if r.ok else f"LEDGER NOT OK: {len(r.findings)} finding(s)")
