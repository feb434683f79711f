"""The `manifest` check: every member the manifest lists is in the zip with its SHA-256,
bytes and rows; nothing unlisted, no name twice; the manifest's report is report.json.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped]

from ingest_server.evidence.offline.members import Members, _parquet
from ingest_server.evidence.offline.verdict import Check
from ingest_server.evidence.signature import parse_report


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
