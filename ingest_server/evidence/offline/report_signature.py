"""The `report_signature` check: report.json signed over RFC 8785 by a report key of the
trust file (never a key the bundle ships), not revoked, and not retired when it signed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingest_server.evidence.algorithms import UnsupportedAlgorithmError
from ingest_server.evidence.offline.trust import _Trust, _when
from ingest_server.evidence.offline.verdict import Check
from ingest_server.evidence.signature import check_signature, parse_report, trusted_key


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
