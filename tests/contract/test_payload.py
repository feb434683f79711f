"""The server's check of contract v1 messages, against payloads the agent's own code signs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from edge_agent import config
from edge_agent.contract.sample import DEVICE_STATUS_TAG, Quality, Sample
from edge_agent.contract.wire import encode_batch, encode_message, sign
from ingest_server.ingest.payload import (
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


# --- limits: what PostgreSQL or the server's readers would refuse is refused here, with
# its true reason (docs/mqtt.md, Limits)


def signed(body: dict[str, object]) -> bytes:
    """A body as some producer might sign it: json.dumps, not the agent's encoder (which
    makes samples fit the limits)."""
    return sign(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), KEY)


def raw_batch(sample: dict[str, object] | None = None, **kw: object) -> bytes:
    s = {"d": "cnc-01", "t": "state", "ts": NOW_MS, "v": "RUNNING"} | (sample or {})
    return signed({"v": 1, "gw": "gw-01", "boot": 1, "seq": 7, "sent": NOW_MS, "samples": [s]} | kw)


def raw_birth(
    device: dict[str, object] | None = None, tag: dict[str, object] | None = None
) -> bytes:
    t = {"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh"} | (tag or {})
    d = {"id": "em-1", "protocol": "modbus", "metadata": {}, "tags": [t]} | (device or {})
    body = {"v": 1, "gw": "gw-01", "boot": 1, "agent": {"name": "a"}, "sent": NOW_MS}
    return signed(body | {"devices": [d]})


TIME = "is not a time: give ms since 1970-01-01 UTC, 0 to 253402300799999"
NOT_ID = "is not an id: 1 to 128 ASCII letters, digits"
NUL = "contains a NUL character (U+0000), which PostgreSQL text cannot hold"
LE = "Input should be less than or equal to"
INF = "not a finite number (NaN, Infinity or beyond 1.8e308)"
BYTES = "bytes (UTF-8), over the limit of 4096"


def status(**kw: object) -> bytes:
    return signed({"v": 1, "gw": "gw-01", "boot": 1, "state": "online"} | kw)


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        # integers beyond what their columns hold
        ("data", raw_batch(seq=2**63), f"seq: {LE} {2**63 - 1} (the server stores seq as a 64-bit"),
        ("data", raw_batch(boot=2**31), f"boot: {LE} {2**31 - 1} (the server stores boot as a 32"),
        ("data", raw_batch(sent=2**64), f"sent: 18446744073709551616 {TIME}"),
        ("data", raw_batch({"v": 10**400}), f"samples[0].v: {INF}"),
        ("status", status(boot=2**40), f"boot: {LE} 2147483647"),
        # times beyond int64, beyond 9999-12-31, before 1970
        ("data", raw_batch({"ts": 2**64}), f"samples[0].ts: 18446744073709551616 {TIME}"),
        ("data", raw_batch({"ts": 253_402_300_800_000}), f"samples[0].ts: 253402300800000 {TIME}"),
        ("data", raw_batch({"gts": -1}), f"samples[0].gts: -1 {TIME}"),
        ("data", raw_batch({"sts": 2**70}), f"samples[0].sts: 1180591620717411303424 {TIME}"),
        ("status", status(ts=2**63), f"ts: 9223372036854775808 {TIME}"),
        # NUL characters
        ("data", raw_batch({"d": "cnc\x0001"}), f"samples[0].d: 'cnc\\x0001' {NOT_ID}"),
        ("data", raw_batch({"t": "\x00"}), f"samples[0].t: '\\x00' {NOT_ID}"),
        ("data", raw_batch({"v": "RUN\x00NING"}), f"samples[0].v: {NUL}"),
        ("data", raw_batch({"v": None, "q": "bad", "s": "time\x00out"}), f"samples[0].s: {NUL}"),
        ("birth", raw_birth({"id": "em\x001"}), f"devices[0].id: 'em\\x001' {NOT_ID}"),
        ("birth", raw_birth(tag={"unit": "k\x00Wh"}), f"devices[0].tags[0].unit: {NUL}"),
        ("birth", raw_birth({"metadata": {"model": "x\x00"}}), f"devices[0].metadata.model: {NUL}"),
        # lengths: string values, ids
        ("data", raw_batch({"v": "x" * 4097}), f"samples[0].v: a string of 4097 {BYTES}"),
        ("data", raw_batch({"v": "状" * 1366}), f"samples[0].v: a string of 4098 {BYTES}"),
        ("data", raw_batch({"d": "d" * 129}), f"(131 characters) {NOT_ID}"),
        ("data", raw_batch({"t": "t" * 129}), f"(131 characters) {NOT_ID}"),
        ("data", raw_batch({"t": "state/x"}), f"samples[0].t: 'state/x' {NOT_ID}"),
        ("data", raw_batch({"v": None, "q": "bad", "s": "s" * 501}), "s: String should have at"),
        # numbers a double column or a jsonb document cannot hold
        ("birth", raw_birth(tag={"scale": 1e400}), f"devices[0].tags[0].scale: {INF}"),
        ("data", raw_batch({"v": True}), "samples[0].v: True is not a number or a string"),
    ],
)  # fmt: skip
def test_what_the_database_would_refuse_is_refused_by_the_schema(
    kind: str, payload: bytes, reason: str
) -> None:
    with pytest.raises(RejectedError) as info:
        parse_message(TOPIC + kind, payload, key_of=keys)
    assert info.value.reason.startswith("schema: "), info.value.reason
    assert reason in info.value.reason, info.value.reason
    assert len(info.value.reason) < 300  # a 12 MiB input does not make a 12 MiB reason


def test_the_limits_themselves_are_accepted() -> None:
    cases: list[dict[str, object]] = [
        {"d": "D" * 128, "t": "_status", "v": "x" * 4096},
        {"d": "cnc-01", "t": "spindle.speed_1", "v": "状" * 1365, "ts": 253_402_300_799_999},
        {"d": "cnc-01", "t": "state", "v": 2**63, "ts": 0, "gts": 0},  # stored as a double
        {"d": "cnc-01", "t": "state", "v": None, "q": "bad", "s": "s" * 500},
    ]
    for sample in cases:
        _, msg = parse_message(TOPIC + "data", raw_batch(sample, seq=2**63 - 1), key_of=keys)
        assert isinstance(msg, DataBatch)
        assert msg.samples[0].d == sample["d"]
    # a time the schema takes but the clock check does not is set aside, not refused
    _, msg = parse_message(TOPIC + "data", raw_batch({"ts": 253_402_300_799_999}), key_of=keys)
    assert isinstance(msg, DataBatch)
    good, bad = split_by_clock(msg, now_ms=NOW_MS, max_past_ms=86_400_000, max_future_ms=1000)
    assert (good, len(bad)) == ([], 1)


_ID = TypeAdapter(config.Id).json_schema()["pattern"]
_TOPIC_ID = TypeAdapter(config.TopicId).json_schema()["pattern"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            Sample,
            st.from_regex(_ID, fullmatch=True),
            st.from_regex(_ID, fullmatch=True) | st.just(DEVICE_STATUS_TAG),
            st.floats(-2e10, 3e11),  # seconds: 1335 to 11476, an OPC UA null DateTime too
            st.floats() | st.text(max_size=1500) | st.none(),
            st.sampled_from(list(Quality)),
            st.none() | st.floats(0, 2e11),
            st.none() | st.text(max_size=700),
            st.none() | st.floats(-2e10, 3e11),
        ),
        min_size=1,
        max_size=5,
    ),
    st.from_regex(_TOPIC_ID, fullmatch=True),
)
def test_whatever_the_agent_encodes_the_server_accepts(samples: list[Sample], gw: str) -> None:
    """The agent's ids come from its config; its values, times and texts from devices, so
    anything: the encoder makes them fit, and the server takes the whole batch."""
    payload = encode_batch(gw=gw, boot=2**31 - 1, seq=2**40, sent=NOW_MS / 1000,
                           samples=samples, key=KEY)  # fmt: skip
    _, msg = parse_message(f"fe/v1/hf/p1/{gw}/data", payload, key_of=lambda _o: KEY)
    assert isinstance(msg, DataBatch)
    assert [(s.d, s.t) for s in msg.samples] == [(s.device, s.tag) for s in samples]
