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
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
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
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
        return pq.ParquetFile(pa.PythonFile(_Slice(raw, start, info.file_size), mode="r"))


class _Slice(io.RawIOBase):
    """Bytes start..start+size of an open file, as a file of their own."""

    def __init__(self, raw: io.BufferedReader, start: int, size: int) -> None:
        self._raw, self._start, self._size, self._at = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._at, io.SEEK_END: self._size}[whence]
        self._at = max(0, min(self._size, base + offset))
        return self._at

    def read(self, n: int | None = -1) -> bytes:
        left = self._size - self._at
        n = left if n is None or n < 0 else min(n, left)
        self._raw.seek(self._start + self._at)
        data = self._raw.read(n)
        self._at += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()


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
    checks.append(_guarded("kpis", files, offline_kpi.MEMBERS, lambda: _kpis(files)))
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


def _plan(files: Mapping[str, bytes], v2: Sequence[ledger.Batch]) -> list[_Part]:
    """Ranges of batch ids whose samples are checked together, each about _PART_ROWS
    samples. Every row group's batch ids are read (not its statistics, which the bundle's
    maker could have written), and groups whose ranges overlap go into one part: the
    bundle writes each row group over its own range of batches (bundle._samples_parquet),
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
    sizes = sorted((b.batch_id, b.n_total or 0) for b in v2)
    parts: list[_Part] = []
    for m in merged:
        if m.rows <= _PART_ROWS:
            parts.append(m)
            continue
        lo, acc = m.lo, 0
        for bid, n in sizes:
            if not m.lo < bid <= m.hi:
                continue
            if acc + n > _PART_ROWS and acc:
                parts.append(_Part(lo, bid - 1, acc, m.groups))
                lo, acc = bid, 0
            acc += n
        parts.append(_Part(lo, m.hi, acc, m.groups))
    return parts


def _batch_samples(
    files: Mapping[str, bytes], part: _Part, series: pa.Table | None = None
) -> pa.Table:
    """The bundled samples (both tables) of the batches in `part`'s range, sorted by
    (batch_id, batch_pos), with their series' device, tag, site and gateway (null when
    the series is not in series.parquet)."""
    if series is None:
        series = _table(files, "series.parquet", ["series_id", "site", "gateway", "device", "tag"])
    opened = {n: _parquet(files, n) for n in {n for n, _ in part.groups}}
    chunks = []
    for name, i in part.groups:
        t = opened[name].read_row_group(i, columns=_SAMPLE_COLUMNS)
        ids = t["batch_id"]
        chunks.append(t.filter(pc.and_(pc.greater_equal(ids, part.lo),
                                       pc.less_equal(ids, part.hi))))  # fmt: skip
    if chunks:
        rows = pa.concat_tables(chunks)
    else:
        rows = pa.schema([pa.field(n, _SAMPLE_TYPES[n]) for n in _SAMPLE_COLUMNS]).empty_table()
    rows = rows.sort_by([("batch_id", "ascending"), ("batch_pos", "ascending")])
    at = pc.index_in(rows["series_id"], value_set=series["series_id"])
    for name in ("device", "tag", "site", "gateway"):
        rows = rows.append_column(name, pc.take(series[name], at))
    return rows


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
    """Ed25519 verification of batch digests under the trust file's keys, each key loaded
    once; a batch whose signature does not hold is explained by ledger.check_batch."""

    def __init__(self, keys: Sequence[ledger.GatewayKey]) -> None:
        self.keys = keys
        self._loaded: dict[bytes, Ed25519PublicKey | None] = {}

    def holds(self, b: ledger.Batch) -> bool:
        digest, signature = bytes(b.digest or b""), bytes(b.signature or b"")
        for k in ledger.keys_at(self.keys, b.gateway, b.received_at):
            raw = bytes(k.public_key)
            if raw not in self._loaded:
                try:
                    self._loaded[raw] = Ed25519PublicKey.from_public_bytes(raw)
                except ValueError:
                    self._loaded[raw] = None
            key = self._loaded[raw]
            if key is None or len(digest) != 32:
                continue
            try:
                key.verify(signature, digest)
            except InvalidSignature:
                continue
            return True
        return False

    def hold(self, batches: Sequence[ledger.Batch]) -> list[bool]:
        """`holds` of each batch, on every core: Ed25519 verification lets go of the GIL."""
        threads = min(os.cpu_count() or 1, 8)
        if threads < 2 or len(batches) < 256:
            return [self.holds(b) for b in batches]
        size = -(-len(batches) // threads)
        chunks = [batches[i : i + size] for i in range(0, len(batches), size)]
        with ThreadPoolExecutor(threads) as pool:
            return [ok for part in pool.map(lambda bs: [self.holds(b) for b in bs], chunks)
                    for ok in part]  # fmt: skip


def _batches(
    manifest: dict[str, Any], files: Mapping[str, bytes], t: _Trust, v2: list[ledger.Batch]
) -> Check:
    """Positions, digest and signature of every v2 batch, and samples whose batch is not
    bundled. The digests column-wise (batch_columns) over a range of batches at a time;
    a batch that fails anything is walked again by ledger.check_batch (`batch_digest`),
    whose findings name it, so `ledger check` and this check say the same things.
    `v2` receives the bundle's v2 batches, for the checks after this one."""
    c = Check("batches")
    v2 += _ledger_batches(manifest, files)
    by_id = {b.batch_id: b for b in v2}
    found: dict[int, list[ledger.Finding]] = {}
    sig = _Signatures(t.gateway_keys)
    recomputed = signatures = slow = 0
    orphans: list[ledger.Orphans] = []
    series = _table(files, "series.parquet", ["series_id", "site", "gateway", "device", "tag"])
    seen: set[int] = set()
    for part in _plan(files, v2):
        rows = _batch_samples(files, part, series)
        prepared = batch_columns.prepare(rows.select(batch_columns.COLUMNS))
        starts, ids = prepared.starts, prepared.batch_ids
        counts = np.diff(starts)
        pos = rows["batch_pos"].to_numpy(zero_copy_only=False)
        want = np.arange(rows.num_rows) - np.repeat(starts[:-1], counts)
        wrong = np.bincount(np.repeat(np.arange(len(ids)), counts), weights=pos != want,
                            minlength=len(ids))  # fmt: skip
        matched: list[tuple[ledger.Batch, int, int]] = []  # digest recomputed: signature?
        walk: list[tuple[ledger.Batch, int, int]] = []  # check_batch, to name what is wrong
        for i, bid in enumerate(ids.tolist()):
            lo, hi = int(starts[i]), int(starts[i + 1])
            b = by_id.get(bid)
            if b is None:
                ts = rows["ts"].slice(lo, hi - lo)
                mm = pc.min_max(ts)
                orphans.append(ledger.Orphans(
                    f"{manifest['enterprise']}/{rows['site'][lo].as_py()}/"
                    f"{rows['gateway'][lo].as_py()}", bid, hi - lo,
                    _ms_time(mm["min"].as_py()), _ms_time(mm["max"].as_py())))  # fmt: skip
                continue
            seen.add(bid)
            signatures += 1
            recomputed += hi - lo
            fast = bid not in prepared.bad and not wrong[i] and hi - lo == b.n_total
            if fast:
                try:
                    digest = prepared.digest(i, gw=b.gw, boot=b.boot, seq=b.seq,
                                             prev=bytes(b.prev or b""))  # fmt: skip
                except (ValueError, struct.error):
                    digest = None
                fast = digest == bytes(b.digest or b"")
            (matched if fast else walk).append((b, lo, hi))
        held = sig.hold([b for b, _, _ in matched])
        walk += [m for m, ok in zip(matched, held, strict=True) if not ok]
        for b, lo, hi in walk:
            slow += 1
            found[b.batch_id] = ledger.check_batch(b, _stored(rows, lo, hi), t.gateway_keys)
        del rows, prepared
    empty = [b for b in v2 if b.batch_id not in seen]
    signatures += len(empty)
    found |= _without_samples(empty, sig)
    _orphans(c, orphans)
    _findings(c, [f for b in v2 for f in found.get(b.batch_id, [])])
    c.details = {"v2_batches": len(v2), "signatures_checked": signatures,
                 "samples_recomputed": recomputed, "orphan_batches": len(orphans),
                 "digest": "column-wise (batch_columns); batch_digest for a batch that fails",
                 "batches_walked": slow}  # fmt: skip
    return c


def _without_samples(
    batches: Sequence[ledger.Batch], sig: _Signatures
) -> dict[int, list[ledger.Finding]]:
    """The findings of v2 batches without a bundled sample."""
    found = {}
    for b in batches:
        if b.role in ("before", "after"):
            # a chain neighbour without a bundled sample: its signature only (check_batch's
            # own wording; its positions and digest cannot be checked without samples)
            if not sig.holds(b):
                found[b.batch_id] = [f for f in ledger.check_batch(b, [], sig.keys)
                                     if f.kind == "signature"]  # fmt: skip
            continue
        # every other v2 batch is checked whole, whatever its `complete` flag says
        found[b.batch_id] = ledger.check_batch(b, [], sig.keys)
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
