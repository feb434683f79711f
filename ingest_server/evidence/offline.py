"""The offline verifier's checks of an evidence bundle (issue 17, docs/evidence-verify.md):
one zip and the verifier's own trust file, no database, no network.

    bundle.zip + trust.json
      --manifest----> every member present, its SHA-256, bytes and rows as listed; nothing
                      unlisted; the manifest's report hash and signature are report.json's
      --report------> report.json signed over RFC 8785 by a report key of the TRUST file
      --batches-----> every v2 batch: positions, digest recomputed from the bundled samples,
                      signature by the gateway key the trust file says was enrolled when
                      the batch arrived (evidence/ledger.py's check_batch); orphan samples
      --chain-------> each gateway's chain (evidence/ledger.py's check_chain): every gap
                      with its duration and the devices and equipment it touches
      --anchors-----> each day's root rebuilt from its leaves; tokens under a trusted TSA;
                      every period batch a leaf of its day; unanchored days listed
      --kpis--------> not built yet: not_checked, so the verdict is never "pass"
      --> Verdict: each check ok / failed / not_checked with bilingual reasons;
          pass only when every check is ok, fail when one failed, else incomplete

Pure: it reads the zip with zipfile and pyarrow and trusts nothing the bundle ships (its
gateway_keys.json is a copy for reading; the keys come from the trust file). The batch
checks reuse the ledger check's own functions over the bundle's rows, so `ledger check`
on the server and this check cannot disagree on what a finding is.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest_server.errors import InvalidInputError
from ingest_server.evidence import ledger, merkle
from ingest_server.evidence.timestamp import TokenInvalidError, verify_any

# check_signature lives in verify.py, which also imports the database side (psycopg): the
# light verify install will need it moved to a module of its own (docs/evidence-verify.md)
from ingest_server.evidence.verify import check_signature, parse_report

BUNDLE_FORMAT, BUNDLE_VERSION = "factory-evidence.bundle", 1
TRUST_FORMAT, TRUST_VERSION = "factory-evidence.trust", 1
Status = Literal["ok", "failed", "not_checked"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LISTED = 20  # reasons of one kind listed in full; the rest are counted
_SAMPLE_COLUMNS = ["series_id", "ts", "value", "text", "quality", "status", "batch_id",
                   "batch_pos"]  # fmt: skip
KPI_NOT_BUILT = (
    "尚未实现根据证据包重新计算 KPI",
    "KPI recomputation from the bundle is not built yet",
)


class BundleInputError(InvalidInputError, ValueError):
    """A file that is not a bundle or a trust file this verifier reads."""


@dataclass(frozen=True)
class Reason:
    code: str
    text: str  # Chinese, as the report's bilingual notices (`text`, `text_en`)
    text_en: str


@dataclass
class Check:
    name: str  # manifest, report_signature, batches, chain, anchors, kpis
    status: Status = "ok"
    reasons: list[Reason] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def fail(self, code: str, zh: str, en: str) -> None:
        self.status = "failed"
        self.reasons.append(Reason(code, zh, en))

    def skip(self, zh: str, en: str) -> None:
        self.status = "not_checked"
        self.reasons.append(Reason("not_checked", zh, en))


@dataclass
class Verdict:
    checks: list[Check]

    @property
    def verdict(self) -> Literal["pass", "incomplete", "fail"]:
        """pass only when every check ran and held; a check not run is never a pass."""
        if any(c.status == "failed" for c in self.checks):
            return "fail"
        if any(c.status == "not_checked" for c in self.checks):
            return "incomplete"
        return "pass"

    def check(self, name: str) -> Check:
        (found,) = [c for c in self.checks if c.name == name]
        return found

    @property
    def text(self) -> tuple[str, str]:
        """The verdict in one line, Chinese and English."""
        failed = [c.name for c in self.checks if c.status == "failed"]
        skipped = [c.name for c in self.checks if c.status == "not_checked"]
        if failed:
            return (f"不通过: 以下检查未通过: {'、'.join(failed)}",
                    f"FAIL: these checks failed: {', '.join(failed)}")  # fmt: skip
        if skipped:
            return (f"不完整: 其余检查均通过, 但以下检查未进行: {'、'.join(skipped)}",
                    f"INCOMPLETE: every other check holds, but these were not checked: "
                    f"{', '.join(skipped)}")  # fmt: skip
        return "通过: 所有检查均成立", "PASS: every check holds"

    def as_json(self) -> dict[str, Any]:
        zh, en = self.text
        return {
            "verdict": self.verdict, "text": zh, "text_en": en,
            "checks": [
                {"name": c.name, "status": c.status, "details": c.details,
                 "reasons": [{"code": r.code, "text": r.text, "text_en": r.text_en}
                             for r in c.reasons]}
                for c in self.checks
            ],
        }  # fmt: skip


# --- reading --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trust:
    enterprise: str
    gateway_keys: list[ledger.GatewayKey]
    report_keys: dict[str, dict[str, Any]]
    tsas: list[list[x509.Certificate]]


def _when(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _ms_time(ms: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=ms)


def load_trust_file(trust: Mapping[str, Any] | Path) -> _Trust:
    """The verifier's trust file (docs/evidence.md, "The trust file"), as a path or parsed."""
    where = str(trust) if isinstance(trust, Path) else "the trust file"
    if isinstance(trust, Path):
        try:
            doc = json.loads(trust.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleInputError(f"{where}: cannot read it as JSON ({exc})") from None
    else:
        doc = dict(trust)
    if (doc.get("format"), doc.get("format_version")) != (TRUST_FORMAT, TRUST_VERSION):
        raise BundleInputError(
            f"{where} is not a {TRUST_FORMAT} version {TRUST_VERSION} file (format "
            f"{doc.get('format')!r}, version {doc.get('format_version')!r}): give the file "
            "`ingest-server trust export` wrote, as handed over at the enrolment visit"
        )
    try:
        keys = []
        for g in doc["gateways"]:
            revoked = _when(g.get("revoked_at"))
            for k in g["keys"]:
                retired = _when(k.get("retired_at"))
                if revoked is not None and (retired is None or revoked < retired):
                    retired = revoked  # a revoked gateway's keys sign nothing after it
                keys.append(ledger.GatewayKey(g["gateway"], base64.b64decode(k["public_key"]),
                                              _when(k["enrolled_at"]), retired))  # type: ignore[arg-type]  # fmt: skip
        tsas = [x509.load_pem_x509_certificates(t["chain_pem"].encode()) for t in doc["tsas"]]
        return _Trust(doc["enterprise"], keys, {k["key_id"]: k for k in doc["report_keys"]}, tsas)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInputError(
            f"{where}: a {TRUST_FORMAT} file, but an entry is missing or malformed ({exc!r}); "
            "export it again with `ingest-server trust export`"
        ) from None


def _open(path: Path) -> tuple[dict[str, Any], dict[str, bytes], list[str]]:
    """The manifest, every member's bytes, and the zip's names in order (duplicates kept)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            files = {n: z.read(n) for n in dict.fromkeys(names)}
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleInputError(f"{path}: not a readable zip file ({exc}); give the file "
                               "`ingest-server report --bundle` wrote") from None  # fmt: skip
    if "manifest.json" not in files:
        raise BundleInputError(f"{path}: a zip without manifest.json is not an evidence bundle")
    try:
        manifest = json.loads(files["manifest.json"])
    except ValueError as exc:
        raise BundleInputError(f"{path}: manifest.json is not JSON ({exc})") from None
    if (manifest.get("format"), manifest.get("format_version")) != (BUNDLE_FORMAT, BUNDLE_VERSION):
        raise BundleInputError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this verifier reads {BUNDLE_FORMAT} version "
            f"{BUNDLE_VERSION} only: use a verifier of the version that made the bundle"
        )
    return manifest, files, names


def _table(files: Mapping[str, bytes], name: str, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(io.BytesIO(files[name]), columns=columns)


def _doc(files: Mapping[str, bytes], name: str) -> Any:
    return json.loads(files[name])


# --- the checks ---------------------------------------------------------------------------


def check_bundle(bundle_path: Path, trust: Mapping[str, Any] | Path) -> Verdict:
    """Every check of the bundle at `bundle_path` against `trust` (module docstring).
    Raises BundleInputError for a file that is not a bundle or trust file it reads."""
    manifest, files, names = _open(Path(bundle_path))
    t = load_trust_file(trust)
    if t.enterprise != manifest.get("enterprise"):
        raise BundleInputError(
            f"the trust file is enterprise {t.enterprise!r}'s, the bundle enterprise "
            f"{manifest.get('enterprise')!r}'s: use the trust file handed over for that "
            "enterprise"
        )
    checks = [_manifest(manifest, files, names)]
    checks.append(_guarded("report_signature", files, ["report.json"],
                           lambda: _report_signature(files, t)))  # fmt: skip
    v2: list[ledger.Batch] = []
    batch_members = ["ledger.parquet", "series.parquet", "samples.parquet",
                     "samples_aside.parquet"]  # fmt: skip
    checks.append(_guarded("batches", files, batch_members,
                           lambda: _batches(manifest, files, t, v2)))  # fmt: skip
    checks.append(_guarded("chain", files, [*batch_members, "declarations.json", "registry.json"],
                           lambda: _chain(manifest, files, t, v2)))  # fmt: skip
    checks.append(_guarded("anchors", files, ["anchors.json", "anchor_leaves.parquet",
                                              "registry.json", "ledger.parquet"],
                           lambda: _anchors(files, t, v2)))  # fmt: skip
    kpis = Check("kpis")
    kpis.skip(*KPI_NOT_BUILT)
    checks.append(kpis)
    return Verdict(checks)


def _guarded(name: str, files: Mapping[str, bytes], needs: Sequence[str], run: Any) -> Check:
    """`run()`, unless a member it reads is missing (not_checked, naming it) or cannot be
    read (failed: the bundle is damaged, and no other check can stand in for this one)."""
    missing = [m for m in needs if m not in files]
    if missing:
        c = Check(name)
        c.skip(f"证据包缺少 {', '.join(missing)}, 无法检查",
               f"the bundle lacks {', '.join(missing)}: cannot be checked")  # fmt: skip
        return c
    try:
        return cast(Check, run())
    except (pa.ArrowException, ValueError, KeyError, TypeError) as exc:
        c = Check(name)
        c.fail("unreadable", f"证据包内容无法读取: {exc!r}",
               f"the bundle's members cannot be read for this check: {exc!r}")  # fmt: skip
        return c


def _manifest(manifest: dict[str, Any], files: Mapping[str, bytes], names: list[str]) -> Check:
    c = Check("manifest")
    listed = {m["name"]: m for m in manifest.get("members", [])}
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        c.fail("duplicate", f"压缩包中成员重复: {twice}",
               f"the zip holds these names more than once: {twice}")  # fmt: skip
    for name, m in listed.items():
        data = files.get(name)
        if data is None:
            c.fail("missing", f"清单列出的成员 {name} 不在证据包中",
                   f"member {name} is listed in the manifest but not in the bundle")  # fmt: skip
            continue
        if hashlib.sha256(data).hexdigest() != m.get("sha256") or len(data) != m.get("bytes"):
            c.fail("hash", f"成员 {name} 的 SHA-256 或长度与清单不符: 已被更改",
                   f"member {name}: its SHA-256 or size is not the manifest's: it was "
                   "changed after the bundle was made")  # fmt: skip
            continue
        rows = _rows(name, data)
        if m.get("rows") is not None and rows != m["rows"]:
            c.fail("rows", f"成员 {name} 有 {rows} 行, 清单记载 {m['rows']} 行",
                   f"member {name} holds {rows} rows, the manifest says {m['rows']}")  # fmt: skip
    unlisted = sorted(set(files) - set(listed) - {"manifest.json"})
    if unlisted:
        c.fail("unlisted", f"证据包含清单未列出的成员: {unlisted}",
               f"the bundle holds members the manifest does not list: {unlisted}")  # fmt: skip
    rep = manifest.get("report") or {}
    report = files.get(str(rep.get("member", "report.json")))
    if report is not None:
        if hashlib.sha256(report).hexdigest() != rep.get("sha256"):
            c.fail("report_hash", "report.json 的 SHA-256 与清单记载的报告不符",
                   "report.json's SHA-256 is not the report the manifest names")  # fmt: skip
        try:
            doc = parse_report(report, "report.json")
            signed = (doc.get("report_id"), (doc.get("signature") or {}).get("value"))
        except ValueError:
            signed = (None, None)
        if signed != (rep.get("report_id"), rep.get("signature")):
            c.fail("report_binding", "清单记载的报告编号或签名与 report.json 不符",
                   "the manifest's report id or signature is not report.json's")  # fmt: skip
    c.details = {"members": len(listed)}
    return c


def _rows(name: str, data: bytes) -> int | None:
    try:
        if name.endswith(".parquet"):
            return int(pq.read_metadata(io.BytesIO(data)).num_rows)
        doc = json.loads(data)
    except (pa.ArrowException, ValueError):
        return None
    return len(doc) if isinstance(doc, list) else None


def _report_signature(files: Mapping[str, bytes], t: _Trust) -> Check:
    c = Check("report_signature")
    try:
        doc = parse_report(files["report.json"], "report.json")
    except ValueError as exc:
        c.fail("not_a_report", f"report.json 不是报告: {exc}", str(exc))
        return c
    kid = (doc.get("signature") or {}).get("key_id")
    key = t.report_keys.get(str(kid))
    c.details = {"key_id": kid, "report_id": doc.get("report_id")}
    if key is None:
        c.fail("key_untrusted",
               f"报告由密钥 {kid} 签名, 该密钥不在信任文件中 (信任文件中的报告密钥: "
               f"{sorted(t.report_keys)})",
               f"the report is signed by key {kid}, which is not in the trust file (its "
               f"report keys: {sorted(t.report_keys)}); a key shipped in the bundle is never "
               "trusted")  # fmt: skip
        return c
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    ok, _, text = check_signature(doc, trusted=public)
    if not ok:
        c.fail("signature_invalid", f"报告签名无效: {text}", text)
        return c
    made = _when(doc.get("generated_at"))
    if key.get("revoked_at"):
        c.fail("key_revoked", f"签名密钥 {kid} 已于 {key['revoked_at']} 吊销",
               f"key {kid} was revoked on {key['revoked_at']} (compromised)")  # fmt: skip
    elif key.get("retired_at") and (made is None or made >= _when(key["retired_at"])):  # type: ignore[operator]
        c.fail("key_retired",
               f"签名密钥 {kid} 已于 {key['retired_at']} 停用, 报告生成于 {made}",
               f"key {kid} was retired on {key['retired_at']}, the report says it was made "
               f"{doc.get('generated_at')}")  # fmt: skip
    return c


def _ledger_batches(manifest: dict[str, Any], files: Mapping[str, bytes]) -> list[ledger.Batch]:
    ent = manifest["enterprise"]
    out = []
    for r in _table(files, "ledger.parquet").to_pylist():
        if r["contract"] != 2:
            continue
        out.append(ledger.Batch(
            r["batch_id"], f"{ent}/{r['site']}/{r['gateway']}", r["gateway"], r["boot"],
            r["seq"], _ms_time(r["sent"]), _ms_time(r["received_at"]), 2, r["prev"],
            r["digest"], r["signature"], r["n_total"], r["role"],
        ))  # fmt: skip
    return out


def _batch_samples(files: Mapping[str, bytes]) -> pa.Table:
    """Every bundled sample of a batch, both tables, sorted by (batch_id, batch_pos), with
    its series' device and tag (null when the series is not in series.parquet)."""
    parts = [_table(files, n, _SAMPLE_COLUMNS) for n in ("samples.parquet",
                                                         "samples_aside.parquet")]  # fmt: skip
    rows = pa.concat_tables(parts)
    rows = rows.filter(pc.is_valid(rows["batch_id"]))
    rows = rows.sort_by([("batch_id", "ascending"), ("batch_pos", "ascending")])
    series = _table(files, "series.parquet", ["series_id", "site", "gateway", "device", "tag"])
    at = pc.index_in(rows["series_id"], value_set=series["series_id"])
    for name in ("device", "tag", "site", "gateway"):
        rows = rows.append_column(name, pc.take(series[name], at))
    return rows


def _batches(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, v2: list[ledger.Batch]
) -> Check:
    """Positions, digest and signature of every v2 batch (ledger.check_batch, one batch at
    a time over Python rows: its `batch_digest`), and samples whose batch is not bundled.
    `v2` receives the bundle's v2 batches, for the checks after this one."""
    c = Check("batches")
    v2 += _ledger_batches(manifest, files)
    rows = _batch_samples(files)
    ids = rows["batch_id"].to_pylist()
    cols = {n: rows[n].to_pylist() for n in ("batch_pos", "device", "tag", "ts", "value",
                                              "text", "quality", "status")}  # fmt: skip
    starts: dict[int, tuple[int, int]] = {}
    for i, b in enumerate(ids):
        lo, _ = starts.get(b, (i, i))
        starts[b] = (lo, i + 1)
    findings: list[ledger.Finding] = []
    recomputed = signatures = 0
    for b in v2:
        lo, hi = starts.get(b.batch_id, (0, 0))
        if hi == lo and b.role in ("before", "after"):
            # a chain neighbour without a bundled sample: its signature only (check_batch's
            # own wording; its positions and digest cannot be checked without samples)
            findings += [f for f in ledger.check_batch(b, [], t.gateway_keys)
                         if f.kind == "signature"]  # fmt: skip
            signatures += 1
            continue
        # every other v2 batch is checked whole, whatever its `complete` flag says
        group = [
            ledger.StoredSample(b.batch_id, *x)
            for x in zip(*(cols[n][lo:hi] for n in ("batch_pos", "device", "tag", "ts", "value",
                                                      "text", "quality", "status")), strict=True)
        ]  # fmt: skip
        findings += ledger.check_batch(b, group, t.gateway_keys)
        recomputed += hi - lo
        signatures += 1
    known = {b.batch_id for b in v2}
    orphans = sorted(set(starts) - known)
    for bid in orphans:
        lo, hi = starts[bid]
        gw = rows["gateway"][lo].as_py()
        site = rows["site"][lo].as_py()
        ts = cols["ts"][lo:hi]
        o = ledger.Orphans(f"{manifest['enterprise']}/{site}/{gw}", bid, hi - lo,
                           _ms_time(min(ts)), _ms_time(max(ts)))  # fmt: skip
        c.fail("orphan_samples",
               f"{o.gateway}: {o.n} 个样本 ({o.first_ts.isoformat()} 至 {o.last_ts.isoformat()})"
               f"属于批次 {bid}, 但证据包的账本中没有该批次",
               f"{o.gateway}: {o.n} sample(s) from {o.first_ts.isoformat()} to "
               f"{o.last_ts.isoformat()} name batch id {bid}, which the bundle's ledger does "
               "not hold: its ledger row was removed")  # fmt: skip
    _findings(c, findings)
    c.details = {"v2_batches": len(v2), "signatures_checked": signatures,
                 "samples_recomputed": recomputed, "orphan_batches": len(orphans),
                 "digest": "batch_digest, per batch"}  # fmt: skip
    return c


_ZH_KIND = {
    "changed": "样本与网关签名的内容不符", "signature": "网关签名不成立",
    "positions": "批次内样本位置不完整", "gap": "哈希链断裂 (缺少批次)",
    "order": "哈希链顺序错误", "declaration": "网关的丢弃声明不成立",
    "orphan_samples": "样本所属批次不在账本中",
}  # fmt: skip


def _findings(c: Check, findings: Sequence[ledger.Finding], extra: Mapping[int, str] = {}) -> None:
    """ledger findings as reasons: the Chinese names the kind, both carry the finding."""
    for i, f in enumerate(findings):
        if i == _LISTED:
            more = len(findings) - _LISTED
            c.fail("more", f"另有 {more} 项问题未列出", f"and {more} more finding(s)")
            return
        en = f"{f.where()}: {f.message}{extra.get(i, '')}"
        c.fail(f.kind, f"{f.where()}: {_ZH_KIND.get(f.kind, f.kind)} ({en})", en)


def _chain(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, v2: list[ledger.Batch]
) -> Check:
    """Each gateway's chain over its period batches and their neighbours (an `extra`
    batch's chain is another period's); each gap with the time it spans (the sent times of
    the stored batches around it) and the devices and equipment of the gateway."""
    c = Check("chain")
    declared = [
        ledger.Declaration(d["gateway"], d["boot"], d["first_seq"], d["last_seq"], d["reason"],
                           _when(d["declared_at"]), _when(d["received_at"]),  # type: ignore[arg-type]
                           base64.b64decode(d["payload"]))
        for d in _doc(files, "declarations.json")
    ]  # fmt: skip
    registry = _doc(files, "registry.json")
    series = _table(files, "series.parquet", ["site", "gateway", "device"]).to_pylist()
    known = {bytes(b.digest): b for b in v2 if b.digest is not None}
    disclosed = ledger.Disclosed(declared, t.gateway_keys)
    by_gateway: dict[str, list[ledger.Batch]] = {}
    for b in v2:
        if str(b.role) != "extra":  # ledger.Role has no `extra`: the bundle's own role
            by_gateway.setdefault(b.gateway, []).append(b)
    findings: list[ledger.Finding] = []
    notes: list[str] = []
    gaps: list[dict[str, Any]] = []
    for gateway in sorted(by_gateway):
        ordered = sorted(by_gateway[gateway], key=lambda b: (b.boot, b.seq))
        at = {(b.boot, b.seq): i for i, b in enumerate(ordered)}
        for f in ledger.check_chain(ordered, known, disclosed):
            if f.kind == "note":
                notes.append(f"{f.where()}: {f.message}")
                continue
            findings.append(f)
            if f.kind != "gap":
                continue
            i = at[(f.boot, f.seq)]  # type: ignore[index]
            after, before = ordered[i - 1] if i else None, ordered[i]
            gaps.append(_gap(f, after, before, series, registry))
    findings += disclosed.findings
    extra = {i: g["text_en"] for i, g in enumerate(gaps)}  # gaps come first in `findings`
    ranked = sorted(findings, key=lambda f: f.kind != "gap")  # stable: gaps in `gaps` order
    _findings(c, ranked, extra)
    c.details = {"gateways": len(by_gateway), "gaps": [{k: v for k, v in g.items()
                                                        if k != "text_en"} for g in gaps],
                 "notes": notes}  # fmt: skip
    return c


def _gap(
    f: ledger.Finding,
    after: ledger.Batch | None,
    before: ledger.Batch,
    series: list[dict[str, Any]],
    registry: dict[str, Any],
) -> dict[str, Any]:
    _, site, gw = f.gateway.split("/", 2)
    devices = sorted({s["device"] for s in series if (s["site"], s["gateway"]) == (site, gw)})
    touched = sorted(
        x["id"] for kind in ("equipment", "meters") for x in registry.get(kind) or []
        if (x.get("site_id"), x.get("gateway_id")) == (site, gw)
        and (x.get("device") is None or x.get("device") in devices)
    )  # fmt: skip
    span = None if after is None else (before.sent - after.sent).total_seconds()
    since = "the gateway's first stored batch" if after is None else after.sent.isoformat()
    text = (f"; between sent times {since} and {before.sent.isoformat()}"
            + ("" if span is None else f" ({span:.0f} s)")
            + f"; devices {devices}, equipment and meters {touched}")  # fmt: skip
    return {"gateway": f.gateway, "boot": f.boot, "seq": f.seq, "missing": f.missing,
            "from": None if after is None else after.sent.isoformat(),
            "to": before.sent.isoformat(), "seconds": span, "devices": devices,
            "equipment": touched, "text_en": text}  # fmt: skip


def _anchors(files: Mapping[str, bytes], t: _Trust, v2: list[ledger.Batch]) -> Check:
    """Each day's current root rebuilt from its leaves and its tokens verified under the
    trust file's TSAs; every period batch a leaf of its (anchored) day."""
    c = Check("anchors")
    zones = {s["id"]: ZoneInfo(s["timezone"]) for s in _doc(files, "registry.json")["sites"]}
    leaves: dict[dt.date, list[dict[str, Any]]] = {}
    for r in _table(files, "anchor_leaves.parquet").to_pylist():
        leaves.setdefault(r["day"], []).append(r)
    anchored: dict[dt.date, set[tuple[str, str, int, int, bytes]]] = {}
    superseded = []
    for a in _doc(files, "anchors.json"):
        day = dt.date.fromisoformat(a["day"])
        if a.get("superseded_at"):
            superseded.append(f"{day} ({a['superseded_at']})")
            continue
        leaf_set = _day(c, day, a, sorted(leaves.get(day, []), key=lambda r: r["index"]), t)
        if leaf_set is not None:
            anchored[day] = leaf_set
    days: dict[dt.date, list[ledger.Batch]] = {}
    for b in v2:
        _, site, _ = b.gateway.split("/", 2)
        zone = zones.get(site, ZoneInfo("UTC"))
        days.setdefault(b.received_at.astimezone(zone).date(), []).append(b)
    unanchored = sorted(d for d in days if d not in anchored)
    for day in sorted(days):
        period = [b for b in days[day] if b.role == "period"]
        if day not in anchored:
            if period:
                c.fail("day_unanchored",
                       f"{day}: 本期 {len(period)} 个批次所在的日期没有有效的时间戳",
                       f"{day} holds {len(period)} period batch(es) but has no valid "
                       "time-stamp token: when they were sealed is not proven; anchor the day "
                       "(`anchor --day`) and make the bundle again")  # fmt: skip
            continue
        for b in period:
            leaf = (b.gateway.split("/", 2)[1], b.gw, b.boot, b.seq, bytes(b.digest or b""))
            if leaf not in anchored[day]:
                c.fail("not_a_leaf", f"{b.gateway} boot {b.boot} seq {b.seq} 不是 {day} 的叶子",
                       f"{b.gateway} boot {b.boot} seq {b.seq} (received {day}) is not a leaf "
                       "of its day's time-stamped tree with its digest")  # fmt: skip
    c.details = {"anchored_days": [str(d) for d in sorted(anchored)],
                 "unanchored_days": [str(d) for d in unanchored],
                 "superseded_roots": superseded}  # fmt: skip
    return c


def _day(
    c: Check, day: dt.date, a: dict[str, Any], rows: list[dict[str, Any]], t: _Trust
) -> set[tuple[str, str, int, int, bytes]] | None:
    """One day's current root: rebuilt from its leaves, its tokens verified. The day's
    leaves when a token verifies over its root, else None (the day is unanchored)."""
    root = base64.b64decode(a["root"])
    keys = [(r["site"], r["gateway"], r["boot"], r["seq"]) for r in rows]
    if [r["index"] for r in rows] != list(range(a["leaves"])) or keys != sorted(keys):
        c.fail("leaves", f"{day}: 叶子数量或顺序与锚定记录不符",
               f"{day}: the bundled leaves are not the {a['leaves']} leaves of the "
               "anchored root in leaf order 1")  # fmt: skip
    if merkle.root([r["digest"] for r in rows]) != root:
        c.fail("root", f"{day}: 由叶子重建的 Merkle 根与锚定的根不符: 当天的历史在加盖时间戳后"
               "被改写", f"{day}: the root rebuilt from its leaves is not the anchored root: "
               "the day's history was rewritten after it was time-stamped")  # fmt: skip
    good = 0
    for tok in a.get("tokens") or []:
        if not tok.get("token"):
            continue  # a TSA that granted nothing: the day may still hold another token
        try:
            verify_any(base64.b64decode(tok["token"]), root, t.tsas)
            good += 1
        except TokenInvalidError as exc:
            c.fail("token", f"{day}: {tok.get('tsa_name')} 的时间戳令牌无效 ({exc})",
                   f"{day}: the token of {tok.get('tsa_name')} does not verify under a TSA "
                   f"of the trust file over this root: {exc}")  # fmt: skip
    if not good:
        return None
    return {(r["site"], r["gateway"], r["boot"], r["seq"], r["digest"]) for r in rows}
