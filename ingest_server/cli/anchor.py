"""`ingest-server anchor`: time-stamp each finished day of an enterprise's signed batches,
and check a day against its tokens later (docs/evidence.md).

    ingest-server anchor --enterprise E (--day D | --pending) --tsa URL [--tsa URL ...]
                         [--tsa-cert FILE ...] [--force] [--grace 1h]
    ingest-server anchor --check --enterprise E --day D --tsa-cert FILE [--tsa-cert FILE ...]

Anchoring builds the day's Merkle root over the digests of the v2 batches received that
day (evidence/merkle.py, leaf order 1) and asks every --tsa for an RFC 3161 token over it
(evidence/timestamp.py). A day can be anchored once it is over in every site's time zone
plus --grace (1 h: batches received just before midnight are still being written). A
TSA that cannot be reached leaves its error on the day and the next run asks again
(--pending: every finished day not yet anchored, and every anchored day that lacks a
token from one of the --tsa). With --tsa-cert, a token is kept only if it verifies under
one of the files. A day whose batch set changed after it was time-stamped is refused
unless --force (the old root and its tokens stay on record, superseded).

`--check` recomputes the day's root from the ledger, compares it with the anchored one
and verifies every token under the --tsa-cert files. Exit codes: 0 done (a day anchored
by at least one TSA; a TSA that failed is reported), 1 a day left pending (no TSA
granted a token; run again later), 3 a day's history differs from its time-stamped root
(refused, or found by --check) or a token does not verify, 2 bad arguments.

`ingest-server run --tsa URL ...` does the same as `--pending` for every enterprise every
--anchor-every (one hour by default), in one process of many at a time (an advisory
lock); cron or a systemd timer running `anchor --pending` does as well.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import psycopg
from cryptography import x509

from ingest_server.cli.common import date_arg, db_args, duration, migrated_connection
from ingest_server.cli.verifier import VERIFY_FAILED
from ingest_server.errors import InvalidInputError, RefusedError, UnavailableError
from ingest_server.evidence import merkle, timestamp
from ingest_server.repo import anchors, enterprises
from ingest_server.repo.enterprises import EnterpriseNotFoundError

log = logging.getLogger("ingest_server")

GRACE = dt.timedelta(hours=1)
_ANCHOR_LOCK = 0x46456E63  # pg advisory lock key "FEnc": one process anchors at a time
PENDING = 1
REWRITTEN = "a history rewritten after its day was time-stamped no longer matches its token"


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    p = sub.add_parser(
        "anchor", help="time-stamp each day's signed batches (Merkle root, RFC 3161 TSAs)"
    )
    db_args(p)
    p.add_argument("--enterprise", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--day", type=date_arg, help="a local date (YYYY-MM-DD)")
    which.add_argument(
        "--pending", action="store_true",
        help="every finished day not yet anchored, or lacking a token from a --tsa",
    )  # fmt: skip
    p.add_argument(
        "--tsa", action="append", default=[], metavar="URL",
        help="a time-stamping authority's URL (RFC 3161 over HTTP); repeat for several",
    )  # fmt: skip
    p.add_argument(
        "--tsa-cert", action="append", default=[], type=Path, metavar="FILE",
        help="PEM: a TSA's certificate, then its CA certificates up to the root; a token "
        "is kept (or passes --check) only if it verifies under one of these",
    )  # fmt: skip
    p.add_argument(
        "--force", action="store_true",
        help="re-anchor a day whose batch set changed after it was time-stamped",
    )  # fmt: skip
    p.add_argument(
        "--check", action="store_true",
        help="recompute --day's root from the ledger, compare, verify its tokens",
    )  # fmt: skip
    p.add_argument(
        "--grace", type=duration, default=GRACE,
        help="how long after a day ends it may be anchored (default 1h)",
    )  # fmt: skip
    p.add_argument("--timeout", type=float, default=timestamp.TIMEOUT_S,
                   help="seconds to wait for a TSA (default %(default)s)")  # fmt: skip


def cmd_anchor(args: argparse.Namespace) -> int:
    trusts = [timestamp.load_trust(f) for f in args.tsa_cert]
    if args.check:
        if args.day is None:
            raise InvalidInputError("anchor --check: give the --day to check")
        if not trusts:
            raise InvalidInputError(
                "anchor --check: give --tsa-cert FILE (the TSAs' certificates you trust) "
                "to verify the tokens against"
            )
    elif not args.tsa:
        raise InvalidInputError("anchor: give at least one --tsa URL (a time-stamping authority)")
    with migrated_connection(args) as conn:
        if not enterprises.enterprise_exists(conn, enterprise=args.enterprise):
            known = [e["id"] for e in enterprises.list_enterprises(conn)]
            raise EnterpriseNotFoundError(
                f"--enterprise: no enterprise {args.enterprise!r} in the registry (known: {known})"
            )
        if args.check:
            return check_day(conn, args.enterprise, args.day, trusts)
        now = dt.datetime.now(dt.UTC)
        grace = args.grace or dt.timedelta(0)
        if args.day is not None:
            over = day_over(conn, args.enterprise, args.day, grace)
            if over > now:
                raise InvalidInputError(
                    f"--day {args.day}: not over yet in every site's time zone plus the "
                    f"{grace} grace; it can be anchored from {over.isoformat(timespec='seconds')}"
                )
            days = [args.day]
        else:
            days = pending_days(conn, args.enterprise, args.tsa, grace, now)
            if not days:
                print(f"{args.enterprise}: no day to anchor")
        codes = [
            anchor_day(conn, args.enterprise, d, args.tsa, trusts, force=args.force,
                       timeout_s=args.timeout)
            for d in days
        ]  # fmt: skip
    if VERIFY_FAILED in codes:
        return VERIFY_FAILED
    return PENDING if PENDING in codes else 0


def anchor_pending_everywhere(
    dsn: str,
    urls: list[str],
    trusts: list[list[x509.Certificate]],
    *,
    grace: dt.timedelta = GRACE,
    now: dt.datetime | None = None,
    timeout_s: float = timestamp.TIMEOUT_S,
) -> dict[str, list[int]] | None:
    """`run`'s periodic anchoring: `anchor --pending` for every enterprise; by enterprise
    the exit code of each day it tried. None when another `run` process holds the lock
    (a worker of `run --workers N`, another server): one of them anchors. (A cron job's
    `anchor` does not take the lock; anchoring a day twice at once costs at most a
    second token row, as the day's root is the same.)"""
    now = now or dt.datetime.now(dt.UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (_ANCHOR_LOCK,)).fetchone()
        if row is None or not row[0]:
            return None
        try:
            done: dict[str, list[int]] = {}
            for e in enterprises.list_enterprises(conn):
                days = pending_days(conn, e["id"], urls, grace, now)
                done[e["id"]] = [
                    anchor_day(conn, e["id"], d, urls, trusts, timeout_s=timeout_s, say=log.info)
                    for d in days
                ]
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ANCHOR_LOCK,))


