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
`register_problems` checks the meter register against its own dates and period.
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
from ingest_server.evidence.keys import register_key
from ingest_server.evidence.received import received_tally
from ingest_server.evidence.targets import targets_block
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.period import check_period
from ingest_server.kpi.records import Inputs, ReportError
from ingest_server.repo import anchors, bundle, declarations
from ingest_server.repo.registry_model import DeclarationDef

__all__ = [
    "ANCHOR_GRACE", "CALIBRATION_STATES", "DECLARATION_TEXT", "METER_REGISTER_BASIS",
    "PARTIAL_BASELINE_NOTICE", "PARTIAL_NOTICE", "Request", "anchoring", "anchoring_problems",
    "calibration_state", "compute_report", "day_anchoring", "declaration_block", "digest",
    "fetch_baseline", "make_report", "meter_register_block", "notices", "register_problems",
    "snapshot",
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
        inputs = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s,
        )  # fmt: skip
        baseline = fetch_baseline(conn, req, as_of, raw=False)
        # only for a signed report (a scan of the period's raw samples): a draft is never
        # verified, and the dashboards' unsigned reports stay as quick as they were
        received = None if key is None else received_tally(conn, inputs)
        block = anchoring(conn, req, as_of)
        meters = declarations.meter_register(
            conn, enterprise=req.enterprise, sites=[s.id for s in inputs.sites]
        )
        declared = declarations.declaration(conn, enterprise=req.enterprise)
        entered = declarations.enterprise_targets(conn, enterprise=req.enterprise)
    doc = compute_report(inputs, baseline, req, as_of)
    doc["anchoring"] = block
    doc["targets"] = targets_block(doc["kpis"], entered=entered)
    doc["meter_register"] = meter_register_block(meters, req.date_from, req.date_to)
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
            {"url": t.tsa_url, "error": t.last_error, "attempted_at": _utc(t.attempted_at)}
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


# --- the enterprise's declarations: meter register and commitment ------------------------

METER_REGISTER_VERSION = 1
CALIBRATION_STATES = ("valid", "expires_in_period", "expired", "missing")
# the clauses checked against the standard's text are named in docs/kpi.md#meter-register
METER_REGISTER_BASIS = (
    "GB 17167-2006《用能单位能源计量器具配备和管理通则》第 5 章 能源计量器具的管理要求 "
    "(5.2 能源计量器具): 能源计量器具应在检定/校准有效期内使用。",
    "GB 17167-2006, General principle for equipping and managing of the measuring "
    "instrument of energy in organization of energy using, chapter 5, management "
    "requirements (5.2, the instruments): a meter is used within a valid verification or "
    "calibration.",
)


def calibration_state(
    cal: Mapping[str, Any] | None, date_from: dt.date, date_to: dt.date
) -> tuple[str, str | None, str | None]:
    """A certificate's state at the end of the period [date_from, date_to] (local dates),
    with the warning a reader sees in Chinese and English (None when valid); pure, so
    that a verifier recomputes it from the report. A certificate issued after the period
    did not exist then: missing, as none."""
    if cal is None:
        return ("missing", "未登记检定/校准证书: 无从证明该表在统计期内的准确度。",
                "no calibration certificate registered: nothing shows that this meter "
                "measured within its accuracy class in the period.")  # fmt: skip
    cert = cal.get("certificate")
    calibrated_on = dt.date.fromisoformat(str(cal.get("calibrated_on")))
    valid_until = dt.date.fromisoformat(str(cal.get("valid_until")))
    if calibrated_on > date_to:
        return ("missing", f"登记的证书 {cert} 出具于 {calibrated_on}, 晚于统计期: "
                "未登记覆盖统计期的证书。",
                f"the registered certificate {cert} was issued on {calibrated_on}, after "
                "the period: no certificate covering the period is registered.")  # fmt: skip
    if valid_until < date_from:
        return ("expired", f"证书 {cert} 已于 {valid_until} 到期, 早于统计期开始: 统计期内"
                "的读数无有效证书; 请送检并登记新证书。",
                f"certificate {cert} expired on {valid_until}, before the period began: no "
                "valid certificate covers the period's readings; have the meter verified "
                "and enter the new certificate.")  # fmt: skip
    if valid_until < date_to:
        return ("expires_in_period", f"证书 {cert} 有效期至 {valid_until}, 在统计期内到期: "
                "此后的读数无有效证书。",
                f"certificate {cert} was valid until {valid_until}, inside the period: "
                "the readings after that day are not covered.")  # fmt: skip
    return "valid", None, None


