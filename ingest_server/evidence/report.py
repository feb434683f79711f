"""Evidence reports: make, sign, verify.

A report is the engine's output plus a SHA-256 digest over its input rows (the
canonical lines of `Inputs.rows()`), a tally of the raw samples the server held when
it made the report (`received`), and an Ed25519 signature over the RFC 8785 (JCS)
canonical JSON of everything but the signature. JCS fixes how every number and string is
written, so a file re-serialised by a browser or another language (75.0 written as 75,
keys reordered, whitespace) canonicalises to the same bytes; the signature block names
its form (`"canonicalization": "RFC8785"`; reports signed before it had none and were
signed over Python's sorted-keys `json.dumps`, which `canonical` still reproduces for
them). The server's signing key is generated on first use (PKCS#8 PEM, mode 0600); its
public key is registered in `signing_keys` so that a verifier with database access
trusts a report's key by id, also after a rotation, and can be exported for verifiers
without database access.

Verification: (1) the signature, against a trusted key (`--public-key`, or the
database's `signing_keys`; else it says the key is only self-consistent and prints its
fingerprint); (2) with database access, every KPI recomputed from the raw samples
(`fetch_inputs(raw=True)`) with the factor tables the report names, compared figure by figure;
(3) the digest of the input rows as the server fetches them now, which shows whether
derived rows changed since the report; (4) the raw-sample tally, which tells samples that
arrived after the report was issued (late data) from samples present then that changed.
Every failed verdict carries machine-readable reasons (`Reason.code`), root causes first.

    report --sign()--> canonical(RFC 8785) --Ed25519--> signature
    verify: signature -> key trusted? -> recompute from raw -> digest -> tally -> reasons
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ingest_server.errors import InvalidInputError
from ingest_server.evidence.received import Arrivals, compare_received, received_tally
from ingest_server.files import write_temp
from ingest_server.kpi.engine import FORMAT, Parameters, compute
from ingest_server.kpi.inputs import (
    Inputs,
    ReportError,
    fetch_inputs,
    local_period,
)
from ingest_server.reference.factors import (
    EMISSION_TABLES,
    ENERGY_TABLES,
    emission_from_json,
    emission_table,
    energy_from_json,
    energy_table,
)


class SigningKeyError(InvalidInputError):
    """The signing key cannot be read or written; the message says what to do."""


# -- keys -------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_or_create_key(path: Path) -> Ed25519PrivateKey:
    """The server's report signing key; created (0600) when the file does not exist."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise SigningKeyError(
                f"signing key {path} is readable by others (mode {mode:o}): chmod 600 {path}"
            )
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"signing key {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"signing key {path} is not an Ed25519 key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = Ed25519PrivateKey.generate()
    # written whole under a temporary name, then linked into place: two servers starting
    # at once end up with one key, and nobody reads a half-written file
    tmp = _write_pem(path, key)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return load_or_create_key(path)  # another process made it first: use that one
    finally:
        tmp.unlink()
    return key


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read public key {path}: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 public key")
    return key


