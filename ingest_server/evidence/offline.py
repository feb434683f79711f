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
      --kpis--------> every KPI recomputed from the bundle's samples, registry (rolled
                      back by its edit trail), entries and factors, claimed vs recomputed
                      (evidence/offline_kpi.py); the trail, entries and factors checked
      --> Verdict: each check ok / failed / not_checked with bilingual reasons;
          pass only when every check is ok, fail when one failed, else incomplete

Pure: it reads the zip with zipfile and pyarrow and trusts nothing the bundle ships (its
gateway_keys.json is a copy for reading; the keys come from the trust file). The batch
checks reuse the ledger check's own functions over the bundle's rows, so `ledger check`
on the server and this check cannot disagree on what a finding is.

Fast (docs/evidence-verify.md, "Speed"): the ledger is held as columns (`_Ledger`), the
links, days and leaves checked column-wise, and a `ledger.Batch` made only for a batch a
finding is about; the digests column-wise (batch_columns.prepare_columns); the
signatures by libsodium on worker threads from the start of `batches` to the end of
`kpis` (`_Signatures`; what libsodium refuses is checked again with cryptography).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import struct
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from cryptography import x509
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from ingest_server.errors import InvalidInputError
from ingest_server.evidence import batch_columns, ledger, merkle, offline_kpi
from ingest_server.evidence.algorithms import UnsupportedAlgorithmError, algorithm
from ingest_server.evidence.signature import check_signature, parse_report, trusted_key
from ingest_server.evidence.timestamp import TokenInvalidError, verify_any