def meter_register_block(
    meters: list[dict[str, Any]], date_from: dt.date, date_to: dt.date
) -> dict[str, Any]:
    """The report's `meter_register`: each meter (repo/declarations.py meter_register) with
    its nameplate, certificate and state at the period's end, and a count by state."""
    rows = []
    for m in meters:
        cal = None if m["calibration"] is None else m["calibration"].model_dump(mode="json")
        state, warning, warning_en = calibration_state(cal, date_from, date_to)
        rows.append({
            **{k: m[k] for k in ("id", "site", "name", "name_en", "carrier", "serial",
                                 "model", "accuracy_class")},
            **{k: (cal or {}).get(k) for k in ("certificate", "issued_by", "calibrated_on",
                                               "valid_until")},
            "status": state, "warning": warning, "warning_en": warning_en,
        })  # fmt: skip
    zh, en = METER_REGISTER_BASIS
    return {
        "version": METER_REGISTER_VERSION,
        "as_of": date_to.isoformat(),
        "basis": zh,
        "basis_en": en,
        "meters": rows,
        "summary": {k: sum(r["status"] == k for r in rows) for k in CALIBRATION_STATES},
    }


def register_problems(doc: dict[str, Any]) -> list[str]:
    """What in a report's `meter_register` its own period and dates contradict (each
    meter's state and warning, the summary); [] for a report made before the block. The
    certificates themselves are the enterprise's declaration: not checked here."""
    block = doc.get("meter_register")
    if block is None:
        return []
    if not isinstance(block, dict) or not isinstance(block.get("meters"), list):
        return ["meter_register: not an object with a list of meters"]
    try:
        lo = dt.date.fromisoformat(doc["period"]["from"])
        hi = dt.date.fromisoformat(doc["period"]["to"])
    except (KeyError, TypeError, ValueError) as exc:
        return [f"meter_register: the report's period cannot be read ({exc})"]
    out = []
    for m in block["meters"]:
        if not isinstance(m, dict):
            out.append("meter_register: a meter that is not an object")
            continue
        cal = None if m.get("certificate") is None else m
        try:
            want = calibration_state(cal, lo, hi)
        except ValueError as exc:
            out.append(f"meter_register {m.get('id')}: a certificate date is not a date ({exc})")
            continue
        if (m.get("status"), m.get("warning"), m.get("warning_en")) != want:
            out.append(f"meter_register {m.get('id')}: stated {m.get('status')!r}, its "
                       f"certificate's dates give {want[0]!r} for {lo} to {hi}")  # fmt: skip
    counts = {k: sum(isinstance(m, dict) and m.get("status") == k for m in block["meters"])
              for k in CALIBRATION_STATES}  # fmt: skip
    if block.get("summary") != counts:
        out.append(f"meter_register: the summary {block.get('summary')} does not count the "
                   f"meters listed {counts}")  # fmt: skip
    return out


DECLARATION_VERSION = 1
DECLARATION_TEXT = (
    "本企业承诺: 本企业在登记表中录入的信息 (厂区、设备、计量器具及其检定/校准证书、产量与"
    "工业增加值等) 真实、准确; 本报告中的数值由 {software} 软件依据采集的计量数据和上述登记"
    "信息计算得出。",
    "The enterprise declares that the information it entered in its registry (sites, "
    "equipment, meters and their calibration certificates, output and value added) is true "
    "and accurate, and that the figures in this report were computed by the {software} "
    "software from the measured data and that registry.",
)


def declaration_block(
    declared: DeclarationDef | None, issued_on: dt.date, software: str
) -> dict[str, Any]:
    """The report's `declaration`: the enterprise's text (or the default one, `default`
    true), signatory and position as its registry gives them (null when it entered none:
    the page leaves the lines blank to sign by hand), dated the day of issue."""
    zh, en = DECLARATION_TEXT
    own = declared is not None and bool(declared.text.strip())
    return {
        "version": DECLARATION_VERSION,
        "text": declared.text if declared is not None and own else zh.format(software=software),
        "text_en": (
            declared.text_en if declared is not None and own else en.format(software=software)
        ),
        "default": not own,
        "signatory": None if declared is None else declared.signatory,
        "position": None if declared is None else declared.position,
        "date": issued_on.isoformat(),
    }
