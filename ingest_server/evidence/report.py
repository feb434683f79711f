"""Evidence reports: make one from the derived data, signed.

A report is the engine's output (kpi/engine.py) plus the notices a reader must see first,
each day's anchoring in time as the server held it (`anchoring`: anchored by which TSA and
when, pending with the TSA's error, not anchored, not due yet), a SHA-256 digest over its
input rows (the canonical lines of `Inputs.rows()`), a tally of
the raw samples the server held when it made the report (`received`), and an Ed25519
signature over its RFC 8785 canonical form (evidence/canonical.py) by the server's key
(evidence/keys.py). evidence/verify.py checks a report by recomputing it from the raw
samples with the same functions (`fetch_baseline`, `compute_report`, `digest`); the pure
ones (`Request`, `compute_report`, `digest`, `notices`) are in evidence/compute.py.

    fetch inputs, anchoring (one snapshot) -> compute -> notices, digest, received -> sign

The anchoring block is added after the figures are computed: `compute_report` (and so a
recomputation, evidence/verify.py's and the offline verifier's) never makes it, figure
comparison ignores it, and reports made before it verify as they did.
`anchoring_problems` checks a report's block against the anchors on record.

So are two declarations of the enterprise, read from its registry in the same snapshot:
`meter_register` (each meter's nameplate and calibration certificate, with its state at
the period's end and a warning where it is out of date or missing: GB 17167) and
`declaration` (its commitment, signatory and position, dated the day of issue).
Both are pure, in evidence/declared.py; its `register_problems` checks the meter register
against its own dates and period.

And the green-factory and carbon packs (docs/green-ghg.md): `green`, the indicator sheet
against the baseline and leading values the enterprise entered for exactly the report's
period, and `ghg`, the GHG report with the process emissions it entered, each computed
from the report's own figures and the entries with who entered them and when
(evidence/green.py `green_block`, evidence/ghg.py `ghg_block`; their `*_problems`
compute them again at verification).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.evidence.canonical import jcs_problem, sign

# the pure part (no database) is evidence/compute.py; these names stay importable here
from ingest_server.evidence.compute import (
    PARTIAL_BASELINE_NOTICE,
    PARTIAL_NOTICE,
    Request,
    compute_report,
    digest,
    notices,
)
from ingest_server.evidence.declared import declaration_block, meter_register_block
from ingest_server.evidence.ghg import ProcessEmission, ghg_block
from ingest_server.evidence.green import GreenEntries, green_block
from ingest_server.evidence.keys import register_key
from ingest_server.evidence.received import received_tally
from ingest_server.evidence.targets import targets_block
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.period import check_period
from ingest_server.kpi.records import Inputs, ReportError
from ingest_server.kpi.scope import MACHINE_KPIS, narrow
from ingest_server.repo import anchors, bundle, declarations, green

__all__ = [
    "ANCHOR_GRACE", "PARTIAL_BASELINE_NOTICE", "PARTIAL_NOTICE", "Request", "anchoring",
    "anchoring_problems", "compute_report", "day_anchoring", "digest", "fetch_baseline",
    "make_report", "notices", "snapshot",
]  # fmt: skip


@contextlib.contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """Read everything from one snapshot (REPEATABLE READ, read only), so samples arriving
    meanwhile cannot make the intervals disagree with the counters. Inside a transaction
    the caller opened, that transaction's own snapshot rules apply."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield
        return
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