BUNDLE_FORMAT, BUNDLE_VERSION = "factory-evidence.bundle", 1
TRUST_FORMAT, TRUST_VERSION = "factory-evidence.trust", 1
Status = Literal["ok", "failed", "not_checked"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_LISTED = 20  # reasons of one kind listed in full; the rest are counted
_SAMPLE_COLUMNS = ["series_id", "ts", "value", "text", "quality", "status", "batch_id",
                   "batch_pos"]  # fmt: skip


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
                algorithm(k.get("algorithm"), f"gateway {g['gateway']}'s key")  # refused if unknown
                retired = _when(k.get("retired_at"))
                if revoked is not None and (retired is None or revoked < retired):
                    retired = revoked  # a revoked gateway's keys sign nothing after it
                keys.append(ledger.GatewayKey(g["gateway"], base64.b64decode(k["public_key"]),
                                              _when(k["enrolled_at"]), retired))  # type: ignore[arg-type]  # fmt: skip
        tsas = [x509.load_pem_x509_certificates(t["chain_pem"].encode()) for t in doc["tsas"]]
        return _Trust(doc["enterprise"], keys, {k["key_id"]: k for k in doc["report_keys"]}, tsas)
    except UnsupportedAlgorithmError as exc:
        raise BundleInputError(f"{where}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleInputError(
            f"{where}: a {TRUST_FORMAT} file, but an entry is missing or malformed ({exc!r}); "
            "export it again with `ingest-server trust export`"
        ) from None


class Members(Mapping[str, bytes]):
    """The bundle's members, read from the zip only when asked (docs/evidence-verify.md,
    "Speed"): `files[name]` is a member's bytes (the JSON members, kept once read), and
    `parquet(name)` opens a Parquet member where it lies in the zip (stored, as
    `bundle.write` writes them), so that its row groups are read one at a time."""

    _KEEP = 64 << 20  # members up to this size are kept once read (JSON, small tables)

    def __init__(self, path: Path, infos: Mapping[str, zipfile.ZipInfo]) -> None:
        self.path = path
        self._infos = dict(infos)
        self._kept: dict[str, bytes] = {}

    def __getitem__(self, name: str) -> bytes:
        if name in self._kept:
            return self._kept[name]
        info = self._infos[name]
        with zipfile.ZipFile(self.path) as z:
            data = z.read(info)
        if len(data) <= self._KEEP:
            self._kept[name] = data
        return data

    def __iter__(self) -> Iterator[str]:
        return iter(self._infos)

    def __len__(self) -> int:
        return len(self._infos)

    def size(self, name: str) -> int:
        return int(self._infos[name].file_size)

    def chunks(self, name: str, size: int = 1 << 20) -> Iterator[bytes]:
        """The member's bytes, `size` at a time (the manifest's SHA-256s, streamed)."""
        with zipfile.ZipFile(self.path) as z, z.open(self._infos[name]) as f:
            while chunk := f.read(size):
                yield chunk

    def parquet(self, name: str) -> pq.ParquetFile:
        info = self._infos[name]
        if info.compress_type != zipfile.ZIP_STORED:  # a deflated member: read it whole
            return pq.ParquetFile(pa.BufferReader(self[name]))
        raw = self.path.open("rb")
        raw.seek(info.header_offset)
        local = raw.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raw.close()
            raise ValueError(f"{name}: its local zip header is damaged")
        start = (
            info.header_offset
            + 30
            + int.from_bytes(local[26:28], "little")
            + int.from_bytes(local[28:30], "little")
        )
        raw.close()
        # the member's bytes mapped from the zip as one of pyarrow's own buffers (pages read
        # as the row groups are): never a Python file object, with which arrow may still
        # be tidying up on a worker thread when the interpreter exits, aborting it
        # (apache/arrow#33975; about one run in twenty here)
        mapped = pa.memory_map(str(self.path), "r")
        if start + info.file_size > mapped.size():
            raise ValueError(f"{name}: the zip ends inside the member")
        return pq.ParquetFile(pa.BufferReader(mapped.read_at(info.file_size, start)))


def _open(path: Path) -> tuple[dict[str, Any], Members, list[str]]:
    """The manifest, the members (read lazily), and the zip's names in order (duplicates
    kept)."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            names = [i.filename for i in infos]
            first: dict[str, zipfile.ZipInfo] = {}
            for i in infos:
                first.setdefault(i.filename, i)
            files = Members(path, first)
            manifest_bytes = files["manifest.json"] if "manifest.json" in first else None
    except (OSError, zipfile.BadZipFile) as exc:
        raise BundleInputError(f"{path}: not a readable zip file ({exc}); give the file "
                               "`ingest-server report --bundle` wrote") from None  # fmt: skip
    if manifest_bytes is None:
        raise BundleInputError(f"{path}: a zip without manifest.json is not an evidence bundle")
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise BundleInputError(f"{path}: manifest.json is not JSON ({exc})") from None
    if (manifest.get("format"), manifest.get("format_version")) != (BUNDLE_FORMAT, BUNDLE_VERSION):
        raise BundleInputError(
            f"{path}: format {manifest.get('format')!r} version "
            f"{manifest.get('format_version')!r}; this verifier reads {BUNDLE_FORMAT} version "
            f"{BUNDLE_VERSION} only: use a verifier of the version that made the bundle"
        )
    return manifest, files, names


def _parquet(files: Mapping[str, bytes], name: str) -> pq.ParquetFile:
    """A Parquet member, opened where it lies (Members) or over its bytes (a plain dict)."""
    if isinstance(files, Members):
        return files.parquet(name)
    return pq.ParquetFile(pa.BufferReader(files[name]))


def _table(files: Mapping[str, bytes], name: str, columns: list[str] | None = None) -> pa.Table:
    """A whole Parquet member (`columns` of it): for the small ones. The samples are read
    a row group at a time (`_row_groups`)."""
    return _parquet(files, name).read(columns=columns)


def _row_groups(
    files: Mapping[str, bytes], name: str, columns: list[str] | None = None
) -> Iterator[pa.Table]:
    """A Parquet member one row group at a time: the working set is one row group (the
    bundle writes the samples in row groups of at most 1 Mi rows)."""
    pf = _parquet(files, name)
    for i in range(pf.num_row_groups):
        yield pf.read_row_group(i, columns=columns)


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
    box: dict[str, Any] = {}  # the ledger's columns, read once for the three checks
    batch_members = ["ledger.parquet", "series.parquet", "samples.parquet",
                     "samples_aside.parquet"]  # fmt: skip
    checks.append(_guarded("batches", files, batch_members,
                           lambda: _batches(manifest, files, t, box)))  # fmt: skip
    chain_members = [*batch_members, "declarations.json", "registry.json"]
    try:
        checks.append(_guarded("chain", files, chain_members,
                               lambda: _chain(manifest, files, t, box)))  # fmt: skip
        checks.append(_guarded("anchors", files, ["anchors.json", "anchor_leaves.parquet",
                                                  "registry.json", "ledger.parquet"],
                               lambda: _anchors(manifest, files, t, box)))  # fmt: skip
        checks.append(_guarded("kpis", files, offline_kpi.MEMBERS, lambda: _kpis(files)))
    except BaseException:
        if "cancel" in box:  # no check will wait for the signatures: stop them
            box["cancel"]()
        raise
    if "finish" in box:  # the batch signatures, verified meanwhile on worker threads
        checks[2] = _guarded("batches", files, batch_members, box.pop("finish"))
    return Verdict(checks)


def _kpis(files: Mapping[str, bytes]) -> Check:
    """Every KPI recomputed from the bundle (evidence/offline_kpi.py), as a check."""
    c = Check("kpis")
    found = offline_kpi.check_kpis(files)
    for code, zh, en in found.failures:
        c.fail(code, zh, en)
    c.details = found.details
    return c


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
        if name not in files:
            c.fail("missing", f"清单列出的成员 {name} 不在证据包中",
                   f"member {name} is listed in the manifest but not in the bundle")  # fmt: skip
            continue
        sha, size = _sha256(files, name)
        if sha != m.get("sha256") or size != m.get("bytes"):
            c.fail("hash", f"成员 {name} 的 SHA-256 或长度与清单不符: 已被更改",
                   f"member {name}: its SHA-256 or size is not the manifest's: it was "
                   "changed after the bundle was made")  # fmt: skip
            continue
        rows = _rows(name, files)
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


def _sha256(files: Mapping[str, bytes], name: str) -> tuple[str, int]:
    """A member's SHA-256 (hex) and size, read a MiB at a time from the zip."""
    h, size = hashlib.sha256(), 0
    chunks = files.chunks(name) if isinstance(files, Members) else iter([files[name]])
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _rows(name: str, files: Mapping[str, bytes]) -> int | None:
    try:
        if name.endswith(".parquet"):
            return int(_parquet(files, name).metadata.num_rows)
        doc = json.loads(files[name])
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
    try:
        public = trusted_key(key, f"report key {kid} of the trust file")
    except UnsupportedAlgorithmError as exc:
        c.fail("algorithm_unsupported", exc.text, exc.text_en)
        return c
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


# --- the ledger as columns ----------------------------------------------------------------

_LEDGER_COLUMNS = ["batch_id", "site", "gateway", "boot", "seq", "sent", "received_at",
                   "contract", "prev", "digest", "signature", "n_total", "role"]  # fmt: skip


def _fixed(col: pa.ChunkedArray | pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A binary column as an (n, width) uint8 array (zeros where not `width` bytes) and
    where it holds exactly `width` bytes. Zero-copy for the bundle's own type
    (fixed_size_binary(width) without an offset)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if pa.types.is_fixed_size_binary(arr.type) and arr.type.byte_width == width:
        data = arr.buffers()[1]
        out = np.frombuffer(data, np.uint8, count=(arr.offset + n) * width).reshape(-1, width)
        out = out[arr.offset :]
        ok = arr.is_valid().to_numpy(zero_copy_only=False) if arr.null_count else np.ones(n, bool)
        if arr.null_count:
            out = np.where(ok[:, None], out, 0).astype(np.uint8)
        return out, ok
    out = np.zeros((n, width), np.uint8)  # another type: a bundle not made by bundle.py
    ok = np.zeros(n, bool)
    for i, x in enumerate(arr.to_pylist()):
        if isinstance(x, bytes) and len(x) == width:
            out[i] = np.frombuffer(x, np.uint8)
            ok[i] = True
    return out, ok


def _ints(col: pa.ChunkedArray, fill: int = 0) -> np.ndarray:
    out: np.ndarray = pc.fill_null(col, fill).to_numpy(zero_copy_only=False).astype(np.int64)
    return out


class _Ledger:
    """The bundle's v2 batches as columns (docs/evidence-verify.md, "Speed"): one array a
    field, no Python object a batch. `batch(i)` makes row i the ledger check's `Batch`,
    for the few batches a finding is about, so that evidence/ledger.py words them."""

    def __init__(self, manifest: dict[str, Any], files: Mapping[str, bytes]) -> None:
        self.enterprise = str(manifest["enterprise"])
        t = _table(files, "ledger.parquet", _LEDGER_COLUMNS)
        t = t.filter(pc.equal(pc.fill_null(t["contract"], 0), 2))
        self.table = t
        self.n = n = t.num_rows
        self.batch_id = _ints(t["batch_id"])
        self.boot = _ints(t["boot"])
        self.seq = _ints(t["seq"])
        self.received = _ints(t["received_at"])
        self.n_total = _ints(t["n_total"], -1)
        self.prev, prev_ok = _fixed(t["prev"], 32)
        self.digest, self.digest_ok = _fixed(t["digest"], 32)
        digest_ok = self.digest_ok
        self.signature, sig_ok = _fixed(t["signature"], 64)
        nulls = sum(t[c].null_count for c in ("batch_id", "boot", "seq", "sent", "received_at",
                                              "n_total", "site", "gateway", "role"))  # fmt: skip
        # a row the columns cannot stand for exactly: its checks go through `batch(i)`
        self.odd = ~(prev_ok & digest_ok & sig_ok)
        if nulls:
            for c in ("batch_id", "boot", "seq", "sent", "received_at", "n_total", "site",
                      "gateway", "role"):  # fmt: skip
                self.odd |= ~t[c].is_valid().to_numpy(zero_copy_only=False)
        role = pc.dictionary_encode(pc.fill_null(t["role"], "")).combine_chunks()
        names = role.dictionary.to_pylist()
        codes = role.indices.to_numpy(zero_copy_only=False)
        self.period = codes == names.index("period") if "period" in names else np.zeros(n, bool)
        self.extra = codes == names.index("extra") if "extra" in names else np.zeros(n, bool)
        self.before = (codes == names.index("before")) if "before" in names else np.zeros(n, bool)
        self.after = (codes == names.index("after")) if "after" in names else np.zeros(n, bool)
        pair = pc.binary_join_element_wise(pc.fill_null(t["site"], ""),
                                           pc.fill_null(t["gateway"], ""), "/")  # fmt: skip
        enc = pc.dictionary_encode(pair).combine_chunks()
        distinct = enc.dictionary.to_pylist()
        rank: Any = np.argsort(np.array(distinct, dtype=object), kind="stable") if distinct else []
        order = np.empty(len(distinct), np.int64)
        order[rank] = np.arange(len(distinct))
        #: each row's (site, gateway) as a code, codes in the order of the gateways' names
        self.gateways = [f"{self.enterprise}/{distinct[i]}" for i in rank]
        self.sites = [distinct[i].split("/", 1)[0] for i in rank]
        self.gw_ids = [distinct[i].split("/", 1)[1] for i in rank]
        self.gw = order[enc.indices.to_numpy(zero_copy_only=False)] if n else np.zeros(0, np.int64)
        self._by_id: tuple[np.ndarray, np.ndarray] | None = None
        self._by_digest: tuple[np.ndarray, np.ndarray] | None = None

    def batch(self, i: int) -> ledger.Batch:
        r = self.table.slice(int(i), 1).to_pylist()[0]
        return ledger.Batch(
            r["batch_id"], f"{self.enterprise}/{r['site']}/{r['gateway']}", r["gateway"],
            r["boot"], r["seq"], _ms_time(r["sent"]), _ms_time(r["received_at"]), 2, r["prev"],
            r["digest"], r["signature"], r["n_total"], r["role"],
        )  # fmt: skip

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The row of each batch id (the last row of an id given twice, as a dict by id
        keeps it), -1 where the ledger does not hold it."""
        if self._by_id is None:
            order = np.argsort(self.batch_id, kind="stable")
            keys = self.batch_id[order]
            last = np.r_[keys[1:] != keys[:-1], True] if len(keys) else np.zeros(0, bool)
            self._by_id = keys[last], order[last]
        keys, rows = self._by_id
        at = np.minimum(np.searchsorted(keys, ids), max(len(keys) - 1, 0))
        found = (keys[at] == ids) if len(keys) else np.zeros(len(ids), bool)
        return np.where(found, rows[at] if len(keys) else 0, -1)

    def with_digest(self, digest: bytes) -> int | None:
        """The last row whose digest is `digest` (as a dict by digest keeps it)."""
        if len(digest) != 32:
            odd = [i for i in np.flatnonzero(self.odd).tolist()
                   if self.table["digest"][i].as_py() == digest]  # fmt: skip
            return odd[-1] if odd else None
        if self._by_digest is None:
            head = np.ascontiguousarray(self.digest[:, :8]).view(">u8").ravel()
            order = np.argsort(head, kind="stable")
            self._by_digest = head[order], order
        heads, order = self._by_digest
        want = np.frombuffer(digest[:8], ">u8")[0]
        lo, hi = np.searchsorted(heads, want, "left"), np.searchsorted(heads, want, "right")
        rows = [int(r) for r in order[lo:hi]
                if self.digest_ok[r] and self.digest[r].tobytes() == digest]  # fmt: skip
        return max(rows) if rows else None


class _Known(Mapping[bytes, ledger.Batch]):
    """digest -> stored batch (ledger.check_chain's `known`), looked up in the columns."""

    def __init__(self, led: _Ledger) -> None:
        self.led = led

    def __getitem__(self, digest: bytes) -> ledger.Batch:
        i = self.led.with_digest(bytes(digest))
        if i is None:
            raise KeyError(digest)
        return self.led.batch(i)

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError("the chain check looks digests up; it does not list them")

    def __len__(self) -> int:
        return int(self.led.n)


def _ledger_of(
    manifest: dict[str, Any], files: Mapping[str, bytes], box: dict[str, Any]
) -> _Ledger:
    """The ledger's columns, read once for the batches, chain and anchors checks."""
    if "ledger" not in box:
        box["ledger"] = _Ledger(manifest, files)
    return cast(_Ledger, box["ledger"])


_SAMPLE_MEMBERS = ("samples.parquet", "samples_aside.parquet")
_PART_ROWS = 4 << 20  # samples the batch check holds at once, about 0.4 GB with their records
_I64 = (-(1 << 63), (1 << 63) - 1)


@dataclass
class _Part:
    """A range of batch ids and the row groups (member, index) holding its samples."""

    lo: int
    hi: int
    rows: int
    groups: list[tuple[str, int]]


def _plan(files: Mapping[str, bytes], led: _Ledger) -> list[_Part]:
    """Ranges of batch ids whose samples are checked together, each about _PART_ROWS
    samples. Every row group's batch ids are read (not its statistics, which the bundle's
    maker could have written), and groups whose ranges overlap go into one part: the
    bundle writes each row group over its own range of batches (bundle._write_samples),
    so a part is a row group or two. Overlapping groups (a bundle sorted otherwise) make
    a large part, cut by the ledger's batch sizes and its row groups read once a cut."""
    spans: list[tuple[int, int, int, str, int]] = []
    for name in _SAMPLE_MEMBERS:
        for i, ids in enumerate(_row_groups(files, name, ["batch_id"])):
            col = ids["batch_id"]
            if col.null_count == len(col):
                continue  # v1 samples only
            mm = pc.min_max(col)
            spans.append((mm["min"].as_py(), mm["max"].as_py(), len(col), name, i))
    spans.sort()
    merged: list[_Part] = []
    for lo, hi, n, name, i in spans:
        if merged and lo <= merged[-1].hi:
            m = merged[-1]
            m.hi, m.rows = max(m.hi, hi), m.rows + n
            m.groups.append((name, i))
        else:
            merged.append(_Part(lo, hi, n, [(name, i)]))
    order = np.lexsort((np.maximum(led.n_total, 0), led.batch_id))
    ids, sizes = led.batch_id[order], np.maximum(led.n_total, 0)[order]
    parts: list[_Part] = []
    for m in merged:
        if m.rows <= _PART_ROWS:
            parts.append(m)
            continue
        lo, acc = m.lo, 0
        a, b = np.searchsorted(ids, m.lo, "right"), np.searchsorted(ids, m.hi, "right")
        for bid, n in zip(ids[a:b].tolist(), sizes[a:b].tolist(), strict=True):
            if acc + n > _PART_ROWS and acc:
                parts.append(_Part(lo, bid - 1, acc, m.groups))
                lo, acc = bid, 0
            acc += n
        parts.append(_Part(lo, m.hi, acc, m.groups))
    return parts


_SAMPLE_TYPES = {"series_id": pa.int32(), "ts": pa.int64(), "value": pa.float64(),
                 "text": pa.string(), "quality": pa.int8(), "status": pa.string(),
                 "batch_id": pa.int64(), "batch_pos": pa.int32()}  # fmt: skip


def _stored(rows: pa.Table, lo: int, hi: int) -> list[ledger.StoredSample]:
    """Rows lo..hi as the ledger check's samples (the slow walk of one batch)."""
    part = rows.slice(lo, hi - lo)
    cols = [part[n].to_pylist() for n in ("batch_id", "batch_pos", "device", "tag", "ts",
                                          "value", "text", "quality", "status")]  # fmt: skip
    return [ledger.StoredSample(*x) for x in zip(*cols, strict=True)]


class _Signatures:
    """Every v2 batch's signature of its stored digest, under the first key of its gateway
    the trust file says was in effect when it arrived, verified on worker threads while
    the digests are recomputed (docs/evidence-verify.md, "Speed").

    libsodium (PyNaCl) verifies: about twice as fast as OpenSSL's Ed25519 here, and it
    lets go of the GIL. libsodium is the stricter of the two (it refuses a non-canonical
    S, small-order keys and R, which OpenSSL accepts), so an answer of its can only be a
    "no" OpenSSL would say "yes" to: every batch it refuses, or whose gateway had another
    key in effect too, is walked again by ledger.check_batch, which verifies with
    `cryptography` (OpenSSL) under every key in effect and words the finding. A batch
    libsodium accepts is accepted: OpenSSL accepts it as well."""

    _CHUNK = 16384

    def __init__(self, keys: Sequence[ledger.GatewayKey], led: _Ledger) -> None:
        self.keys = keys
        self.led = led
        n = led.n
        self.key = np.full(n, -1, np.int64)  # the first key in effect (trust file order)
        self.publics: list[bytes] = [bytes(k.public_key) for k in keys]
        recv_us = led.received * 1000
        names = {g: i for i, g in enumerate(led.gateways)}
        for j in reversed(range(len(keys))):
            k = keys[j]
            code = names.get(k.gateway)
            if code is None:
                continue
            inside = (led.gw == code) & (recv_us >= _us(k.enrolled_at))
            if k.retired_at is not None:
                inside &= recv_us < _us(k.retired_at)
            self.key[inside] = j
        self.ok = np.zeros(n, bool)
        self.threads = max(1, min(os.cpu_count() or 1, 8))
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Any] = []

    def start(self) -> None:
        """Verify every row's signature on worker threads; `wait` for the answers."""
        verify = _sodium_verify
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ed25519")
        for lo in range(0, self.led.n, self._CHUNK):
            hi = min(lo + self._CHUNK, self.led.n)
            self._futures.append(self._pool.submit(self._run, verify, lo, hi))

    def _run(self, verify: Any, lo: int, hi: int) -> None:
        led = self.led
        key = self.key[lo:hi]
        use = (key >= 0) & ~led.odd[lo:hi]
        blob = np.concatenate([led.signature[lo:hi], led.digest[lo:hi]], axis=1).tobytes()
        publics = self.publics
        out = self.ok
        for j in np.flatnonzero(use).tolist():
            out[lo + j] = verify(blob[j * 96 : j * 96 + 96], publics[key[j]])

    def wait(self) -> np.ndarray:
        for f in self._futures:
            f.result()
        if self._pool is not None:
            self._pool.shutdown()
        return self.ok

    def cancel(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _us(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(microseconds=1)


def _sodium_verify(signed: bytes, public: bytes) -> bool:
    """libsodium's verdict on signature + 32-byte digest (`signed`), or False."""
    try:
        crypto_sign_open(signed, public)
    except (BadSignatureError, ValueError, TypeError):  # a bad key too: the slow walk names it
        return False
    return True


def _batches(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Positions, digest and signature of every v2 batch, and samples whose batch is not
    bundled. The signatures on worker threads (`_Signatures`), started first; the digests
    recomputed column-wise (batch_columns) meanwhile, a range of batches at a time; the
    check is finished (`box["finish"]`) after the chain, anchors and kpis checks, so the
    signatures overlap them too. A batch that fails anything is walked again by
    ledger.check_batch (`batch_digest`, `cryptography`), whose findings name it, so
    `ledger check` and this check say the same things. The ledger's columns go into
    `box`, for the checks after this one."""
    led = _ledger_of(manifest, files, box)
    sig = _Signatures(t.gateway_keys, led)
    sig.start()
    try:
        walk, seen_ids, orphans, recomputed = _digests(manifest, files, led)
    except BaseException:
        sig.cancel()
        raise
    box["finish"] = lambda: _batches_finish(t, led, sig, walk, seen_ids, orphans, recomputed)
    box["cancel"] = sig.cancel
    return Check("batches")  # finished by box["finish"]


def _batches_finish(  # noqa: PLR0917 (one caller: what _batches found)
    t: _Trust,
    led: _Ledger,
    sig: _Signatures,
    walk: dict[int, list[ledger.StoredSample]],
    seen_ids: np.ndarray,
    orphans: list[ledger.Orphans],
    recomputed: int,
) -> Check:
    c = Check("batches")
    try:
        sig_ok = sig.wait()
    finally:
        sig.cancel()
    seen = np.isin(led.batch_id, seen_ids)
    signatures = len(seen_ids)
    found: dict[int, list[ledger.Finding]] = {}
    for bid in sorted(walk):  # its digest or positions fail: check_batch names what
        r = int(led.rows_of(np.array([bid], np.int64))[0])
        found[bid] = ledger.check_batch(led.batch(r), walk[bid], t.gateway_keys)
    # digest and positions held column-wise, so check_batch could only find the signature
    # (its wording: with no samples, keep its signature finding alone)
    for r in np.flatnonzero(seen & ~sig_ok).tolist():
        bid = int(led.batch_id[r])
        if bid not in found:
            found[bid] = [f for f in ledger.check_batch(led.batch(r), [], t.gateway_keys)
                          if f.kind == "signature"]  # fmt: skip
    slow = len(found)
    empty = np.flatnonzero(~seen)
    signatures += len(empty)
    found |= _without_samples(led, empty, sig_ok, t.gateway_keys)
    _orphans(c, orphans)
    listed = np.flatnonzero(np.isin(led.batch_id, np.fromiter(found, np.int64, len(found))))
    _findings(c, [f for r in listed.tolist() for f in found[int(led.batch_id[r])]])
    c.details = {"v2_batches": led.n, "signatures_checked": signatures,
                 "samples_recomputed": recomputed, "orphan_batches": len(orphans),
                 "digest": "column-wise (batch_columns); batch_digest for a batch that fails",
                 "signature": "libsodium (PyNaCl) on worker threads; cryptography "
                              "(OpenSSL) for a batch libsodium refuses",
                 "batches_walked": slow}  # fmt: skip
    return c


def _digests(
    manifest: dict[str, Any], files: Mapping[str, bytes], led: _Ledger
) -> tuple[dict[int, list[ledger.StoredSample]], np.ndarray, list[ledger.Orphans], int]:
    """Each bundled batch's digest recomputed column-wise against its stored one: the
    batches that fail (with their samples, for the walk), the ids of the ledger's
    batches with samples, orphan samples, and the samples recomputed."""
    walk: dict[int, list[ledger.StoredSample]] = {}
    seen: list[np.ndarray] = []
    orphans: list[ledger.Orphans] = []
    recomputed = 0
    series = _table(files, "series.parquet", ["series_id", "site", "gateway", "device", "tag"])
    coded = _Coded(series)
    prefixes = [batch_columns.MAGIC + struct.pack(">H", len(g.encode())) + g.encode()
                for g in led.gw_ids]  # fmt: skip
    # a gateway id the digest's u16 length cannot hold: its batches are walked (named)
    fits = np.array([len(x) - 14 <= 0xFFFF for x in prefixes] + [True], bool)
    ent = manifest["enterprise"]
    for part in _plan(files, led):
        rows, cols = _part_rows(files, part, coded)
        prepared = batch_columns.prepare_columns(cols)
        starts, ids = prepared.starts, prepared.batch_ids
        counts = np.diff(starts)
        pos = rows["batch_pos"]
        want = np.arange(len(pos)) - np.repeat(starts[:-1], counts)
        wrong = np.bincount(np.repeat(np.arange(len(ids)), counts), weights=pos != want,
                            minlength=len(ids))  # fmt: skip
        at = led.rows_of(ids)
        for i in np.flatnonzero(at < 0).tolist():
            lo, hi = int(starts[i]), int(starts[i + 1])
            site, gw = coded.site_gateway(int(rows["series_id"][lo]))
            ts = rows["ts"][lo:hi][rows["ts_ok"][lo:hi]]
            orphans.append(ledger.Orphans(
                f"{ent}/{site}/{gw}", int(ids[i]), hi - lo, _ms_time(int(ts.min())),
                _ms_time(int(ts.max()))))  # fmt: skip
        held = at >= 0
        seen.append(ids[held])
        recomputed += int(counts[held].sum())
        r = np.where(held, at, 0)
        bad = np.isin(ids, np.fromiter(prepared.bad, np.int64, len(prepared.bad)))
        fast = held & ~bad & (wrong == 0) & (counts == led.n_total[r]) & ~led.odd[r]
        fast &= (led.boot[r] >= 0) & (led.boot[r] <= 0xFFFFFFFF) & (led.seq[r] >= 0)
        fast &= fits[led.gw[r]]
        got = _digest_all(prepared, np.flatnonzero(fast), prefixes, led.gw[r], led.boot[r],
                          led.seq[r], led.prev[r])  # fmt: skip
        fast &= (got == led.digest[r]).all(axis=1)
        for i in np.flatnonzero(held & ~fast).tolist():
            lo, hi = int(starts[i]), int(starts[i + 1])
            walk[int(ids[i])] = _stored(_walk_rows(rows, lo, hi, coded), 0, hi - lo)
        del rows, prepared, cols
    return walk, np.concatenate([np.zeros(0, np.int64), *seen]), orphans, recomputed


_HEAD = struct.Struct(">IQ")


def _digest_all(  # noqa: PLR0917 (one caller: the batch columns it has)
    p: batch_columns.Prepared,
    which: np.ndarray,
    prefixes: list[bytes],
    gw: np.ndarray,
    boot: np.ndarray,
    seq: np.ndarray,
    prev: np.ndarray,
) -> np.ndarray:
    """The digests of batches `which` of `p` (zeros elsewhere), under their headers: the
    gateway's prefix (MAGIC, its id), boot, seq and prev. batch_columns' digest, with the
    per-batch work cut to what hashlib needs (each gateway's series table joined once)."""
    out = np.zeros((len(p.batch_ids), 32), np.uint8)
    if not len(which):
        return out
    sha = hashlib.sha256
    count = batch_columns._COUNT.pack
    records, texts, starts = p.records, p.texts, p.starts.tolist()
    texts_at, series_n, texts_n = p.texts_at.tolist(), p.series_n.tolist(), p.texts_n.tolist()
    heads = [prefixes[g] for g in gw.tolist()]
    boots, seqs = boot.tolist(), seq.tolist()
    table = p._series_table
    digests = []
    for i in which.tolist():
        h = sha(heads[i] + _HEAD.pack(boots[i], seqs[i]) + prev[i].tobytes()
                + count(series_n[i]) + table(i) + count(texts_n[i]))  # fmt: skip
        h.update(texts[texts_at[i] : texts_at[i + 1]])
        lo, hi = starts[i], starts[i + 1]
        h.update(count(hi - lo))
        h.update(records[lo * 26 : hi * 26])
        digests.append(h.digest())
    out[which] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    return out


class _Coded:
    """series.parquet as codes: each series id's (device, tag) entry for the digest, and
    its names for a finding."""

    def __init__(self, series: pa.Table) -> None:
        ids = series["series_id"].to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.rows = order
        self.pair, self.pairs = batch_columns.pair_entries(
            series["device"].to_pylist(), series["tag"].to_pylist()
        )
        self.table = series

    def at(self, sid: np.ndarray) -> np.ndarray:
        """Each series id's row in series.parquet, -1 when it is not there."""
        if not len(self.ids):
            return np.full(len(sid), -1, np.int64)
        i = np.minimum(np.searchsorted(self.ids, sid), len(self.ids) - 1)
        return np.where(self.ids[i] == sid, self.rows[i], -1)

    def site_gateway(self, sid: int) -> tuple[Any, Any]:
        r = int(self.at(np.array([sid], np.int64))[0])
        if r < 0:
            return None, None
        return self.table["site"][r].as_py(), self.table["gateway"][r].as_py()


def _codes_of(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A string column's codes (-1 null) and its distinct strings."""
    enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist()


def _part_rows(
    files: Mapping[str, bytes], part: _Part, coded: _Coded
) -> tuple[dict[str, np.ndarray], batch_columns.Columns]:
    """The bundled samples (both tables) of the batches in `part`'s range as arrays in
    (batch_id, batch_pos) order (a stable sort, as `_batch_samples`), and as the digest's
    coded columns."""
    opened = {n: _parquet(files, n) for n in {n for n, _ in part.groups}}
    chunks = []
    for name, i in part.groups:
        t = opened[name].read_row_group(i, columns=_SAMPLE_COLUMNS)
        ids = t["batch_id"]
        mm = pc.min_max(ids)
        if ids.null_count or mm["min"].as_py() < part.lo or mm["max"].as_py() > part.hi:
            t = t.filter(pc.and_(pc.greater_equal(ids, part.lo), pc.less_equal(ids, part.hi)))
        chunks.append(t)
    if chunks:
        t = pa.concat_tables(chunks)
    else:
        t = pa.schema([pa.field(n, _SAMPLE_TYPES[n]) for n in _SAMPLE_COLUMNS]).empty_table()
    bid = t["batch_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    pos_col = t["batch_pos"]
    if pos_col.null_count:  # not a bundle's: sorted as pyarrow sorts (nulls last)
        order = pc.sort_indices(t, [("batch_id", "ascending"), ("batch_pos", "ascending")])
        order = order.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        pos = pos_col.to_numpy(zero_copy_only=False).astype(np.int64)
        lo = int(bid.min()) if len(bid) else 0
        small = len(bid) and int(bid.max()) - lo < (1 << 31)
        if small and pos.min() >= 0 and pos.max() < (1 << 31):
            order = np.argsort((bid - lo) * (1 << 31) + pos, kind="stable")
        else:
            order = np.lexsort((pos, bid))

    def ints(name: str, fill: int) -> np.ndarray:
        col = pc.fill_null(t[name], fill).to_numpy(zero_copy_only=False)
        out: np.ndarray = col.astype(np.int64)[order]
        return out

    def ok(name: str) -> np.ndarray:
        col = t[name]
        if not col.null_count:
            return np.ones(t.num_rows, bool)
        out: np.ndarray = col.is_valid().to_numpy(zero_copy_only=False)[order]
        return out

    sid = ints("series_id", -1)  # a null: no series (a wrong guess only costs a walk)
    at = coded.at(sid)
    pair = np.where(at >= 0, coded.pair[np.maximum(at, 0)], -1) if len(at) else at
    text, text_strings = _codes_of(t["text"])
    status, status_strings = _codes_of(t["status"])
    strings = list(dict.fromkeys([*text_strings, *status_strings]))
    index = {x: i for i, x in enumerate(strings)}
    remap_t = np.array([index[x] for x in text_strings] + [-1], np.int64)
    remap_s = np.array([index[x] for x in status_strings] + [-1], np.int64)
    rows = {"batch_id": bid[order], "batch_pos": ints("batch_pos", -1), "series_id": sid,
            "ts": ints("ts", 0), "ts_ok": ok("ts"), "table": t, "order": order}  # fmt: skip
    value = pc.fill_null(t["value"], 0.0).to_numpy(zero_copy_only=False)[order]
    cols = batch_columns.Columns(
        batch_id=rows["batch_id"], pair=pair, pairs=coded.pairs, ts=rows["ts"],
        ts_ok=rows["ts_ok"], value=value, value_ok=ok("value"), text=remap_t[text[order]],
        status=remap_s[status[order]], strings=strings, quality=ints("quality", -1),
    )  # fmt: skip
    return rows, cols


def _walk_rows(rows: dict[str, Any], lo: int, hi: int, coded: _Coded) -> pa.Table:
    """Rows lo..hi of a part with their series' device, tag, site and gateway (null when
    the series is not in series.parquet): what `_stored` reads."""
    part = rows["table"].take(pa.array(rows["order"][lo:hi]))
    at = coded.at(rows["series_id"][lo:hi])
    take = pa.array(np.maximum(at, 0))
    for name in ("device", "tag", "site", "gateway"):
        col = pc.take(coded.table[name], take)
        col = pc.if_else(pa.array(at >= 0), col, pa.scalar(None, pa.string()))
        part = part.append_column(name, col)
    return part


def _without_samples(
    led: _Ledger, rows: np.ndarray, sig_ok: np.ndarray, keys: Sequence[ledger.GatewayKey]
) -> dict[int, list[ledger.Finding]]:
    """The findings of v2 batches without a bundled sample (ledger rows `rows`)."""
    found = {}
    for r in rows.tolist():
        b = led.batch(r)
        if b.role in ("before", "after"):
            # a chain neighbour without a bundled sample: its signature only (check_batch's
            # own wording; its positions and digest cannot be checked without samples)
            if not sig_ok[r]:
                found[b.batch_id] = [f for f in ledger.check_batch(b, [], keys)
                                     if f.kind == "signature"]  # fmt: skip
            continue
        # every other v2 batch is checked whole, whatever its `complete` flag says
        found[b.batch_id] = ledger.check_batch(b, [], keys)
    return found


def _orphans(c: Check, orphans: Sequence[ledger.Orphans]) -> None:
    """Samples naming a batch the bundle's ledger does not hold, one reason a batch."""
    for o in sorted(orphans, key=lambda o: o.batch_id):
        c.fail("orphan_samples",
               f"{o.gateway}: {o.n} 个样本 ({o.first_ts.isoformat()} 至 {o.last_ts.isoformat()})"
               f"属于批次 {o.batch_id}, 但证据包的账本中没有该批次",
               f"{o.gateway}: {o.n} sample(s) from {o.first_ts.isoformat()} to "
               f"{o.last_ts.isoformat()} name batch id {o.batch_id}, which the bundle's ledger "
               "does not hold: its ledger row was removed")  # fmt: skip


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
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Each gateway's chain over its period batches and their neighbours (an `extra`
    batch's chain is another period's); each gap with the time it spans (the sent times of
    the stored batches around it) and the devices and equipment of the gateway.
    Column-wise: the batches in (gateway, boot, seq) order, each link's prev against the
    digest of the batch before it; only a link that does not hold is handed, as `Batch`es,
    to ledger.link_findings (ledger.check_chain's own rule and wording)."""
    c = Check("chain")
    declared = [
        ledger.Declaration(d["gateway"], d["boot"], d["first_seq"], d["last_seq"], d["reason"],
                           _when(d["declared_at"]), _when(d["received_at"]),  # type: ignore[arg-type]
                           base64.b64decode(d["payload"]))
        for d in _doc(files, "declarations.json")
    ]  # fmt: skip
    registry = _doc(files, "registry.json")
    series = _table(files, "series.parquet", ["site", "gateway", "device"]).to_pylist()
    led = _ledger_of(manifest, files, box)
    known = _Known(led)
    disclosed = ledger.Disclosed(declared, t.gateway_keys)
    rows = np.flatnonzero(~led.extra)  # ledger.Role has no `extra`: the bundle's own role
    # gateways by name, each in (boot, seq) order; ties in the ledger's order (stable)
    order = rows[np.lexsort((led.seq[rows], led.boot[rows], led.gw[rows]))]
    g = led.gw[order]
    same = np.r_[False, g[1:] == g[:-1]]
    holds = same & np.r_[False, (led.prev[order][1:] == led.digest[order][:-1]).all(axis=1)]
    holds &= ~led.odd[order] & np.r_[False, ~led.odd[order][:-1]]
    checked = ~led.before[order]  # the link into `before` is not this period's
    findings: list[ledger.Finding] = []
    notes: list[str] = []
    gaps: list[dict[str, Any]] = []
    for k in np.flatnonzero(checked & ~holds).tolist():
        b = led.batch(int(order[k]))
        p = led.batch(int(order[k - 1])) if same[k] else None
        for f in ledger.link_findings(b, p, known, disclosed):
            if f.kind == "note":
                notes.append(f"{f.where()}: {f.message}")
                continue
            findings.append(f)
            if f.kind != "gap":
                continue
            i = _last_at(led, order, g, k, f)  # the dict by (boot, seq) check_chain kept
            after = led.batch(int(order[i - 1])) if i > 0 and g[i - 1] == g[i] else None
            gaps.append(_gap(f, after, led.batch(int(order[i])), series, registry))
    findings += disclosed.findings
    extra = {i: g["text_en"] for i, g in enumerate(gaps)}  # gaps come first in `findings`
    ranked = sorted(findings, key=lambda f: f.kind != "gap")  # stable: gaps in `gaps` order
    _findings(c, ranked, extra)
    c.details = {"gateways": len(np.unique(g)), "gaps": [{k: v for k, v in x.items()
                                                          if k != "text_en"} for x in gaps],
                 "notes": notes}  # fmt: skip
    return c


def _last_at(led: _Ledger, order: np.ndarray, g: np.ndarray, k: int, f: ledger.Finding) -> int:
    """The position in `order` of the last batch of k's gateway with f's (boot, seq)."""
    lo = int(np.searchsorted(g, g[k], "left"))
    hi = int(np.searchsorted(g, g[k], "right"))
    boots, seqs = led.boot[order[lo:hi]], led.seq[order[lo:hi]]
    hit = np.flatnonzero((boots == f.boot) & (seqs == f.seq))
    return lo + int(hit[-1]) if len(hit) else k


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


def _anchors(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, box: dict[str, Any]
) -> Check:
    """Each day's current root rebuilt from its leaves and its tokens verified under the
    trust file's TSAs; every period batch a leaf of its (anchored) day. Column-wise: the
    leaves a day at a time, each batch's local day from its arrival, membership by a
    hashed join of (site, gateway, boot, seq, digest) keys."""
    c = Check("anchors")
    zones = {s["id"]: ZoneInfo(s["timezone"]) for s in _doc(files, "registry.json")["sites"]}
    leaves = _table(files, "anchor_leaves.parquet")
    led = _ledger_of(manifest, files, box)
    day = _local_days(led, zones)
    leaf_day = pc.fill_null(leaves["day"].cast(pa.int32()), -(1 << 31)).to_numpy(
        zero_copy_only=False
    )
    anchored: set[int] = set()
    missing: dict[int, list[int]] = {}  # day -> its period rows that are not a leaf of it
    superseded = []
    for a in _doc(files, "anchors.json"):
        d = dt.date.fromisoformat(a["day"])
        if a.get("superseded_at"):
            superseded.append(f"{d} ({a['superseded_at']})")
            continue
        n = (d - _EPOCH.date()).days
        at = np.flatnonzero(leaf_day == n)
        rows = leaves.take(pa.array(at)) if len(at) else leaves.slice(0, 0)
        rows = rows.take(pc.sort_indices(rows, [("index", "ascending")]))
        if _day(c, d, a, rows, t):
            anchored.add(n)
            period = np.flatnonzero((day == n) & led.period)
            missing[n] = period[~_leaves_hold(led, period, rows)].tolist()
    days = np.unique(day)
    for n in days.tolist():
        d = _EPOCH.date() + dt.timedelta(days=n)
        if n not in anchored:
            count = int(np.count_nonzero((day == n) & led.period))
            if count:
                c.fail("day_unanchored",
                       f"{d}: 本期 {count} 个批次所在的日期没有有效的时间戳",
                       f"{d} holds {count} period batch(es) but has no valid "
                       "time-stamp token: when they were sealed is not proven; anchor the day "
                       "(`anchor --day`) and make the bundle again")  # fmt: skip
            continue
        for r in missing[n]:
            b = led.batch(r)
            c.fail("not_a_leaf", f"{b.gateway} boot {b.boot} seq {b.seq} 不是 {d} 的叶子",
                   f"{b.gateway} boot {b.boot} seq {b.seq} (received {d}) is not a leaf "
                   "of its day's time-stamped tree with its digest")  # fmt: skip
    first = _EPOCH.date()
    c.details = {"anchored_days": [str(first + dt.timedelta(days=n)) for n in sorted(anchored)],
                 "unanchored_days": [str(first + dt.timedelta(days=n)) for n in days.tolist()
                                     if n not in anchored],
                 "superseded_roots": superseded}  # fmt: skip
    _report_anchoring(c, files, {first + dt.timedelta(days=n) for n in anchored})
    return c


def _report_anchoring(c: Check, files: Mapping[str, bytes], anchored: set[dt.date]) -> None:
    """The report's own `anchoring` block (docs/evidence.md, "What the report says")
    against the bundle's anchors: a day the report calls anchored holds that root in the
    bundle, with a token from each TSA it names, and (its current root) a token verified
    here; a day it calls not anchored holds no root built before the block was read. A
    day pending or not anchored then and anchored since is no contradiction; a report
    made before the block has nothing to compare."""
    block = json.loads(files["report.json"]).get("anchoring")
    if not isinstance(block, dict):
        return
    records: dict[str, list[dict[str, Any]]] = {}
    for a in _doc(files, "anchors.json"):
        records.setdefault(a["day"], []).append(a)
    read_at = _when(block.get("read_at"))
    open_days = []
    for d in block.get("days") or []:
        if not isinstance(d, dict):
            continue
        day, state = str(d.get("day")), d.get("state")
        mine = records.get(day, [])
        if state == "anchored":
            a = next((a for a in mine if base64.b64decode(a["root"]).hex() == d.get("root")), None)
            urls = {t.get("tsa_url") for t in (a or {}).get("tokens") or [] if t.get("token")}
            named = sorted(str(t.get("url")) for t in d.get("tsas") or [] if isinstance(t, dict))
            if a is None or not set(named) <= urls:
                c.fail("report_anchoring",
                       f"{day}: 报告称已锚定, 但证据包中没有该树根或所列时间戳服务的令牌",
                       f"{day}: the report says anchored (root {d.get('root')}, by {named}), "
                       "but the bundle holds no such root with tokens from those TSAs")  # fmt: skip
            elif not a.get("superseded_at") and dt.date.fromisoformat(day) not in anchored:
                c.fail("report_anchoring",
                       f"{day}: 报告称已锚定, 但其时间戳令牌均未通过信任文件的校验",
                       f"{day}: the report says anchored, but no token over its root verifies "
                       "under the trust file's TSAs")  # fmt: skip
            continue
        if state == "pending" or (state == "not_anchored" and d.get("batches")):
            open_days.append(f"{day} {state}")
        built = [
            a["built_at"]
            for a in mine
            if read_at is not None and (_when(a["built_at"]) or read_at) < read_at
        ]
        if state == "not_anchored" and built:
            c.fail("report_anchoring",
                   f"{day}: 报告称未锚定, 但证据包中该日的树根早于报告生成",
                   f"{day}: the report says not anchored, but the bundle holds a root built "
                   f"for it at {min(built)}, before the report was made")  # fmt: skip
    c.details["report_open_days"] = open_days


def _local_days(led: _Ledger, zones: Mapping[str, ZoneInfo]) -> np.ndarray:
    """Each batch's day of arrival in its site's time zone (days since 1970-01-01): per
    quarter hour of arrival (every zone's offsets and changes fall on one), checked at
    both ends of it, else per batch."""
    out = np.zeros(led.n, np.int64)
    quarter = 900_000
    epoch = _EPOCH.date()
    codes: dict[str, list[int]] = {}
    for code, site in enumerate(led.sites):
        codes.setdefault(site, []).append(code)
    for site, cs in codes.items():
        zone = zones.get(site, ZoneInfo("UTC"))
        rows = np.flatnonzero(np.isin(led.gw, cs))
        q = led.received[rows] // quarter
        uq, inv = np.unique(q, return_inverse=True)
        local = np.empty(len(uq), np.int64)
        exact = np.ones(len(uq), bool)
        for j, x in enumerate(uq.tolist()):
            d0 = _ms_time(x * quarter).astimezone(zone).date()
            d1 = _ms_time(x * quarter + quarter - 1).astimezone(zone).date()
            local[j] = (d0 - epoch).days
            exact[j] = d0 == d1
        out[rows] = local[inv]
        for r in rows[~exact[inv]].tolist():
            out[r] = (_ms_time(int(led.received[r])).astimezone(zone).date() - epoch).days
    return out


def _leaves_hold(led: _Ledger, rows: np.ndarray, leaves: pa.Table) -> np.ndarray:
    """Whether each ledger row in `rows` is a leaf (site, gateway, boot, seq, digest) of
    `leaves`."""
    if not len(rows):
        return np.zeros(0, bool)
    names = {f"{s}/{g}": i for i, (s, g) in enumerate(zip(led.sites, led.gw_ids, strict=True))}
    pair = pc.binary_join_element_wise(leaves["site"], leaves["gateway"], "/").to_pylist()
    leaf_gw = np.array([names.get(x, -1) if x is not None else -1 for x in pair], np.int64)
    leaf_digest, ok = _fixed(leaves["digest"], 32)
    valid = ok & (leaf_gw >= 0)
    for col in ("boot", "seq"):
        valid &= leaves[col].is_valid().to_numpy(zero_copy_only=False)
    leaf_keys = _leaf_keys(leaf_gw[valid], _ints(leaves["boot"])[valid],
                           _ints(leaves["seq"])[valid], leaf_digest[valid])  # fmt: skip
    mine = _leaf_keys(led.gw[rows], led.boot[rows], led.seq[rows], led.digest[rows])
    held = pc.is_in(mine, value_set=leaf_keys).to_numpy(zero_copy_only=False)
    out: np.ndarray = held & led.digest_ok[rows]
    return out


def _leaf_keys(gw: np.ndarray, boot: np.ndarray, seq: np.ndarray, digest: np.ndarray) -> pa.Array:
    n = len(gw)
    raw = np.empty((n, 56), np.uint8)
    raw[:, 0:8] = gw.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 8:16] = boot.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 16:24] = seq.astype(">i8").view(np.uint8).reshape(n, 8)
    raw[:, 24:56] = digest
    data = pa.py_buffer(raw.tobytes())
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(56), n, [None, data])


def _day(c: Check, day: dt.date, a: dict[str, Any], rows: pa.Table, t: _Trust) -> bool:
    """One day's current root: rebuilt from its leaves (`rows`, in index order), its
    tokens verified. Whether a token verifies over its root (else the day is
    unanchored)."""
    root = base64.b64decode(a["root"])
    index = _ints(rows["index"], -1)
    if (
        len(index) != a["leaves"]
        or not np.array_equal(index, np.arange(len(index)))
        or not (_sorted_keys(rows))
    ):
        c.fail("leaves", f"{day}: 叶子数量或顺序与锚定记录不符",
               f"{day}: the bundled leaves are not the {a['leaves']} leaves of the "
               "anchored root in leaf order 1")  # fmt: skip
    if merkle.root(rows["digest"].to_pylist()) != root:
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
    return good > 0


def _sorted_keys(rows: pa.Table) -> bool:
    """Whether the leaves' (site, gateway, boot, seq) are in ascending order (as Python
    compares the tuples)."""
    n = rows.num_rows
    if n < 2:
        return True
    if any(rows[k].null_count for k in ("site", "gateway", "boot", "seq")):
        keys = list(zip(*(rows[k].to_pylist() for k in ("site", "gateway", "boot", "seq")),
                        strict=True))  # fmt: skip
        try:
            return keys == sorted(keys)
        except TypeError:
            return False
    codes = []
    for k in ("site", "gateway"):
        enc = pc.dictionary_encode(rows[k]).combine_chunks()
        words = enc.dictionary.to_pylist()
        rank = np.empty(len(words), np.int64)
        rank[np.argsort(np.array(words, dtype=object), kind="stable")] = np.arange(len(words))
        codes.append(rank[enc.indices.to_numpy(zero_copy_only=False)])
    cols = [*codes, _ints(rows["boot"]), _ints(rows["seq"])]
    order = np.lexsort(cols[::-1])
    return bool(
        np.array_equal(order, np.arange(n)) or all(np.array_equal(col[order], col) for col in cols)
    )
