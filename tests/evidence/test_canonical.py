"""The form a report's signature covers: RFC 8785 (JCS) canonical JSON, so a report file
re-serialised by a browser or another language still verifies; the legacy sorted-keys
form of reports signed before it still verifies; values JCS cannot hold are refused with
the field named. Pure: no database, no network."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.evidence.canonical import canonical, sign
from ingest_server.evidence.keys import key_id
from ingest_server.evidence.verify import check_signature, parse_report, verify
from ingest_server.kpi.records import ReportError

# RFC 8785 section 3.2.2 (the "sorting" and "serialization" sample), input and output
# exactly as the RFC prints them
RFC8785_INPUT = (
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001], '
    '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/", '
    '"literals": [null, true, false]}'
)
RFC8785_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()


def report(**extra: Any) -> dict[str, Any]:
    """A small report-shaped document with the numbers a browser writes differently."""
    return {
        "format": "factory-evidence.report",
        "report_id": "00000000-0000-4000-8000-000000000001",
        "enterprise": {"id": "hf", "name": "测试企业"},
        "period": {"from": "2026-11-16", "to": "2026-11-17", "partial": False},
        "kpis": [
            {"id": "availability", "value": 75.0, "unit": "%", "coverage": 1.0},
            {"id": "energy_tce", "value": 1.2290000000000001e-05, "unit": "tce"},
            {"id": "oee", "value": None, "note": "无数据 \u2028 line separator"},
        ],
        "digest": {"algorithm": "sha256", "rows": 1234, "value": "ab" * 32},
        **extra,
    }


def browser_reserialised(doc: dict[str, Any]) -> bytes:
    """What JSON.stringify(JSON.parse(file), null, 2) writes: 75.0 -> 75, 1.0 -> 1, and
    here the keys in reverse order too."""

    def js(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: js(v[k]) for k in reversed(list(v))}
        if isinstance(v, list):
            return [js(x) for x in v]
        return v

    return json.dumps(js(doc), ensure_ascii=False, indent=2).encode()


def test_the_canonical_form_is_rfc8785() -> None:
    doc = json.loads(RFC8785_INPUT)
    assert canonical(doc) == RFC8785_OUTPUT
    assert canonical({**doc, "signature": {"value": "x"}}) == RFC8785_OUTPUT
    # where JCS and Python's json.dumps part: integral doubles, exponents
    assert canonical({"b": 75.0, "a": [1e21, 1.5e-7, -0.0]}) == b'{"a":[1e+21,1.5e-7,0],"b":75}'


def test_a_report_reserialised_by_a_browser_still_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    doc = sign(report(), key)
    assert doc["signature"]["canonicalization"] == "RFC8785"
    posted = browser_reserialised(doc)
    assert b'"value": 75,' in posted  # the browser did drop the ".0"
    again = parse_report(posted)
    ok, trusted, text = check_signature(again, trusted=key.public_key())
    assert (ok, trusted) == (True, True), text
    v = verify(again, trusted=key.public_key())
    assert v.ok
    assert v.reasons == []
    # a figure changed in the re-serialised file: invalid, and the verdict says why
    again["kpis"][0]["value"] = 76
    v = verify(again, trusted=key.public_key())
    assert not v.signature_ok
    assert [r.code for r in v.reasons] == ["signature_invalid"]


def legacy_sign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """A signature as reports were signed before RFC 8785: no "canonicalization" in the
    block, over Python's sorted-keys json.dumps."""
    body = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    doc["signature"] = {
        "algorithm": "Ed25519",
        "key_id": key_id(key.public_key()),
        "public_key": base64.b64encode(raw).decode(),
        "value": base64.b64encode(key.sign(body)).decode(),
    }
    return doc


def test_reports_signed_in_the_legacy_form_keep_verifying() -> None:
    key = Ed25519PrivateKey.generate()
    doc = legacy_sign(report(), key)
    # as the file was written (ensure_ascii=False, indent=1) and read back
    text = json.dumps(doc, ensure_ascii=False, indent=1).encode()
    ok, trusted, msg = check_signature(parse_report(text), trusted=key.public_key())
    assert (ok, trusted) == (True, True), msg
    # the legacy form is what it was: any change to the content breaks it
    forged = copy.deepcopy(doc)
    forged["kpis"][0]["value"] = 75.5
    assert not check_signature(forged, trusted=key.public_key())[0]
    # and a canonicalization this server does not know is refused by name
    doc["signature"]["canonicalization"] = "XML-C14N"
    ok, _, msg = check_signature(doc, trusted=key.public_key())
    assert not ok
    assert "unknown canonicalization 'XML-C14N'" in msg


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        ("kpis", float("nan"), "$.kpis[1].value is nan"),
        ("kpis", float("inf"), "$.kpis[1].value is inf"),
        ("digest", 2**53, "$.digest.rows is the integer 9007199254740992"),
    ],
)
def test_values_jcs_cannot_hold_are_refused_by_name(where: str, value: Any, says: str) -> None:
    doc = report()
    if where == "kpis":
        doc["kpis"][1]["value"] = value
    else:
        doc["digest"]["rows"] = value
    with pytest.raises(ReportError, match="cannot be signed") as exc:
        sign(doc, Ed25519PrivateKey.generate())
    assert says in str(exc.value)
    assert "signature" not in doc


def test_a_file_that_is_not_a_report_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="holds NaN, which is not JSON"):
        parse_report(b'{"value": NaN}')
    with pytest.raises(ValueError, match="gives the key 'value' twice"):
        parse_report(b'{"value": 1, "value": 2}')
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_report(b'{"name": "\xff"}')
    with pytest.raises(ValueError, match="a JSON object was expected"):
        parse_report(b"[1, 2]")
    with pytest.raises(ValueError, match="is not JSON"):
        parse_report(b"{")