def make_report(
    conn: psycopg.Connection,
    req: Request,
    *,
    key: Ed25519PrivateKey | None,
    as_of: dt.datetime | None = None,
) -> dict[str, Any]:
    """The signed report (unsigned when key is None) from the derived data."""
    as_of = (as_of or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    with snapshot(conn):
        inputs, baseline = _period_inputs(conn, req, as_of)
        # only for a signed report (a scan of the period's raw samples): a draft is never
        # verified, and the dashboards' unsigned reports stay as quick as they were
        received = None if key is None else received_tally(conn, inputs)
        block = anchoring(conn, req, as_of)
        meters = declarations.meter_register(
            conn, enterprise=req.enterprise, sites=[s.id for s in inputs.sites]
        )
        declared = declarations.declaration(conn, enterprise=req.enterprise)
        entered = declarations.enterprise_targets(conn, enterprise=req.enterprise)
        packs = green.current_entries(
            conn, enterprise=req.enterprise, date_from=req.date_from, date_to=req.date_to
        )
    doc = compute_report(inputs, baseline, req, as_of)
    doc["anchoring"] = block
    doc["targets"] = targets_block(doc["kpis"], entered=entered)
    doc["meter_register"] = meter_register_block(meters, req.date_from, req.date_to)
    who = None if packs is None else entered_by(packs)
    entries = GreenEntries.model_validate(packs["entries"]) if packs else GreenEntries()
    process = [ProcessEmission.model_validate(p) for p in packs["process"]] if packs else []
    doc["green"] = green_block(doc, entries, who)
    doc["ghg"] = ghg_block(doc, process, who)
    tz = ZoneInfo(inputs.sites[0].timezone) if inputs.sites else dt.UTC
    software = str((doc.get("software") or {}).get("name") or "factory-evidence")
    doc["declaration"] = declaration_block(declared, as_of.astimezone(tz).date(), software)
    doc["notices"] = notices(doc)
    rows, value = digest(inputs, baseline)
    doc["digest"] = {"algorithm": "sha256", "rows": rows, "value": value}
    if received is not None:
        doc["received"] = received
    problem = jcs_problem(doc)
    if problem is not None:
        raise ReportError(f"the report cannot be issued: {problem}")
    if key is not None:
        register_key(conn, key.public_key())
        sign(doc, key)
    return doc


def entered_by(row: Mapping[str, Any]) -> dict[str, Any]:
    """Which row of green_entries (repo/green.py) a block's entries are, who entered them
    and when (UTC), and the note entered with them."""
    return {"id": row["id"], "by": row["entered_by"], "at": _utc(row["entered_at"]),
            "note": row["note"]}  # fmt: skip


def _period_inputs(
    conn: psycopg.Connection, req: Request, as_of: dt.datetime
) -> tuple[Inputs, Inputs | None]:
    """The period's inputs and the baseline's from the derived data (in the caller's
    snapshot)."""
    inputs = fetch_inputs(
        conn, req.enterprise, req.date_from, req.date_to, as_of,
        heartbeat_s=req.params.heartbeat_s,
    )  # fmt: skip
    return inputs, fetch_baseline(conn, req, as_of, raw=False)


def fetch_baseline(
    conn: psycopg.Connection, req: Request, as_of: dt.datetime, *, raw: bool
) -> Inputs | None:
    if req.baseline_from is None or req.baseline_to is None:
        return None
    check_period(req.date_from, req.date_to, req.baseline_from, req.baseline_to)
    return fetch_inputs(
        conn, req.enterprise, req.baseline_from, req.baseline_to, as_of,
        heartbeat_s=req.params.heartbeat_s, raw=raw,
    )  # fmt: skip


# --- anchoring in time ------------------------------------------------------------------

ANCHOR_GRACE = dt.timedelta(hours=1)  # `anchor`'s default: a day is due an hour after it ends
ANCHORING_VERSION = 1
ANCHOR_STATES = ("anchored", "pending", "not_anchored", "not_due")


def _utc(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def day_anchoring(
    state: anchors.DayState, part: str, as_of: dt.datetime, *, grace: dt.timedelta = ANCHOR_GRACE
) -> dict[str, Any]:
    """One day of the block, pure: `anchored` (a TSA granted a token over the day's current
    root), `pending` (a root, but every TSA failed: their last errors), `not_anchored` (no
    root; `batches` says whether there was anything to anchor) or `not_due` (no root, and
    the day had not ended plus the grace at `as_of`)."""
    entry: dict[str, Any] = {"day": state.day.isoformat(), "part": part, "batches": state.batches}
    a = state.anchor
    if a is None:
        due = state.ends_at + grace
        if as_of < due:
            entry.update(state="not_due", due_at=_utc(due))
        else:
            entry["state"] = "not_anchored"
        return entry
    granted = [t for t in a.tokens if t.token is not None and t.gen_time is not None]
    entry.update(
        state="anchored" if granted else "pending",
        root=a.root.hex(),
        leaves=a.leaves,
        leaf_order=a.leaf_order,
        built_at=_utc(a.built_at),
        tsas=[
            {"name": t.tsa_name, "url": t.tsa_url, "gen_time": _utc(t.gen_time)}
            for t in granted
            if t.gen_time is not None
        ],
        errors=[
            {
                "url": t.tsa_url,
                "error": t.last_error,
                "kind": t.last_error_kind or "other",
                "attempted_at": _utc(t.attempted_at),
            }
            for t in a.tokens
            if t.token is None
        ],
    )
    return entry


def anchoring(conn: psycopg.Connection, req: Request, as_of: dt.datetime) -> dict[str, Any]:
    """The report's `anchoring` block: every local day of the period (and the baseline)
    with its anchor state, as the server holds it now (`read_at`), and a count by state."""
    read_at = dt.datetime.now(dt.UTC)
    days: list[dict[str, Any]] = []
    for part, lo, hi in (
        ("period", req.date_from, req.date_to),
        ("baseline", req.baseline_from, req.baseline_to),
    ):
        if lo is None or hi is None:
            continue
        states = anchors.day_states(conn, enterprise=req.enterprise, date_from=lo, date_to=hi)
        days += [day_anchoring(s, part, as_of) for s in states]
    return {
        "version": ANCHORING_VERSION,
        "read_at": _utc(read_at),
        "grace_s": int(ANCHOR_GRACE.total_seconds()),
        "days": days,
        "summary": {k: sum(d["state"] == k for d in days) for k in ANCHOR_STATES},
    }


def anchoring_problems(conn: psycopg.Connection, doc: dict[str, Any]) -> list[str]:
    """What in a report's `anchoring` block the anchors on record contradict; [] for a
    report made before the block. Checked: the block lists exactly the period's (and the
    baseline's) days with a summary that counts them; every root it states is a root
    anchored for that day (current or since superseded), every TSA it says stamped it
    holds a token at that time; a day it calls not anchored had no root built before the
    block was read. Not a contradiction: a day pending or not anchored then, anchored
    since (the TSA was retried)."""
    block = doc.get("anchoring")
    if block is None:
        return []
    if not isinstance(block, dict) or not isinstance(block.get("days"), list):
        return ["anchoring: not an object with a list of days"]
    out: list[str] = []
    days = [d for d in block["days"] if isinstance(d, dict)]
    try:
        req = _request(doc)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"anchoring: the report's period cannot be read ({exc})"]
    want = [
        (part, lo + dt.timedelta(days=i))
        for part, lo, hi in (
            ("period", req.date_from, req.date_to),
            ("baseline", req.baseline_from, req.baseline_to),
        )
        if lo is not None and hi is not None
        for i in range((hi - lo).days + 1)
    ]
    have = [(d.get("part"), _date(d.get("day"))) for d in days]
    if have != want or len(days) != len(block["days"]):
        out.append(
            f"anchoring: the days listed ({len(block['days'])}) are not the report's "
            f"{len(want)} days of period and baseline, in order"
        )
    counts = {k: sum(d.get("state") == k for d in days) for k in ANCHOR_STATES}
    if block.get("summary") != counts:
        out.append(f"anchoring: the summary {block.get('summary')} does not count the days "
                   f"listed {counts}")  # fmt: skip
    listed = sorted({d for _, d in have if d is not None})
    rows = bundle.anchor_rows(conn, enterprise=req.enterprise, days=listed)
    read_at = _instant(block.get("read_at"))
    for d in days:
        out += _day_problems(d, rows, read_at)
    return out


def _day_problems(
    d: dict[str, Any], rows: list[dict[str, Any]], read_at: dt.datetime | None
) -> list[str]:
    """One day of a block against the anchors on record for it (`anchoring_problems`)."""
    day, state = _date(d.get("day")), d.get("state")
    if day is None:
        return [f"anchoring: {d.get('day')!r} is not a date"]
    if state not in ANCHOR_STATES:
        return [f"anchoring {day}: unknown state {state!r}"]
    mine = [r for r in rows if r["day"] == day]
    if state == "not_anchored" and read_at is not None:
        built = [r["built_at"] for r in mine if r["built_at"] < read_at]
        if built:
            return [f"anchoring {day}: called not anchored, but a root was built for it at "
                    f"{_utc(min(built))}, before the report was made"]  # fmt: skip
    if state not in ("anchored", "pending"):
        return []
    row = next((r for r in mine if bytes(r["root"]).hex() == d.get("root")), None)
    if row is None:
        return [f"anchoring {day}: root {d.get('root')} is no root on record for this day"]
    stamped = {t["tsa_url"]: t["gen_time"] for t in row["tokens"] if t.get("token")}
    return [
        f"anchoring {day}: no token on record from {tsa} over its root"
        for tsa in d.get("tsas") or []
        if not isinstance(tsa, dict)
        or tsa.get("url") not in stamped
        or _utc(stamped[tsa["url"]]) != tsa.get("gen_time")
    ]


def _request(doc: dict[str, Any]) -> Request:
    """The enterprise and the days of a report (of its period and baseline)."""
    base = doc.get("baseline") or None
    return Request(
        enterprise=str(doc["enterprise"]["id"]),
        date_from=dt.date.fromisoformat(doc["period"]["from"]),
        date_to=dt.date.fromisoformat(doc["period"]["to"]),
        baseline_from=dt.date.fromisoformat(base["from"]) if base else None,
        baseline_to=dt.date.fromisoformat(base["to"]) if base else None,
    )


def _date(v: object) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(v))
    except ValueError:
        return None


def _instant(v: object) -> dt.datetime | None:
    try:
        t = dt.datetime.fromisoformat(str(v))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def scoped_body(
    conn: psycopg.Connection,
    req: Request,
    site: str | None,
    process: str | None,
    *,
    targets: bool,
) -> dict[str, Any]:
    """The report body (unsigned, without the blocks a signed report adds) of the part of
    the plant kpi/scope.py `narrow` keeps, with `scope`, and `targets` when asked."""
    as_of = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with snapshot(conn):
        inputs, baseline = _period_inputs(conn, req, as_of)
        entered = declarations.enterprise_targets(conn, enterprise=req.enterprise)
    inputs = narrow(inputs, site, process)
    baseline = None if baseline is None else narrow(baseline, site, process)
    doc = compute_report(inputs, baseline, req, as_of)
    unscoped: list[str] = []
    if process is not None:
        unscoped = [k["id"] for k in doc["kpis"] if k["id"] not in MACHINE_KPIS]
        doc["kpis"] = [k for k in doc["kpis"] if k["id"] in MACHINE_KPIS]
    if targets:
        doc["targets"] = targets_block(doc["kpis"], entered=entered)
    doc["scope"] = {"site": site, "process": process, "unscoped": unscoped}
    return doc
