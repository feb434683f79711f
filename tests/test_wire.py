"""MQTT contract v1 payloads: signed bytes, tamper detection, sample encoding."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.sample import Quality, Sample
from edge_agent.wire import SignatureError, encode_batch, encode_message, sample_dict, verify

KEY = b"0123456789abcdef0123456789abcdef"


def test_batch_round_trip_and_fields() -> None:
    samples = [
        Sample("cnc-01", "state", 1_700_000_000.1234, "RUNNING", gw_ts=1_700_000_000.5),
        Sample("em-main", "energy", 1_700_000_001.0, 1873210.4),
        Sample("em-main", "power", 1_700_000_001.0, None, Quality.BAD, status="timeout"),
    ]
    payload = encode_batch(
        gw="gw-01", boot=3, seq=17, sent=1_700_000_002.0, samples=samples, key=KEY
    )
    obj = verify(payload, KEY)
    assert (obj["v"], obj["gw"], obj["boot"], obj["seq"], obj["sent"]) == (
        1,
        "gw-01",
        3,
        17,
        1_700_000_002_000,
    )
    assert obj["samples"] == [
        {
            "d": "cnc-01",
            "t": "state",
            "ts": 1_700_000_000_123,
            "v": "RUNNING",
            "gts": 1_700_000_000_500,
        },
        {"d": "em-main", "t": "energy", "ts": 1_700_000_001_000, "v": 1873210.4},
        {
            "d": "em-main",
            "t": "power",
            "ts": 1_700_000_001_000,
            "v": None,
            "q": "bad",
            "s": "timeout",
        },
    ]
    assert list(obj)[-1] == "sig"


def test_signature_covers_the_exact_bytes_without_the_sig_member() -> None:
    payload = encode_message({"gw": "gw-01", "state": "online"}, KEY)
    tail = payload.rindex(b',"sig":"')
    body = payload[:tail] + b"}"
    mac = hmac.new(KEY, body, hashlib.sha256).hexdigest()
    assert json.loads(payload)["sig"] == mac


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda p: p.replace(b'"seq":17', b'"seq":18'), "does not match"),
        (lambda p: p.replace(b"RUNNING", b"IDLE"), "does not match"),
        (lambda p: p[: p.rindex(b',"sig"')] + b"}", "does not end"),
        (lambda p: p + b" ", "does not end"),
    ],
)
def test_tampered_payload_is_rejected(mutate, match) -> None:  # type: ignore[no-untyped-def]
    samples = [Sample("cnc-01", "state", 1.0, "RUNNING")]
    payload = encode_batch(gw="gw-01", boot=1, seq=17, sent=2.0, samples=samples, key=KEY)
    with pytest.raises(SignatureError, match=match):
        verify(mutate(payload), KEY)


def test_wrong_key_is_rejected() -> None:
    payload = encode_message({"gw": "gw-01"}, KEY)
    with pytest.raises(SignatureError):
        verify(payload, b"another key")


def test_nan_is_refused_rather_than_sent_as_invalid_json() -> None:
    with pytest.raises(ValueError, match="JSON compliant"):
        encode_batch(
            gw="g", boot=1, seq=1, sent=0.0, samples=[Sample("d", "t", 0.0, float("nan"))], key=KEY
        )


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=8),
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20), st.none()
            ),
            st.sampled_from(list(Quality)),
        ),
        max_size=20,
    )
)
def test_any_batch_verifies_and_decodes_to_its_samples(rows) -> None:  # type: ignore[no-untyped-def]
    samples = [Sample("dev", tag, 1.5, value, q) for tag, value, q in rows]
    obj = verify(encode_batch(gw="g", boot=1, seq=1, sent=0.0, samples=samples, key=KEY), KEY)
    assert obj["samples"] == [sample_dict(s) for s in samples]
    assert [s["v"] for s in obj["samples"]] == [v for _, v, _ in rows]


def test_server_timestamp_travels_when_it_differs() -> None:
    s = Sample("cnc-01", "program", 10.0, "O1001", gw_ts=10.5, server_ts=10.25)
    assert sample_dict(s) == {
        "d": "cnc-01",
        "t": "program",
        "ts": 10_000,
        "v": "O1001",
        "gts": 10_500,
        "sts": 10_250,
    }
    obj = verify(encode_batch(gw="g", boot=1, seq=1, sent=0.0, samples=[s], key=KEY), KEY)
    assert obj["samples"] == [sample_dict(s)]