def day_over(
    conn: psycopg.Connection, enterprise: str, day: dt.date, grace: dt.timedelta
) -> dt.datetime:
    """When `day` has ended in every site's time zone, plus `grace`."""
    windows = anchors.day_windows(conn, enterprise=enterprise, day=day)
    if not windows:
        raise InvalidInputError(f"enterprise {enterprise!r} has no site: nothing to anchor")
    return max(hi for _, hi in windows.values()) + grace


def pending_days(
    conn: psycopg.Connection, enterprise: str, urls: list[str], grace: dt.timedelta,
    now: dt.datetime,
) -> list[dt.date]:  # fmt: skip
    """Days anchored but lacking a token from one of `urls`, and finished days after the
    latest anchored one that hold batches (an earlier day skipped by hand with --day
    is anchored with --day too)."""
    latest = anchors.latest_day(conn, enterprise=enterprise)
    since = None if latest is None else dt.datetime.combine(latest, dt.time(), tzinfo=dt.UTC)
    new = [
        d for d in anchors.days_with_batches(conn, enterprise=enterprise, since=since)
        if (latest is None or d > latest) and day_over(conn, enterprise, d, grace) <= now
    ]  # fmt: skip
    return sorted(set(anchors.open_days(conn, enterprise=enterprise, tsa_urls=urls)) | set(new))


def _leaves(conn: psycopg.Connection, enterprise: str, day: dt.date) -> list[merkle.Leaf]:
    return [merkle.Leaf(*r) for r in anchors.day_leaves(conn, enterprise=enterprise, day=day)]