def _write_pem(path: Path, key: Ed25519PrivateKey) -> Path:
    """The key's PEM in a new file (0600) next to `path`, written whole and synced."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return write_temp(path, pem, 0o600)


def rotate_key(
    conn: psycopg.Connection, path: Path, *, compromised: bool = False
) -> tuple[str, str]:
    """Replace the signing key in `path` with a new one; returns (old id, new id).

    The new public key is registered first, then the old one is marked retired (its
    reports made until now stay trusted) or, if `compromised`, revoked (none of its
    reports is trusted any more), and the file is replaced in one rename. The old
    private key is gone; its public key stays in signing_keys for verification. Servers
    that sign reports pick the new key up from the file (SigningKeyFile)."""
    old = load_or_create_key(path)
    new = Ed25519PrivateKey.generate()
    tmp = _write_pem(path, new)
    try:
        with conn.transaction():
            register_key(conn, old.public_key())
            new_id = register_key(conn, new.public_key())
            old_id = key_id(old.public_key())
            conn.execute(
                "UPDATE signing_keys SET retired_at = coalesce(retired_at, now()), "
                "revoked_at = CASE WHEN %s THEN now() ELSE revoked_at END WHERE key_id = %s",
                (compromised, old_id),
            )
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return old_id, new_id


class SigningKeyFile:
    """The signing key of a long-running server, re-read when its file is replaced
    (`ingest-server keys rotate`), and registered in signing_keys when it is."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._key = self._load()

    def _load(self) -> Ed25519PrivateKey:
        key = load_or_create_key(self.path)
        st = self.path.stat()
        self._stamp = (st.st_ino, st.st_mtime_ns)
        return key

    def get(self, conn: psycopg.Connection | None = None) -> Ed25519PrivateKey:
        st = self.path.stat()
        if (st.st_ino, st.st_mtime_ns) != self._stamp:
            self._key = self._load()
            if conn is not None:
                register_key(conn, self._key.public_key())
        return self._key


def register_key(conn: psycopg.Connection, public: Ed25519PublicKey) -> str:
    kid = key_id(public)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    conn.execute(
        "INSERT INTO signing_keys (key_id, public_key) VALUES (%s, %s) ON CONFLICT DO NOTHING",
        (kid, raw),
    )
    return kid


# -- making a report --------------------------------------------------------------------


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


# The canonical form reports are signed over now; a signature block without
# "canonicalization" is of the legacy form (Python's sorted-keys json.dumps).
CANONICALIZATION = "RFC8785"
JCS_MAX_INT = 2**53 - 1  # I-JSON: integers beyond this are not exact in a double


class CanonicalFormError(InvalidInputError, ValueError):
    """The document cannot be put in the canonical form the signature names."""


