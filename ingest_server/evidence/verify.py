"""Verifying a report, and comparing it with one recomputed from the raw samples.

(1) the signature, against a trusted key (`--public-key`, or the database's
`signing_keys`; else it says the key is only self-consistent and prints its fingerprint);
(2) with database access, every KPI recomputed from the raw samples
(`fetch_inputs(raw=True)`) with the factor tables the report names, compared figure by figure
(each KPI's gateway-signed share and the samples by gateway and origin too);
(3) the digest of the input rows as the server fetches them now, which shows whether
derived rows changed since the report; (4) the raw-sample tally, which tells samples that
arrived after the report was issued (late data) from samples present then that changed.
Every failed verdict carries machine-readable reasons (`Reason.code`), root causes first.

    verify: signature -> key trusted? -> recompute from raw -> digest -> tally -> reasons
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest_server.evidence import signature

# the pure halves (no database) are evidence/compare.py and evidence/signature.py; these
# names stay importable from here
from ingest_server.evidence.compare import Check, close, compare
from ingest_server.evidence.declared import register_problems
from ingest_server.evidence.ghg import ghg_problems
from ingest_server.evidence.green import green_problems
from ingest_server.evidence.received import Arrivals, compare_received
from ingest_server.evidence.report import (
    Request,
    anchoring_problems,
    compute_report,
    digest,
    fetch_baseline,
    snapshot,
)
from ingest_server.evidence.signature import TrustedKey, parse_report
from ingest_server.evidence.targets import targets_problems
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.results import FORMAT
from ingest_server.reference.factors import (
    EMISSION_TABLES,
    ENERGY_TABLES,
    emission_from_json,
    energy_from_json,
)
from ingest_server.repo import reports

__all__ = [
    "Check", "Reason", "TrustedKey", "Verdict", "check_signature", "close", "compare",
    "parse_report", "reasons", "verdict_json", "verify",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a verdict is not VERIFIED, for programs (`code`) and people (`message`).

    Codes: not_a_report, signature_invalid, key_untrusted, late_data (samples of the
    period arrived after the report was issued), samples_changed (samples present at
    issue changed or are gone), derived_changed (the derived rows differ while the raw
    samples do not), rows_changed (rows differ, cause unknown: a report made before the
    raw tally), figures_differ, anchoring_differs (the report's anchoring block against the
    anchors on record), register_differs (a meter's stated calibration state against its
    certificate's dates and the period), targets_differ (the report's targets block against
    its own figures and rows, or a built-in target table edited), green_differs and
    ghg_differs (the green-factory sheet or the GHG report against the report's own
    figures and the entries the block holds), factors_differ. `count`:
    samples or figures concerned."""

    code: str
    message: str
    count: int | None = None


@dataclass(slots=True)
class Verdict:
    signature: str  # "valid (trusted key …)", "valid (key not trusted …)", "INVALID: …"
    signature_ok: bool
    trusted: bool
    checks: list[Check] = field(default_factory=list)
    digest: str = ""
    digest_ok: bool | None = None
    problems: list[str] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    arrivals: Arrivals | None = None
    self_consistent: bool = False  # the signature is valid for the key in the report
    anchoring: list[str] = field(default_factory=list)  # the report's anchoring block vs the record
    register: list[str] = field(default_factory=list)  # meter_register vs its own dates
    targets: list[str] = field(default_factory=list)  # the report's targets block vs its figures
    green: list[str] = field(default_factory=list)  # the green block vs its figures and entries
    ghg: list[str] = field(default_factory=list)  # the ghg block vs its figures and entries

    @property
    def ok(self) -> bool:
        return (
            self.signature_ok
            and all(c.ok for c in self.checks)
            and self.digest_ok is not False
            and not self.problems
            and not self.anchoring
            and not self.register
            and not self.targets
            and not self.green
            and not self.ghg
        )


def verdict_json(v: Verdict) -> dict[str, Any]:
    """The verdict as the API and `verify --json` give it."""
    return {
        "ok": v.ok and v.trusted,
        "signature": v.signature,
        "signature_ok": v.signature_ok,
        "trusted": v.trusted,
        "digest": v.digest,
        "digest_ok": v.digest_ok,
        "problems": v.problems,
        "anchoring": v.anchoring,
        "register": v.register,
        "targets": v.targets,
        "green": v.green,
        "ghg": v.ghg,
        "reasons": [{"code": r.code, "message": r.message, "count": r.count} for r in v.reasons],
        "checks": [
            {"item": c.item, "claimed": c.claimed, "recomputed": c.recomputed, "ok": c.ok}
            for c in v.checks
        ],
    }


