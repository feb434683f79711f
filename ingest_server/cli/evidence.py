"""`ingest-server report | verify | render | keys | production | factors`: the evidence side.

    ingest-server report --enterprise E --from 2026-11-01 --to 2026-11-30 --out r.json
                         [--baseline-from D --baseline-to D] [--html F] [--xlsx F]
                         [--pdf F] [--bundle F.zip]
    ingest-server verify r.json [--dsn DSN] [--public-key server.pub]
    ingest-server verify bundle.zip --trust trust.json [--json] [--lang zh|en]  (verifier.py)
    ingest-server render r.json [--html F] [--xlsx F] [--pdf F]
    ingest-server keys export [--out server.pub] | rotate [--compromised] | list
    ingest-server production add --enterprise E --from D --to D --output N --value-added X
    ingest-server production list --enterprise E
    ingest-server factors

Exit codes: 0 ok (verify: signature valid and every figure recomputed equal), 3 verify
found a bad signature, an untrusted key or a difference, 2 bad arguments or input, 1 the
database could not be used, or for --pdf no browser could print the report; a bundle
checked with --trust also 4 (incomplete: a check could not be run), cli/verifier.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from pathlib import Path
from typing import Any

import psycopg

from ingest_server.cli import verifier
from ingest_server.cli.common import (
    date_arg,
    db_args,
    migrated_connection,
    resolve_dsn,
    signing_key_path,
)
from ingest_server.db.schema import migrate
from ingest_server.evidence import bundle
from ingest_server.evidence.keys import (
    key_id,
    load_or_create_key,
    load_public_key,
    public_pem,
    rotate_key,
)
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_pdf import find_browser, render_pdf
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import parse_report, verdict_json, verify
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.period import check_period
from ingest_server.reference.factors import (
    EMISSION_TABLES,
    ENERGY_TABLES,
    emission_table,
    energy_table,
)
from ingest_server.repo import production, report_bundles, reports

VERIFY_FAILED = verifier.VERIFY_FAILED


def _instant(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: write e.g. 2026-11-30T12:00:00Z"
        ) from None
    if t.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone: add Z or +08:00")
    return t


def _share(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a share between 0 and 1, e.g. 0.8")
    return v


def add_parsers(  # noqa: PLR0915 (one statement per option)
    sub: Any,  # argparse's _SubParsersAction is private
) -> None:
    rep = sub.add_parser("report", help="compute the KPI evidence report of a period")
    db_args(rep)
    rep.add_argument("--enterprise", required=True)
    rep.add_argument("--from", dest="date_from", type=date_arg, required=True, help="local date")
    rep.add_argument(
        "--to", dest="date_to", type=date_arg, required=True, help="local date, inclusive"
    )
    rep.add_argument("--baseline-from", type=date_arg)
    rep.add_argument("--baseline-to", type=date_arg)
    rep.add_argument("--out", type=Path, help="report JSON (default: stdout)")
    rep.add_argument("--html", type=Path, help="also write the printable HTML rendering")
    rep.add_argument("--xlsx", type=Path, help="also write the XLSX rendering")
    rep.add_argument(
        "--pdf", type=Path,
        help="also write the printed report as PDF (headless Chromium: $FE_CHROMIUM or "
        "/usr/bin/chromium; fonts embedded)",
    )  # fmt: skip
    rep.add_argument(
        "--coverage-threshold",
        type=_share,
        default=0.8,
        help="share of planned time an NC machine must deliver data for to count as "
        "measured NC (default 0.8)",
    )
    rep.add_argument(
        "--heartbeat", type=float, default=300.0, help="the agents' heartbeat_s (default 300)"
    )
    rep.add_argument("--energy-factors", help="coefficient table version (default: newest)")
    rep.add_argument("--emission-factors", help="emission factor table version (default: newest)")
    rep.add_argument("--signing-key", type=Path, help="default: DATA_DIR/keys/report-signing.pem")
    rep.add_argument("--unsigned", action="store_true", help="a draft without signature")
    rep.add_argument("--as-of", type=_instant, help="pretend the report is made at this time")
    rep.add_argument(
        "--bundle", type=Path,
        help="also write the evidence bundle (zip: the report, raw samples, ledger, registry "
        "and its audit trail, entries, factors, keys, anchors; docs/evidence.md)",
    )  # fmt: skip
    rep.add_argument(
        "--no-bundle", action="store_true",
        help="store the signed report without its evidence bundle (by default one is built "
        "and kept with it for the console: about 5 s a million samples, all of them held in "
        "memory while it is built)",
    )  # fmt: skip

    verifier.add_verify_parser(sub)  # a report, or with --trust a bundle (cli/verifier.py)

    ren = sub.add_parser("render", help="render a report JSON as HTML, XLSX and/or PDF")
    ren.add_argument("report", type=Path)
    ren.add_argument("--html", type=Path)
    ren.add_argument("--xlsx", type=Path)
    ren.add_argument("--pdf", type=Path, help="the printed report (headless Chromium)")

    keys = sub.add_parser("keys", help="the report signing key")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    exp = keys_sub.add_parser("export", help="print the public key (created if missing)")
    exp.add_argument("--data-dir", type=Path, default=None)
    exp.add_argument("--signing-key", type=Path)
    exp.add_argument("--out", type=Path)
    rot = keys_sub.add_parser("rotate", help="replace the signing key; old reports stay verifiable")
    db_args(rot)
    rot.add_argument("--signing-key", type=Path)
    rot.add_argument(
        "--compromised", action="store_true",
        help="the old key leaked: revoke it (its reports are no longer trusted)",
    )  # fmt: skip
    kl = keys_sub.add_parser("list", help="the signing keys: created, retired, revoked")
    db_args(kl)

    prod = sub.add_parser("production", help="output and value added per period")
    prod_sub = prod.add_subparsers(dest="production_command", required=True)
    add = prod_sub.add_parser("add", help="enter output and/or value added for a period")
    db_args(add)
    add.add_argument("--enterprise", required=True)
    add.add_argument("--site", help="default: the whole enterprise")
    add.add_argument("--from", dest="date_from", type=date_arg, required=True)
    add.add_argument("--to", dest="date_to", type=date_arg, required=True)
    add.add_argument("--output", type=float, help="good product made in the period")
    add.add_argument("--unit", default="件", help="unit of the output (default 件)")
    add.add_argument("--value-added", type=float, help="工业增加值 in 10,000 CNY (万元)")
    add.add_argument("--note", default="")
    add.add_argument("--by", default="", help="who enters it (kept with the entry)")
    lst = prod_sub.add_parser("list", help="the entries of an enterprise")
    db_args(lst)
    lst.add_argument("--enterprise", required=True)

    sub.add_parser("factors", help="the coefficient and emission factor tables")


def cmd_render(args: argparse.Namespace) -> int:
    if args.pdf is not None:
        find_browser()  # no browser: say so before anything is written
    doc = _read_report(args.report)
    _render(doc, args.html, args.xlsx, args.pdf)
    return 0


def _render(doc: dict[str, Any], html: Path | None, xlsx: Path | None, pdf: Path | None) -> None:
    if html is not None:
        html.write_text(render_html(doc), encoding="utf-8")
        print(f"wrote {html}", file=sys.stderr)
    if xlsx is not None:
        render_xlsx(doc, xlsx)
        print(f"wrote {xlsx}", file=sys.stderr)
    if pdf is not None:
        pdf.write_bytes(render_pdf(doc))
        print(f"wrote {pdf}", file=sys.stderr)


def _keep_bundle(conn: psycopg.Connection, doc: dict[str, Any], made: bundle.Bundle | None) -> None:
    """The stored report's bundle kept with it (the console lists it, a verifier downloads
    it): the one of --bundle, else built now in the report's snapshot. A bundle that cannot
    be built leaves the report stored, with the reason recorded and said here."""

    def build(path: Path) -> int:
        b = made
        if b is None:  # report.json: the report's bytes as --out writes them
            text = json.dumps(doc, ensure_ascii=False, indent=1)
            b = bundle.collect(conn, doc, (text + "\n").encode())
        bundle.write(path, b)
        return b.samples

    kept = report_bundles.keep(conn, report_id=doc["report_id"], build=build)
    if kept is None or kept.sha256 is None:
        why = "it could not be recorded" if kept is None else kept.error
        print(f"warning: report {doc['report_id']} is stored without its evidence bundle: "
              f"{why}", file=sys.stderr)  # fmt: skip


def cmd_report(args: argparse.Namespace) -> int:
    check_period(args.date_from, args.date_to, args.baseline_from, args.baseline_to)
    if args.pdf is not None:
        find_browser()  # no browser: say so before the report is made and stored
    energy_table(args.energy_factors)  # fail early on an unknown version
    emission_table(args.emission_factors)
    req = Request(
        enterprise=args.enterprise,
        date_from=args.date_from,
        date_to=args.date_to,
        baseline_from=args.baseline_from,
        baseline_to=args.baseline_to,
        energy_version=args.energy_factors,
        emission_version=args.emission_factors,
        params=Parameters(coverage_threshold=args.coverage_threshold, heartbeat_s=args.heartbeat),
    )
    if args.bundle is not None and args.unsigned:
        raise ValueError("--bundle: a bundle carries a signed report; drop --unsigned")
    key = None if args.unsigned else load_or_create_key(signing_key_path(args))
    dsn, pg = resolve_dsn(args)
    evidence = None
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn, bundle.one_snapshot(conn):
            doc = make_report(conn, req, key=key, as_of=args.as_of)
            if args.bundle is not None:  # the report's bytes as --out writes them
                text = json.dumps(doc, ensure_ascii=False, indent=1)
                evidence = bundle.collect(conn, doc, (text + "\n").encode())
            if key is not None:
                reports.store_report(conn, doc, created_by=f"cli:{getpass.getuser()}")
                if evidence is not None or not args.no_bundle:
                    _keep_bundle(conn, doc, evidence)
    finally:
        if pg is not None:
            pg.release()
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    if evidence is not None:
        bundle.write(args.bundle, evidence)
        size = args.bundle.stat().st_size
        per = size / evidence.samples if evidence.samples else 0.0
        print(f"wrote {args.bundle} ({size:,} bytes, {evidence.samples:,} samples, "
              f"{per:.2f} bytes a sample)", file=sys.stderr)  # fmt: skip
    if args.out is None:
        print(text)
    else:
        args.out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    _render(doc, args.html, args.xlsx, args.pdf)
    for k in doc["kpis"]:
        value = "—" if k["value"] is None else f"{k['value']:.4g} {k['unit']}"
        print(f"  {k['name_en']:<44} {value}", file=sys.stderr)
    return 0


def _read_report(path: Path) -> dict[str, Any]:

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read report {path}: {exc}") from None
    return parse_report(data, str(path))  # the file's bytes as they are


def cmd_verify(args: argparse.Namespace) -> int:
    if args.trust is not None or args.lang is not None:  # a bundle, offline (verifier.py)
        return verifier.cmd_verify_bundle(args)
    doc = _read_report(args.report)
    trusted = load_public_key(args.public_key) if args.public_key else None
    if args.dsn is None and args.data_dir is None:
        verdict = verify(doc, trusted=trusted)
    else:
        dsn, pg = resolve_dsn(args)
        try:
            with psycopg.connect(dsn) as conn:
                verdict = verify(doc, conn=conn, trusted=trusted)
        finally:
            if pg is not None:
                pg.release()
    ok = verdict.ok and verdict.trusted
    if args.json:
        print(json.dumps(verdict_json(verdict), ensure_ascii=False, indent=1))
        return 0 if ok else VERIFY_FAILED
    print(f"report    {doc.get('report_id')}  {doc.get('enterprise', {}).get('id')}  "
          f"{doc.get('period', {}).get('from')}..{doc.get('period', {}).get('to')}")  # fmt: skip
    print(f"signature {verdict.signature}")
    if verdict.checks:
        print(f"{'item':<52} {'claimed':>16} {'recomputed':>16}  verdict")
        for c in verdict.checks:
            print(f"{c.item:<52} {_fmt(c.claimed):>16} {_fmt(c.recomputed):>16}  "
                  f"{'ok' if c.ok else 'MISMATCH'}")  # fmt: skip
        print(f"digest    {verdict.digest}")
    else:
        print("figures   not recomputed: pass --dsn to recompute every KPI from raw samples")
    for p in verdict.problems:
        print(f"problem   {p}")
    if ok:
        print("VERIFIED" + ("" if verdict.checks else " (signature only)"))
        return 0
    for r in verdict.reasons:  # root causes first; the codes are those of --json
        print(f"reason    {r.code}: {r.message}")
    print("NOT VERIFIED: " + "; ".join(r.code for r in verdict.reasons))
    return VERIFY_FAILED


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def cmd_keys_export(args: argparse.Namespace) -> int:

    key = load_or_create_key(signing_key_path(args))
    pem = public_pem(key.public_key())
    if args.out:
        args.out.write_text(pem, encoding="utf-8")
        print(f"wrote {args.out} (key id {key_id(key.public_key())})", file=sys.stderr)
    else:
        print(pem, end="")
        print(f"key id {key_id(key.public_key())}", file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace) -> int:

    if args.keys_command == "export":
        return cmd_keys_export(args)
    with migrated_connection(args) as conn:
        if args.keys_command == "rotate":
            path = signing_key_path(args)
            if not path.exists():
                raise ValueError(f"no signing key {path} to rotate; check --signing-key")
            old, new = rotate_key(conn, path, compromised=args.compromised)
            what = "revoked: its reports are no longer trusted" if args.compromised else (
                "retired: the reports it signed stay verifiable")  # fmt: skip
            print(f"signing key {old} {what}; new key {new} in {path}")
            print("running API servers use the new key from their next report; export "
                  "it for verifiers: ingest-server keys export", file=sys.stderr)  # fmt: skip
        else:
            for k in reports.list_keys(conn):
                retired, revoked = k.retired_at, k.revoked_at
                state = (f"revoked {revoked:%Y-%m-%d}" if revoked else
                         f"retired {retired:%Y-%m-%d}" if retired else "in use")  # fmt: skip
                print(f"{k.key_id}  created {k.created_at:%Y-%m-%d %H:%M}  {state}")
    return 0


def cmd_production(args: argparse.Namespace) -> int:

    if args.production_command == "add":
        if args.output is None and args.value_added is None:
            raise ValueError("give --output, --value-added, or both")
        if args.date_to < args.date_from:
            raise ValueError(f"--to {args.date_to} is before --from {args.date_from}")
        if args.output is not None and args.output < 0:
            raise ValueError("--output cannot be negative")
        if args.value_added is not None and args.value_added <= 0:
            raise ValueError("--value-added must be more than 0 (10,000 CNY)")
    dsn, pg = resolve_dsn(args)
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            if args.production_command == "add":
                return _production_add(conn, args)
            rows = production.list_entries(conn, enterprise=args.enterprise)
    finally:
        if pg is not None:
            pg.release()
    print(f"{'id':>5} {'site':<10} {'from':<10} {'to':<10} {'output':>12} {'value added 万元':>16}")
    for r in rows:
        out = "" if r["output"] is None else f"{r['output']:g} {r['output_unit']}"
        va = "" if r["value_added_10k_cny"] is None else f"{r['value_added_10k_cny']:g}"
        print(
            f"{r['id']:>5} {r['site_id'] or '(all)':<10} {r['period_from']!s:<10} "
            f"{r['period_to']!s:<10} {out:>12} {va:>16}  {r['note']}"
        )
    return 0


def _production_add(conn: psycopg.Connection, args: argparse.Namespace) -> int:
    entry_id = production.add_entry(
        conn,
        production.NewEntry(
            args.enterprise, args.site, args.date_from, args.date_to, args.output, args.unit,
            args.value_added, args.note, args.by,
        ),
    )  # fmt: skip
    conn.commit()
    print(f"entry {entry_id}: {args.enterprise} {args.date_from}..{args.date_to}")
    return 0


def cmd_factors(_args: argparse.Namespace) -> int:

    for t in ENERGY_TABLES.values():
        print(f"energy coefficients {t.version}: {t.title}")
        for r in t.rows:
            print(f"  {r.carrier:<12} {r.coefficient:>10g} {r.coefficient_unit:<10} {r.source}")
    for e in EMISSION_TABLES.values():
        print(f"emission factors {e.version}: {e.title}")
        for f in e.rows:
            print(f"  {f.carrier:<12} {f.region:<9} {f.year} {f.factor:>8g} {f.factor_unit:<10} "
                  f"{f.source}")  # fmt: skip
    return 0
