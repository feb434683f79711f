"""The server's check of contract v1 messages, against payloads the agent's own code signs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.sample import Quality, Sample
from edge_agent.wire import encode_batch, encode_message
from ingest_server.payload import (
    Birth,
    DataBatch,
    Origin,
    RejectedError,
    Status,
    parse_message,
    split_by_clock,
)

KEY = b"k" * 32
TOPIC = "fe/v1/hf-precision/hf-plant1/gw-01/"
NOW_MS = 1_795_000_000_000


def keys(origin: Origin) -> bytes | None:
    return KEY if origin.gateway == "gw-01" else None


def batch(**kw: object) -> bytes:
    samples = [
        Sample("cnc-01", "state", NOW_MS / 1000, "RUNNING"),
        Sample("em-main", "power_kw", NOW_MS / 1000, None, Quality.BAD, status="timeout"),
    ]
    args: dict = {"gw": "gw-01", "boot": 1, "seq": 7, "sent": NOW_MS / 1000}
    args |= {"samples": samples, "key": KEY} | kw
    return encode_batch(**args)


def test_a_signed_batch_parses() -> None:
    origin, msg = parse_message(TOPIC + "data", batch(), key_of=keys)
    assert origin == Origin("hf-precision", "hf-plant1", "gw-01", "data")
    assert isinstance(msg, DataBatch)
    assert (msg.boot, msg.seq, len(msg.samples)) == (1, 7, 2)
    assert msg.samples[1].q == "bad"


def test_birth_and_status_parse() -> None:
    birth = encode_message(
        {
            "gw": "gw-01",
            "boot": 1,
            "agent": {"name": "edge-agent", "version": "0.1.0"},
            "sent": NOW_MS,
            "devices": [
                {
                    "id": "em-ht",
                    "protocol": "modbus",
                    "metadata": {"kind": "meter"},
                    "tags": [
                        {
                            "t": "energy_kwh",
                            "role": "energy_kwh",
                            "unit": "kWh",
                            "type": "u16",
                            "scale": 0.1,
                            "offset": 0.0,
                            "wrap": 6553.6,
                        }
                    ],
                }
            ],
        },
        KEY,
    )
    assert isinstance(parse_message(TOPIC + "birth", birth, key_of=keys)[1], Birth)
    status = encode_message({"gw": "gw-01", "boot": 1, "state": "offline"}, KEY)
    assert isinstance(parse_message(TOPIC + "status", status, key_of=keys)[1], Status)


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("fe/v1/hf/p1/gw-01/config", batch(), "is not fe/v1/"),
        ("fe/v1/hf/p1/GW/data", batch(), "is not fe/v1/"),
        ("fe/v1/hf/p1/gw-02/data", batch(), "unknown gateway hf/p1/gw-02"),
        (TOPIC + "data", batch(key=b"another key"), "signature: signature does not match"),
        (TOPIC + "data", b"\xff\xfe not json", "signature: payload does not end"),
        (TOPIC + "data", batch(gw="gw-09"), "body says gateway 'gw-09', topic says 'gw-01'"),
        (TOPIC + "data", batch(seq=0), "schema: seq: Input should be greater than or equal to 1"),
        (TOPIC + "birth", batch(), "schema: "),
        (
            TOPIC + "status",
            encode_message({"gw": "gw-01", "boot": 1, "state": "dozing"}, KEY),
            "schema: state: Input should be 'online' or 'offline'",
        ),
    ],
)
def test_bad_messages_are_rejected_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    with pytest.raises(RejectedError) as info:
        parse_message(topic, payload, key_of=keys)
    assert reason in info.value.reason


def test_a_tampered_sample_is_caught_by_the_signature() -> None:
    raw = batch().replace(b'"RUNNING"', b'"IDLE"')
    with pytest.raises(RejectedError, match="signature does not match"):
        parse_message(TOPIC + "data", raw, key_of=keys)


def test_only_implausible_samples_are_set_aside() -> None:
    samples = [
        Sample("cnc-01", "state", NOW_MS / 1000, "RUNNING"),
        Sample("cnc-02", "state", NOW_MS / 1000 + 3600, "IDLE"),  # an hour ahead
        Sample("cnc-03", "state", NOW_MS / 1000 - 40 * 86400, "OFF"),  # 40 days old
    ]
    _, msg = parse_message(TOPIC + "data", batch(samples=samples), key_of=keys)
    assert isinstance(msg, DataBatch)
    good, bad = split_by_clock(
        msg, now_ms=NOW_MS, max_past_ms=30 * 86_400_000, max_future_ms=300_000
    )
    assert [s.d for s in good] == ["cnc-01"]
    assert [s.d for s, _ in bad] == ["cnc-02", "cnc-03"]
    assert "check the clocks of cnc-02" in bad[0][1]
    assert json.loads(msg.model_dump_json())["seq"] == 7


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_any_bytes_are_parsed_or_rejected_with_a_reason(payload: bytes) -> None:
    try:
        parse_message(TOPIC + "data", payload, key_of=keys)
    except RejectedError as exc:
        reason = exc.reason
    else:
        reason = "parsed"
    assert reason  # anything else raised fails the test


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["data", "birth", "status"]),
    st.dictionaries(
        st.sampled_from(["v", "gw", "boot", "seq", "sent", "samples", "state", "ts", "devices"]),
        _JSON,
    ),
)
def test_signed_nonsense_is_rejected_by_the_schema_not_by_a_crash(
    kind: str, body: dict[str, object]
) -> None:
    payload = encode_message(body, KEY)  # correctly signed: only the schema can refuse it
    try:
        parse_message(TOPIC + kind, payload, key_of=keys)
    except RejectedError as exc:
        reason = exc.reason
    else:
        reason = "schema: parsed"
    assert reason.startswith(("schema:", "body says gateway")), reason