def _generated_at(doc: dict[str, Any]) -> dt.datetime | None:
    try:
        made = dt.datetime.fromisoformat(str(doc.get("generated_at")))
    except ValueError:
        return None
    return made if made.tzinfo is not None else None


def check_signature(
    doc: dict[str, Any],
    *,
    trusted: Ed25519PublicKey | TrustedKey | None = None,
    conn: psycopg.Connection | None = None,
) -> tuple[bool, bool, str]:
    """(valid, trusted, what to say): evidence/signature.py's check against `trusted`;
    without it but with `conn`, against the database's signing keys."""
    if trusted is not None or conn is None:
        return signature.check_signature(doc, trusted=trusted)
    ok, _, text = signature.check_signature(doc)
    if not ok:
        return False, False, text
    key = signature.signed_key(doc)
    if key is None:  # not reached: a valid signature names its key
        return False, False, text
    kid = key.key_id
    known = reports.get_key(conn, key_id=kid)
    if known is None or known.public_key != key.public_key:
        return False, False, f"INVALID: key {kid} is not among this server's signing keys"
    retired, revoked = known.retired_at, known.revoked_at
    if revoked is not None:
        return True, False, (
            f"signature valid, but key {kid} was revoked on {revoked.isoformat()} "
            "(compromised): the report is not trusted; issue it again with the new key"
        )  # fmt: skip
    if retired is not None:
        made = _generated_at(doc)
        if made is None or made >= retired:
            return True, False, (
                f"signature valid, but key {kid} was retired on {retired.isoformat()} "
                f"and the report says it was made {doc.get('generated_at')}: not trusted"
            )  # fmt: skip
        return True, True, (
            f"valid, by server key {kid} (signing_keys; retired on "
            f"{retired.date().isoformat()}, after this report was made)"
        )  # fmt: skip
    return True, True, f"valid, by server key {kid} (signing_keys)"


def _request_of(doc: dict[str, Any]) -> tuple[Request, dt.datetime]:
    p = doc["parameters"]
    base = doc.get("baseline")
    req = Request(
        enterprise=doc["enterprise"]["id"],
        date_from=dt.date.fromisoformat(doc["period"]["from"]),
        date_to=dt.date.fromisoformat(doc["period"]["to"]),
        baseline_from=dt.date.fromisoformat(base["from"]) if base else None,
        baseline_to=dt.date.fromisoformat(base["to"]) if base else None,
        energy_version=doc["factors"]["energy"]["version"],
        emission_version=doc["factors"]["emission"]["version"],
        params=Parameters(
            coverage_threshold=p["coverage_threshold"],
            heartbeat_s=p["heartbeat_s"],
            gap_after_s=p["gap_after_s"],
        ),
    )
    as_of = dt.datetime.fromisoformat(doc["period"]["as_of"].replace("Z", "+00:00"))
    return req, as_of


