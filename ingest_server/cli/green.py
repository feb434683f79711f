"""`ingest-server green set | show`: what the enterprise enters for a period's
green-factory sheet and GHG report (docs/green-ghg.md).

    ingest-server green set --enterprise E --from D --to D --file green.yaml --by NAME
    ingest-server green show --enterprise E --from D --to D [--history] [--json]

The file (YAML or JSON) holds `indicators` (per indicator the sector's baseline and
leading value with their reference; for one no meter measures also its group, names,
unit, direction, value and evidence), `pv` (on-site generation: the generation meters or
an entered figure, what was exported, renewable power bought) and `process_emissions`
(from the ledger, each with its factor's source). It is checked whole before anything is
stored, and each problem names its field. `set` adds the period's entries with who
entered them; the newest are in force for a report of exactly that period, the older
ones stay as the trail (`show --history`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import psycopg
from pydantic import ValidationError

from edge_agent.contract.yaml12 import (
    InvalidFileError,
    YamlFileError,
    read_yaml_file,
    validation_problems,
)
from ingest_server.cli.common import date_arg, db_args, resolve_dsn
from ingest_server.db.schema import migrate
from ingest_server.errors import InvalidInputError
from ingest_server.evidence.green import GreenEntries, PeriodEntries, entry_problems
from ingest_server.repo import green

DOCS = "docs/green-ghg.md#entering-the-values"


class GreenFileError(InvalidFileError, InvalidInputError):
    kind = "green-factory entries file"


# the file `green set` reads (the body of the API's PUT is the same: api/routes/green.py)
GreenFile = PeriodEntries


def add_parsers(sub: Any) -> None:
    g = sub.add_parser(
        "green", help="green-factory and GHG entries of a period (docs/green-ghg.md)"
    )
    g_sub = g.add_subparsers(dest="green_command", required=True)
    st = g_sub.add_parser("set", help="enter the period's values from a YAML or JSON file")
    show = g_sub.add_parser("show", help="the entries in force for a period (or their trail)")
    for p in (st, show):
        db_args(p)
        p.add_argument("--enterprise", required=True)
        p.add_argument("--from", dest="date_from", type=date_arg, required=True)
        p.add_argument("--to", dest="date_to", type=date_arg, required=True)
    st.add_argument("--file", type=Path, required=True, help="indicators, pv, process_emissions")
    st.add_argument("--by", required=True, help="who enters them (kept with the entries)")
    st.add_argument("--note", default="")
    show.add_argument("--history", action="store_true", help="every entry of the period")
    show.add_argument("--json", action="store_true")


def read_file(path: Path) -> GreenFile:
    """The file, checked whole: GreenFileError lists each problem by its field."""
    try:
        doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise GreenFileError(str(path), [exc.problem]) from None
    try:
        f = GreenFile.model_validate(doc if doc is not None else {})
        problems = entry_problems(f)
    except ValidationError as exc:
        raise GreenFileError(str(path), validation_problems(exc, docs=DOCS)) from None
    if problems:
        raise GreenFileError(str(path), [p.en for p in problems])
    return f


def cmd_green(args: argparse.Namespace) -> int:
    if args.date_to < args.date_from:
        raise ValueError(f"--to {args.date_to} is before --from {args.date_from}")
    entered = read_file(args.file) if args.green_command == "set" else None
    if args.green_command == "set" and not args.by.strip():
        raise ValueError("--by: say who enters the values (it is kept with them)")
    dsn, pg = resolve_dsn(args)
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as conn:
            if entered is not None:
                return _set(conn, args, entered)
            ent, lo, hi = args.enterprise, args.date_from, args.date_to
            if args.history:
                rows = green.entry_trail(conn, enterprise=ent, date_from=lo, date_to=hi)
            else:
                row = green.current_entries(conn, enterprise=ent, date_from=lo, date_to=hi)
                rows = [] if row is None else [row]
    finally:
        if pg is not None:
            pg.release()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1, default=str))
        return 0
    if not rows:
        print(f"no entries for {args.enterprise} {args.date_from}..{args.date_to}: "
              "enter them with `ingest-server green set`")  # fmt: skip
        return 0
    for r in rows:
        _print(r)
    return 0


def _set(conn: psycopg.Connection, args: argparse.Namespace, f: GreenFile) -> int:
    entries = GreenEntries(indicators=f.indicators, pv=f.pv).model_dump(mode="json")
    row_id = green.add_entries(conn, green.NewGreenEntries(
        args.enterprise, args.date_from, args.date_to, entries,
        [p.model_dump(mode="json") for p in f.process_emissions], args.note, args.by,
    ))  # fmt: skip
    conn.commit()
    print(f"entry {row_id}: {args.enterprise} {args.date_from}..{args.date_to}: "
          f"{len(f.indicators)} indicator(s), {'PV, ' if f.pv else ''}"
          f"{len(f.process_emissions)} process emission(s), by {args.by}")  # fmt: skip
    return 0


def _print(r: dict[str, Any]) -> None:
    print(f"entry {r['id']}  {r['period_from']}..{r['period_to']}  by {r['entered_by']} at "
          f"{r['entered_at']:%Y-%m-%d %H:%M:%S%z}  {r['note']}".rstrip())  # fmt: skip
    for i in r["entries"].get("indicators") or []:
        figure = "" if i.get("value") is None else f"  value {i['value']:g} {i.get('unit') or ''}"
        print(f"  {i['id']:<30} baseline {i.get('baseline')}  leading {i.get('leading')}"
              f"{figure}  {i.get('reference') or ''}".rstrip())  # fmt: skip
    pv = r["entries"].get("pv")
    if pv:
        print(f"  pv  meters {', '.join(pv.get('meters') or []) or '-'}  generated "
              f"{pv.get('generation_kwh')} kWh  exported {pv.get('exported_kwh')} kWh  bought "
              f"{pv.get('purchased_renewable_kwh')} kWh")  # fmt: skip
    for p in r["process"]:
        print(f"  process  {p['source']}: {p['activity']:g} {p['unit']} x {p['factor']:g} "
              f"t{p['gas']}/{p['unit']} ({p['factor_source']})")  # fmt: skip
