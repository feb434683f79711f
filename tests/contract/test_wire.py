"""MQTT contract v1 payloads: signed bytes, tamper detection, sample encoding."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.contract import wire
from edge_agent.contract.sample import Quality, Sample
from edge_agent.contract.wire import (
    SignatureError,
    encode_batch,
    encode_message,
    sample_dict,
    utf8_safe,
    verify,
)

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


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (float("nan"), "NaN"),
        (float("inf"), "Inf"),
        (float("-inf"), "Inf"),
        ("O1234\x00\x00", "a string holding a NUL character"),
        ("报警" * 700, "a string of 4200 bytes (over 4096)"),
    ],
)
def test_a_value_the_contract_cannot_carry_is_sent_as_bad_quality_and_logged_once(
    value: float | str, status: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server refuses a whole batch over one such value (docs/mqtt.md, Limits): the
    agent sends that sample as bad, with the reason, and the rest of the batch as it is."""
    wire._warned.clear()
    samples = [
        Sample("cnc-01", "program", 1_700_000_000.0, value),
        Sample("cnc-01", "program", 1_700_000_001.0, value),
        Sample("cnc-01", "state", 1_700_000_001.0, "RUNNING"),
    ]
    obj = verify(encode_batch(gw="g", boot=1, seq=1, sent=2.0, samples=samples, key=KEY), KEY)
    bad = {"d": "cnc-01", "t": "program", "v": None, "q": "bad", "s": status}
    assert obj["samples"] == [
        {**bad, "ts": 1_700_000_000_000},
        {**bad, "ts": 1_700_000_001_000},
        {"d": "cnc-01", "t": "state", "ts": 1_700_000_001_000, "v": "RUNNING"},
    ]
    warnings = [r.getMessage() for r in caplog.records if r.name == "edge_agent.contract.wire"]
    assert len(warnings) == 1, warnings
    assert "cnc-01/program" in warnings[0]
    assert "sent as bad quality" in warnings[0]


def test_times_outside_1970_to_9999_are_replaced_or_left_out() -> None:
    wire._warned.clear()
    null_datetime = -11_644_473_600.0  # OPC UA's null DateTime, 1601-01-01
    samples = [
        # a device time the contract cannot carry: the gateway's time instead
        Sample("cnc-01", "state", null_datetime, "IDLE", gw_ts=1_700_000_000.5),
        # a server time it cannot carry: left out, the sample kept
        Sample("cnc-01", "program", 1_700_000_000.0, "O1", server_ts=1e14),
        # a status text too long, with a NUL: cut, cleaned
        Sample("em-1", "power", 1_700_000_000.0, None, Quality.BAD, status="x\x00" * 400),
    ]
    obj = verify(encode_batch(gw="g", boot=1, seq=1, sent=2.0, samples=samples, key=KEY), KEY)
    assert obj["samples"] == [
        {"d": "cnc-01", "t": "state", "ts": 1_700_000_000_500, "v": "IDLE"},
        {"d": "cnc-01", "t": "program", "ts": 1_700_000_000_000, "v": "O1"},
        {"d": "em-1", "t": "power", "ts": 1_700_000_000_000, "v": None, "q": "bad",
         "s": "x" * 400},
    ]  # fmt: skip
    assert [sample_dict(s) for s in samples] == obj["samples"]
    # no gateway time either (a Modbus sample's ts is the gateway's): the time of sending
    before = time.time()
    d = sample_dict(Sample("plc-1", "count", -5.0, 3.0))
    assert before * 1000 - 1 <= d["ts"] <= time.time() * 1000 + 1


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,7}", fullmatch=True),  # the config's ids
            st.one_of(
                st.floats(allow_nan=False, allow_infinity=False),
                # any text but NUL, lone surrogates included (asyncua's undecodable bytes)
                st.text(st.characters(exclude_characters="\x00", codec=None), max_size=20),
                st.none(),
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
    assert [s["v"] for s in obj["samples"]] == [
        utf8_safe(v) if isinstance(v, str) else v for _, v, _ in rows
    ]


def test_text_that_is_not_utf8_travels_as_escapes_and_its_bytes_can_be_recovered() -> None:
    # a Chinese CNC's program name in GBK, decoded by asyncua with errors="surrogateescape"
    raw = "主程序".encode("gbk")
    program = raw.decode("utf-8", "surrogateescape")
    samples = [
        Sample("cnc-01", "program", 1.5, program, gw_ts=2.0),
        Sample("cnc-01", "alarm", 1.5, "ok \ud800"),  # a surrogate that is no escaped byte
        Sample("cnc-01", "spindle", 1.5, None, Quality.BAD, status="Bad\udcff"),
        Sample("cnc-01", "state", 1.5, "IDLE"),
    ]
    obj = verify(encode_batch(gw="g", boot=1, seq=1, sent=0.0, samples=samples, key=KEY), KEY)
    values = [s["v"] for s in obj["samples"]]
    assert values[0] == "".join(f"\\x{b:02x}" for b in raw)
    assert values[0].encode().decode("unicode_escape").encode("latin-1") == raw
    assert values[1:] == ["ok \\ud800", None, "IDLE"]
    assert obj["samples"][2]["s"] == "Bad\\xff"
    assert obj["samples"] == [sample_dict(s) for s in samples]


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