def canonical(doc: dict[str, Any], form: str | None = CANONICALIZATION) -> bytes:
    """The bytes a signature covers: everything but the signature, in `form` (RFC 8785,
    or None for the legacy sorted-keys json.dumps of reports signed before RFC 8785)."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    if form is None:
        return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    if form != CANONICALIZATION:
        raise CanonicalFormError(
            f"unknown canonicalization {form!r}: this server knows {CANONICALIZATION!r} "
            "and the legacy form (no canonicalization field)"
        )
    problem = jcs_problem(body)
    if problem is not None:
        raise CanonicalFormError(problem)
    try:
        return rfc8785.dumps(body)
    except rfc8785.CanonicalizationError as exc:  # e.g. a key that is not a string
        raise CanonicalFormError(f"not representable in RFC 8785 JSON: {exc}") from None


def jcs_problem(value: Any, path: str = "$") -> str | None:
    """Where `value` holds something RFC 8785 JSON cannot represent exactly (NaN,
    infinity, an integer beyond 2^53 - 1, a non-string key), or None."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return (
            f"{path} is {value}: RFC 8785 JSON has no NaN or infinity; the figure must be "
            "null (no value) instead"
        )
    if isinstance(value, int):
        if abs(value) <= JCS_MAX_INT:
            return None
        return (
            f"{path} is the integer {value}, beyond 2^53 - 1: RFC 8785 JSON writes numbers "
            "as doubles, so it would not be exact; write it as a string"
        )
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} has the key {k!r}, which is not a string"
            found = jcs_problem(v, f"{path}.{k}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = jcs_problem(v, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    return f"{path} is a {type(value).__name__}, which is not JSON"


def sign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """Sign `doc` in place over its RFC 8785 form; raises ReportError (naming the field)
    if the document holds a value JCS cannot represent."""
    public = key.public_key()
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc.pop("signature", None)
    try:
        body = canonical(doc)
    except CanonicalFormError as exc:
        raise ReportError(f"the report cannot be signed: {exc}") from None
    doc["signature"] = {
        "algorithm": "Ed25519",
        "canonicalization": CANONICALIZATION,
        "key_id": key_id(public),
        "public_key": base64.b64encode(raw).decode(),
        "value": base64.b64encode(key.sign(body)).decode(),
    }
    return doc


@dataclass(frozen=True, slots=True)
class Request:
    enterprise: str
    date_from: dt.date
    date_to: dt.date
    baseline_from: dt.date | None = None
    baseline_to: dt.date | None = None
    energy_version: str | None = None
    emission_version: str | None = None
    params: Parameters = field(default_factory=Parameters)


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
        baseline = _baseline(conn, req, as_of, raw=False)
        # only for a signed report (a scan of the period's raw samples): a draft is never
        # verified, and the dashboards' unsigned reports stay as quick as they were
        received = None if key is None else received_tally(conn, inputs)
    doc = _compute(inputs, baseline, req, as_of)
    doc["notices"] = notices(doc)
    rows, value = _digest(inputs, baseline)
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


PARTIAL_NOTICE = (
    "统计期在报告生成时尚未结束。数值只含截至生成时刻 (as_of) 已收到的数据。之后到达的数据, "
    "包括此前采集、此后才送达的数据, 会改变数值, 本报告届时将不能通过验证。"
    "请在统计期结束、数据全部到达后重新生成。",
    "The period had not ended when this report was made: the figures cover only the data "
    "received up to then (as_of). Data arriving later, including data measured before then "
    "but delivered after, will change the figures, and this report will then fail "
    "verification. Issue it again once the period is over and its data are in.",
)
PARTIAL_BASELINE_NOTICE = (
    "基期在报告生成时尚未结束。基期数值与较基期的变化会随之后到达的数据改变。",
    "The baseline period had not ended when this report was made: its figures and the "
    "changes against it will move as later data arrive.",
)


def notices(doc: dict[str, Any]) -> list[dict[str, str]]:
    """What a reader must know before trusting the figures, in Chinese and English."""
    out = []
    if (doc.get("period") or {}).get("partial"):
        zh, en = PARTIAL_NOTICE
        out.append({"code": "partial_period", "text": zh, "text_en": en})
    if (doc.get("baseline") or {}).get("partial"):
        zh, en = PARTIAL_BASELINE_NOTICE
        out.append({"code": "partial_baseline", "text": zh, "text_en": en})
    return out


def _baseline(
    conn: psycopg.Connection, req: Request, as_of: dt.datetime, *, raw: bool
) -> Inputs | None:
    if req.baseline_from is None or req.baseline_to is None:
        return None
    if req.baseline_from > req.date_from:
        raise ReportError("the baseline period must start before the reported period")
    return fetch_inputs(
        conn, req.enterprise, req.baseline_from, req.baseline_to, as_of,
        heartbeat_s=req.params.heartbeat_s, raw=raw,
    )  # fmt: skip


def _compute(
    inputs: Inputs,
    baseline: Inputs | None,
    req: Request,
    as_of: dt.datetime,
    *,
    report_id: str | None = None,
    energy: Any = None,
    emission: Any = None,
) -> dict[str, Any]:
    partial = any(
        local_period(req.date_from, req.date_to, s.timezone, as_of)[2] for s in inputs.sites
    )
    base_partial = baseline is not None and any(
        local_period(baseline.date_from, baseline.date_to, s.timezone, as_of)[2]
        for s in baseline.sites
    )
    return compute(
        inputs,
        params=req.params,
        energy=energy or energy_table(req.energy_version),
        emission=emission or emission_table(req.emission_version),
        partial=partial,
        baseline=baseline,
        baseline_partial=base_partial,
        report_id=report_id,
        generated_at=as_of,
    )


def _digest(inputs: Inputs, baseline: Inputs | None) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    for part in (inputs, baseline):
        if part is None:
            continue
        for line in part.rows():
            h.update(line.encode())
            h.update(b"\n")
            n += 1
    return n, h.hexdigest()


# -- verifying a report -----------------------------------------------------------------


@dataclass(slots=True)
class Check:
    item: str
    claimed: Any
    recomputed: Any
    ok: bool


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a verdict is not VERIFIED, for programs (`code`) and people (`message`).

    Codes: not_a_report, signature_invalid, key_untrusted, late_data (samples of the
    period arrived after the report was issued), samples_changed (samples present at
    issue changed or are gone), derived_changed (the derived rows differ while the raw
    samples do not), rows_changed (rows differ, cause unknown: a report made before the
    raw tally), figures_differ, factors_differ. `count`: samples or figures concerned."""

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

    @property
    def ok(self) -> bool:
        return (
            self.signature_ok
            and all(c.ok for c in self.checks)
            and self.digest_ok is not False
            and not self.problems
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
        "reasons": [{"code": r.code, "message": r.message, "count": r.count} for r in v.reasons],
        "checks": [
            {"item": c.item, "claimed": c.claimed, "recomputed": c.recomputed, "ok": c.ok}
            for c in v.checks
        ],
    }


def parse_report(data: bytes | str, where: str = "the report") -> dict[str, Any]:
    """A report file's JSON, refused with a message that says what is wrong: not UTF-8,
    not JSON, not an object, NaN or Infinity (not JSON), a key given twice (which of the
    two did the signer mean?)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{where} holds {name}, which is not JSON: it cannot be a report")

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ValueError(f"{where} gives the key {k!r} twice: it cannot be a report")
            out[k] = v
        return out

    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = json.loads(text, parse_constant=no_constant, object_pairs_hook=unique)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{where} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{where} is not a report: a JSON object was expected")
    return doc


def _generated_at(doc: dict[str, Any]) -> dt.datetime | None:
    try:
        made = dt.datetime.fromisoformat(str(doc.get("generated_at")))
    except ValueError:
        return None
    return made if made.tzinfo is not None else None


def check_signature(
    doc: dict[str, Any],
    *,
    trusted: Ed25519PublicKey | None = None,
    conn: psycopg.Connection | None = None,
) -> tuple[bool, bool, str]:
    """(valid, trusted, what to say)."""
    sig = doc.get("signature")
    if not isinstance(sig, dict) or sig.get("algorithm") != "Ed25519":
        return False, False, "INVALID: the report has no Ed25519 signature"
    try:
        body = canonical(doc, sig.get("canonicalization"))
    except CanonicalFormError as exc:
        return False, False, f"INVALID: the signed content cannot be reproduced: {exc}"
    try:
        raw = base64.b64decode(sig["public_key"], validate=True)
        public = Ed25519PublicKey.from_public_bytes(raw)
        public.verify(base64.b64decode(sig["value"], validate=True), body)
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False, False, "INVALID: the signature does not match the report's content"
    kid = key_id(public)
    if kid != sig.get("key_id"):
        return False, False, f"INVALID: key_id {sig.get('key_id')} is not the key's id {kid}"
    if trusted is not None:
        if key_id(trusted) != kid:
            return (
                False,
                False,
                (f"INVALID: signed by key {kid}, not by the trusted key {key_id(trusted)}"),
            )
        return True, True, f"valid, by the trusted key {kid}"
    if conn is not None:
        row = conn.execute(
            "SELECT public_key, retired_at, revoked_at FROM signing_keys WHERE key_id = %s",
            (kid,),
        ).fetchone()
        if row is None or bytes(row[0]) != raw:
            return False, False, f"INVALID: key {kid} is not among this server's signing keys"
        retired, revoked = row[1], row[2]
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
    return (
        True,
        False,
        (
            f"valid for the key in the report ({kid}), which is not checked against a trusted "
            "key: pass --public-key (the server's exported key) or --dsn"
        ),
    )


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


def close(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return bool(a == b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-6)
    return bool(a == b)


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
        base = _baseline(conn, req, as_of, raw=True)
        fast = fetch_inputs(
            conn, req.enterprise, req.date_from, req.date_to, as_of,
            heartbeat_s=req.params.heartbeat_s,
        )  # fmt: skip
        fast_base = _baseline(conn, req, as_of, raw=False)
        if isinstance(doc.get("received"), dict):
            verdict.arrivals = compare_received(conn, fast, doc["received"])
    again = _compute(
        raw, base, req, as_of, report_id=doc["report_id"], energy=energy, emission=emission
    )
    verdict.checks = list(compare(doc, again))
    n, value = _digest(fast, fast_base)
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
    out.extend(Reason("factors_differ", p) for p in v.problems)
    return out


_EQUIPMENT_FIELDS = (
    "coverage", "delivered_data", "nc_measured", "availability", "effectiveness",
    "quality_ratio", "oee", "utilisation", "mtbf_s", "mttr_s", "down_events",
)  # fmt: skip
_METER_FIELDS = ("quantity", "coverage", "rollovers", "resets", "tce", "tco2")


def compare(claimed: dict[str, Any], again: dict[str, Any]) -> Iterator[Check]:
    """Every KPI, equipment figure and meter figure: claimed vs recomputed."""
    got = {k["id"]: k for k in again["kpis"]}
    for k in claimed["kpis"]:
        r = got.pop(k["id"], None)
        value = None if r is None else r["value"]
        yield Check(f"kpi {k['id']}", k["value"], value, r is not None and close(k["value"], value))
    for kid in got:
        yield Check(f"kpi {kid}", None, got[kid]["value"], False)
    for section, fields, extra in (
        ("equipment", _EQUIPMENT_FIELDS, ("parts", "time")),
        ("meters", _METER_FIELDS, ()),
    ):
        mine = {x["id"]: x for x in again[section]}
        for x in claimed[section]:
            y = mine.pop(x["id"], None)
            if y is None:
                yield Check(f"{section} {x['id']}", "present", "absent", False)
                continue
            for f in fields:
                if not close(x.get(f), y.get(f)):
                    yield Check(f"{section} {x['id']} {f}", x.get(f), y.get(f), False)
            for sub in extra:
                a, b = x.get(sub) or {}, y.get(sub) or {}
                for f in sorted(set(a) | set(b)):
                    if not close(a.get(f), b.get(f)):
                        yield Check(f"{section} {x['id']} {sub}.{f}", a.get(f), b.get(f), False)
        for extra_id in mine:
            yield Check(f"{section} {extra_id}", "absent", "present", False)


# -- issued reports ---------------------------------------------------------------------


def store_report(conn: psycopg.Connection, doc: dict[str, Any], created_by: str) -> None:
    """Keep a signed report as issued: the console lists it, anyone allowed downloads the
    same bytes, and what the server signed stays on record."""
    sig = doc.get("signature") or {}
    with conn.transaction():
        conn.execute(
            "INSERT INTO reports (id, enterprise_id, period_from, period_to, partial, "
            "created_by, key_id, document) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                doc["report_id"], doc["enterprise"]["id"], doc["period"]["from"],
                doc["period"]["to"], doc["period"]["partial"], created_by, sig.get("key_id"),
                json.dumps(doc, ensure_ascii=False),
            ),
        )  # fmt: skip


def load_report(conn: psycopg.Connection, report_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT document FROM reports WHERE id::text = %s", (report_id,)).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def list_reports(conn: psycopg.Connection, enterprise: str) -> list[dict[str, Any]]:
    cur = conn.execute(
        "SELECT id::text AS id, period_from, period_to, partial, created_at, created_by, "
        "key_id FROM reports WHERE enterprise_id = %s ORDER BY created_at DESC",
        (enterprise,),
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