def anchor_day(
    conn: psycopg.Connection,
    enterprise: str,
    day: dt.date,
    urls: list[str],
    trusts: list[list[x509.Certificate]],
    *,
    force: bool = False,
    timeout_s: float = timestamp.TIMEOUT_S,
    say: Any = print,
) -> int:
    """Anchor one finished day (module docstring); its exit code. `say` reports each
    step (print for the CLI, a log for `run`)."""
    tree, _ = merkle.day_tree(_leaves(conn, enterprise, day))
    current = anchors.current_anchor(conn, enterprise=enterprise, day=day)
    where = f"{enterprise} {day}"
    if current is None and tree.size == 0:
        say(f"{where}: no signed (v2) batch received that day: nothing to anchor")
        return 0
    if current is not None and current.root != tree.root:
        if current.granted and not force:
            say(f"{where}: REFUSED: {REWRITTEN}: {_differs(current, tree)}; "
                  "re-anchor with --force only if the change is explained")  # fmt: skip
            return VERIFY_FAILED
        if tree.size == 0:
            say(f"{where}: every batch of the anchored root is gone: nothing to re-anchor")
            return VERIFY_FAILED
        log.warning("%s: re-anchoring: %s", where, _differs(current, tree))
        current = None
    if current is None:
        current = anchors.add_anchor(conn, enterprise=enterprise, day=day, root=tree.root,
                                     leaves=tree.size, leaf_order=merkle.LEAF_ORDER)  # fmt: skip
    have = {t.tsa_url for t in current.granted}
    for url in urls:
        if url in have:
            continue
        try:
            stamp = timestamp.request_token(url, current.root, timeout_s=timeout_s)
            if trusts:
                timestamp.verify_any(stamp.response, current.root, trusts)
        except (UnavailableError, RefusedError) as exc:
            anchors.save_error(conn, current.id, tsa_url=url, error=str(exc),
                               kind=timestamp.error_kind(exc))  # fmt: skip
            say(f"{where}: {url}: not time-stamped: {exc}")
            continue
        anchors.save_token(conn, current.id, tsa_url=url, tsa_name=stamp.tsa_name,
                           token=stamp.response, gen_time=stamp.gen_time)  # fmt: skip
        have.add(url)
        say(f"{where}: {tree.size} batch(es), root {current.root.hex()}: time-stamped by "
              f"{url} ({stamp.tsa_name}) at {stamp.gen_time.isoformat()}")  # fmt: skip
    if not have:
        say(f"{where}: PENDING: no TSA granted a token; the next run asks again")
        return PENDING
    return 0


def _differs(anchor: anchors.Anchor, tree: merkle.MerkleTree) -> str:
    return (
        f"the ledger now gives root {tree.root.hex()} over {tree.size} batch(es); root "
        f"{anchor.root.hex()} over {anchor.leaves} batch(es) was anchored "
        f"{anchor.built_at.isoformat(timespec='seconds')}"
    )


def check_day(
    conn: psycopg.Connection,
    enterprise: str,
    day: dt.date,
    trusts: list[list[x509.Certificate]],
) -> int:
    """`anchor --check`: the ledger against the anchored root, and every token."""
    where = f"{enterprise} {day}"
    current = anchors.current_anchor(conn, enterprise=enterprise, day=day)
    if current is None or not current.granted:
        errors = [] if current is None else [f"{t.tsa_url}: {t.last_error}" for t in current.tokens]
        print(f"{where}: NOT ANCHORED" + (f" (pending: {'; '.join(errors)})" if errors else ""))
        return VERIFY_FAILED
    tree, _ = merkle.day_tree(_leaves(conn, enterprise, day))
    ok = tree.root == current.root
    if ok:
        print(f"{where}: root {current.root.hex()} over {tree.size} batch(es) matches the ledger")
    else:
        print(f"{where}: {REWRITTEN}: {_differs(current, tree)}")
    for t in current.tokens:
        if t.token is None:
            print(f"{where}: {t.tsa_url}: no token (last error: {t.last_error})")
            continue
        try:
            at = timestamp.verify_any(t.token, current.root, trusts)
        except RefusedError as exc:
            ok = False
            print(f"{where}: token of {t.tsa_url}: INVALID: {exc}")
            continue
        print(f"{where}: token of {t.tsa_url} ({t.tsa_name}): valid, root time-stamped at "
              f"{at.isoformat()}")  # fmt: skip
    print(f"ANCHOR OK: {where}" if ok else f"ANCHOR NOT OK: {where}")
    return 0 if ok else VERIFY_FAILED