def verify(
    doc: dict[str, Any],
    *,
    conn: psycopg.Connection | None = None,
    trusted: Ed25519PublicKey | None = None,
) -> Verdict:
    if doc.get("format") != FORMAT:
        text = f"INVALID: not a {FORMAT} document"
        return Verdict(text, False, False, reasons=[Reason("not_a_report", text)])
    ok, is_trusted, text = check_signature(doc, trusted=trusted, conn=conn)
    verdict = Verdict(text, ok, is_trusted)
    # valid for the key it names, which is not the trusted one: an untrusted key, not a
    # broken signature
    verdict.self_consistent = ok or (
        (trusted is not None or conn is not None) and check_signature(doc)[0]
    )
    verdict.register = register_problems(doc)  # pure: the block's own dates and period
    verdict.targets = targets_problems(doc)  # pure: the report's own figures and rows
    verdict.green = green_problems(doc)  # pure: its own figures and the block's entries
    verdict.ghg = ghg_problems(doc)
    if conn is None:
        verdict.reasons = reasons(doc, verdict)
        return verdict
    req, as_of = _request_of(doc)
    energy = energy_from_json(doc["factors"]["energy"])
    emission = emission_from_json(doc["factors"]["emission"])
    for name, table, known in (
        ("energy", energy, ENERGY_TABLES),
        ("emission", emission, EMISSION_TABLES),
    ):
        if table.version in known and known[table.version] != table:
            verdict.problems.append(
                f"the {name} table {table.version} in the report differs from the published one"
            )
    with snapshot(conn):  # raw and derived rows as of one moment
        raw = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s, raw=True,
        )  # fmt: skip
        base = fetch_baseline(conn, req, as_of, raw=True)
        fast = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s,
        )  # fmt: skip
        fast_base = fetch_baseline(conn, req, as_of, raw=False)
        if isinstance(doc.get("received"), dict):
            verdict.arrivals = compare_received(conn, fast, doc["received"])
    again = compute_report(
        raw, base, req, as_of, report_id=doc["report_id"], energy=energy, emission=emission
    )
    verdict.checks = list(compare(doc, again))
    verdict.anchoring = anchoring_problems(conn, doc)
    n, value = digest(fast, fast_base)
    claimed = doc.get("digest", {})
    verdict.digest_ok = claimed.get("value") == value and claimed.get("rows") == n
    verdict.digest = (
        f"input rows unchanged ({n} rows, sha256 {value[:16]}…)"
        if verdict.digest_ok
        else f"input rows differ from the report's: {claimed.get('rows')} rows "
        f"{str(claimed.get('value'))[:16]}… then, {n} rows {value[:16]}… now "
        "(late data for the period, or rows changed)"
    )
    verdict.reasons = reasons(doc, verdict)
    return verdict


def reasons(doc: dict[str, Any], v: Verdict) -> list[Reason]:
    """Why `v` is not VERIFIED, root causes first; empty when it is."""
    out: list[Reason] = []
    if not v.self_consistent:
        out.append(Reason("signature_invalid", v.signature))
    elif not (v.signature_ok and v.trusted):
        out.append(Reason("key_untrusted", v.signature))
    bad = sum(not c.ok for c in v.checks)
    rows_differ = bad > 0 or v.digest_ok is False
    received = doc.get("received") if isinstance(doc.get("received"), dict) else None
    a = v.arrivals
    if rows_differ and a is not None and received is not None:
        issued = doc.get("generated_at")
        changed = a.kept != received.get("samples") or a.kept_checksum != received.get("checksum")
        if a.late:
            partial = " (the report was made before its period ended)" if (
                doc.get("period") or {}).get("partial") else ""  # fmt: skip
            out.append(Reason(
                "late_data",
                f"{a.late} sample(s) of the period arrived after the report was issued at "
                f"{issued}{partial}: issue the report again to include them",
                a.late,
            ))  # fmt: skip
        if changed:
            gone = int(received.get("samples") or 0) - a.kept
            what = f"{gone} of them are gone" if gone > 0 else "some changed"
            out.append(Reason(
                "samples_changed",
                f"samples the server held when the report was issued differ now: "
                f"{received.get('samples')} then, {a.kept} of the same series and times now; "
                f"{what}",
                abs(gone) if gone else None,
            ))  # fmt: skip
        if not a.late and not changed and v.digest_ok is False:
            out.append(Reason(
                "derived_changed",
                "the raw samples are as they were at issue, but the derived rows (state "
                "intervals, counter sums, sample counts) or the registry differ: "
                + v.digest,
            ))  # fmt: skip
    elif rows_differ and v.digest_ok is False:
        was_partial = bool((doc.get("period") or {}).get("partial"))
        out.append(Reason(
            "rows_changed",
            "input rows differ from the report's; the report has no raw-sample tally "
            "(made by an older version), so late data cannot be told from changed samples"
            + ("; it was made before its period ended, so late data is likely" if was_partial
               else ""),
        ))  # fmt: skip
    if bad:
        out.append(Reason(
            "figures_differ",
            f"{bad} figure(s) recomputed from the raw samples differ from the report's",
            bad,
        ))  # fmt: skip
    out.extend(Reason("anchoring_differs", p) for p in v.anchoring)
    out.extend(Reason("register_differs", p) for p in v.register)
    out.extend(Reason("targets_differ", p) for p in v.targets)
    out.extend(Reason("green_differs", p) for p in v.green)
    out.extend(Reason("ghg_differs", p) for p in v.ghg)
    out.extend(Reason("factors_differ", p) for p in v.problems)
    return out
