"""Contract v2's compact data payload: the worked example of docs/mqtt.md, exact round
trips, the digest rebuilt by the receiver, and untrusted bytes refused with one error."""

from __future__ import annotations

import contextlib
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.contract.digest import ZERO, batch_digest, from_wire
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.wire_v2 import MAGIC, WireV2Error, decode_batch_v2
from edge_agent.contract.wire_v2_encode import encode_batch_v2, seal_batch_v2, split_samples

SIGNER = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
GW, BOOT, SEQ, PREV, SENT = "gw-01", 3, 42, bytes(range(32, 64)), 1767225603000
# the digest section's test vector, as wire sample dicts (one with a gateway time)
VECTOR = [
    {"d": "cnc-01", "t": "state", "ts": 1767225600000, "v": "RUNNING", "gts": 1767225600212},
    {"d": "cnc-01", "t": "spindle_kw", "ts": 1767225600000, "v": 7.25},
    {"d": "em-1", "t": "energy_kwh", "ts": 1767225600500, "v": 123456},
    {"d": "cnc-01", "t": "program", "ts": 1767225601000, "v": "O1001", "q": "uncertain",
     "s": "UncertainLastUsableValue"},
    {"d": "em-1", "t": "power_kw", "ts": 1767225601000, "v": None, "q": "bad",
     "s": "BadNoCommunication"},
    {"d": "cnc-01", "t": "state", "ts": 1767225602000, "v": "IDLE"},
]  # fmt: skip
DIGEST_HEX = "2baa1d9a4d291186d66ce37323ecba97bc627d989d145154f2ca4fa473432f46"


def vector_payload(level: int = 0) -> bytes:
    payload, digest = seal_batch_v2(SIGNER, gw=GW, boot=BOOT, seq=SEQ, sent=SENT, prev=PREV,
                                    samples=VECTOR, level=level)  # fmt: skip
    assert digest.hex() == DIGEST_HEX
    return payload


def encode(samples: list[dict[str, Any]], level: int = 6, **kw: Any) -> bytes:
    args: dict[str, Any] = {
        "gw": GW,
        "boot": BOOT,
        "seq": SEQ,
        "sent": SENT,
        "prev": PREV,
        "signature": bytes(64),
        "samples": samples,
        "level": level,
    }
    return encode_batch_v2(**(args | kw))  # fmt: skip


def test_the_vector_round_trips_and_verifies() -> None:
    for level in (0, 9):
        batch = decode_batch_v2(vector_payload(level))
        assert batch.samples == VECTOR
        assert (batch.gw, batch.boot, batch.seq, batch.sent, batch.prev) == (
            GW, BOOT, SEQ, SENT, PREV
        )  # fmt: skip
        assert batch.digest().hex() == DIGEST_HEX
        assert batch.verify(SIGNER.public_key())
        assert not batch._replace(seq=43).verify(SIGNER.public_key())


def test_the_docs_print_this_example() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs/mqtt.md").read_text(encoding="utf-8")
    # the heading lost its "(being built)" when v2 shipped: either form
    heading = re.search(r"## Contract v2( \(being built\))?: the data payload", docs)
    assert heading is not None
    section = docs[heading.start() :]
    (block,) = re.findall(r"```text\n(.*?)```", section, re.S)
    hex_of = [re.split(r"\s{2,}", line.strip())[0].replace(" ", "") for line in block.splitlines()]
    assert "".join(hex_of) == vector_payload(0).hex()
    assert f"{len(vector_payload(0))} bytes" in section


def test_compression_only_when_it_helps() -> None:
    small = vector_payload(9)
    assert small[4] == 0  # 6 samples: zlib would add bytes
    many = [dict(s, ts=s["ts"] + 1000 * i) for i in range(50) for s in VECTOR]
    assert encode(many, level=6)[4] == 1
    assert len(encode(many, level=6)) < len(encode(many, level=0))
    assert decode_batch_v2(encode(many, level=1)).samples == many


def modbus(units: int = 4, regs: int = 125) -> list[dict[str, Any]]:
    return [{"d": f"u{u}", "t": f"r{a}", "ts": 1767225600050, "v": ((a * 7 + u) % 65536) / 10}
            for u in range(1, units + 1) for a in range(regs)]  # fmt: skip


def test_modbus_values_cost_few_bytes() -> None:
    samples = modbus()
    assert len(encode(samples, level=0)) / len(samples) < 7
    assert len(encode(samples, level=6)) / len(samples) < 3
    assert decode_batch_v2(encode(samples)).samples == samples


def test_numbers_keep_value_type_and_sign() -> None:
    values = [0.0, -0.0, 1.5, 2.0, 1e300, -1.7976931348623157e308, 5e-324, 0.1 + 0.2,
              float(struct.unpack(">f", struct.pack(">f", 0.1))[0]), 123.456789, 7, -(2**63),
              2**63 - 1, 2**53 + 1, 10**20, 1234567.891]  # fmt: skip
    samples = [{"d": "d", "t": f"t{i}", "ts": i, "v": v} for i, v in enumerate(values)]
    out = [s["v"] for s in decode_batch_v2(encode(samples)).samples]
    want = [float(v) if isinstance(v, int) and not -(2**63) <= v < 2**63 else v for v in values]
    assert [(type(v), repr(v)) for v in out] == [(type(v), repr(v)) for v in want]
    assert batch_digest(gw=GW, boot=1, seq=1, prev=ZERO, samples=from_wire(samples)) == (
        batch_digest(gw=GW, boot=1, seq=1, prev=ZERO, samples=from_wire(
            decode_batch_v2(encode(samples)).samples)))  # fmt: skip


ID = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=8)
MS = st.integers(0, 253_402_300_799_999)
NUMBER = (st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**63), 2**63 - 1)
          | st.decimals(places=3, min_value=-10**6, max_value=10**6).map(float))  # fmt: skip


@st.composite
def wire_samples(draw: st.DrawFn) -> list[dict[str, Any]]:
    ids = draw(st.lists(ID, min_size=1, max_size=4, unique=True))
    words = draw(st.lists(TEXT, min_size=1, max_size=4, unique=True))
    out = []
    for _ in range(draw(st.integers(0, 25))):
        s: dict[str, Any] = {
            "d": draw(st.sampled_from(ids)),
            "t": draw(st.sampled_from(ids)),
            "ts": draw(MS),
            "v": draw(st.none() | NUMBER | st.sampled_from(words)),
        }
        q = draw(st.sampled_from([None, "uncertain", "bad"]))
        if q:
            s["q"] = q
        status = draw(st.none() | st.sampled_from(words))
        if status:
            s["s"] = status
        for name in ("gts", "sts"):
            if draw(st.booleans()):
                s[name] = draw(MS)
        out.append(s)
    return out


@settings(max_examples=300, deadline=None)
@given(wire_samples(), st.sampled_from([0, 1, 9]), MS, st.binary(min_size=32, max_size=32))
def test_round_trip_is_exact(samples: list[dict[str, Any]], level: int, sent: int,
                             prev: bytes) -> None:  # fmt: skip
    batch = decode_batch_v2(encode(samples, level=level, sent=sent, prev=prev))
    assert [[(k, type(v), repr(v)) for k, v in s.items()] for s in batch.samples] == [
        [(k, type(v), repr(v)) for k, v in s.items()] for s in samples
    ]
    assert (batch.sent, batch.prev) == (sent, prev)
    assert batch.digest() == batch_digest(gw=GW, boot=BOOT, seq=SEQ, prev=prev,
                                          samples=from_wire(samples))  # fmt: skip


def decode_or_refuse(data: bytes) -> None:
    with contextlib.suppress(WireV2Error):
        decode_batch_v2(data, max_samples=1000, max_bytes_decompressed=100_000)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_wirev2error(data: bytes) -> None:
    decode_or_refuse(data)
    decode_or_refuse(MAGIC + b"\x02\x00" + data)
    decode_or_refuse(vector_payload(0)[:100] + data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_payloads_decode_or_raise_wirev2error(data: st.DataObject) -> None:
    good = bytearray(data.draw(st.sampled_from([vector_payload(0), encode(modbus(1, 40), 0)])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    decode_or_refuse(bytes(good))
    decode_or_refuse(bytes(good[: data.draw(st.integers(0, len(good)))]))


def header(flags: int = 0) -> bytes:
    return MAGIC + bytes((2, flags, 5)) + b"gw-01" + b"\x03\x2a\x01" + bytes(96)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"v":1}', "not a v2 data payload"),
        (MAGIC + b"\x03\x00", "version 3, not 2"),
        (MAGIC + b"\x02\x80", "unknown flags 0x80"),
        (header() + b"\xff" * 100, "a varint longer than 10 bytes"),
        (header() + b"\x80\x80\x80\x80\x10", "sample count: 4294967296, over 1000"),
        (header(1) + b"\x80\x80\x80\x80\x10" + zlib.compress(bytes(10)),
         "body length: 4294967296, over 100000"),
        (header(1) + b"\xc0\x9a\x0c" + zlib.compress(bytes(10**6)),
         "body length: 200000, over 100000"),
        (header(1) + b"\x0a" + zlib.compress(bytes(10**6)),
         "does not inflate to exactly 10 bytes"),
        (header() + bytes(5) + b"\x00", "1 bytes after the batch"),
        (header() + b"\x01\x01\x02u\x00\x00\x00", "device or tag 'u\\x00' is not an id"),
        (MAGIC + bytes((2, 0, 5)) + b"gw/01" + b"\x03\x2a\x01" + bytes(96), "is not an id"),
        (MAGIC + bytes((2, 0, 5)) + b"gw-01" + b"\x00\x2a\x01" + bytes(96), "boot 0 outside"),
    ],
)  # fmt: skip
def test_refusals_say_what(payload: bytes, message: str) -> None:
    with pytest.raises(WireV2Error, match=re.escape(message)):
        decode_batch_v2(payload, max_samples=1000, max_bytes_decompressed=100_000)


@pytest.mark.parametrize(
    ("sample", "message"),
    [
        ({"v": "a\x00b"}, "has a NUL"),
        ({"v": "x" * 4097}, "over 4096 bytes"),
        ({"v": float("nan")}, "NaN and infinities"),
        ({"ts": -1}, "a ts outside"),
        ({"d": "cnc/01"}, "is not 1 to 128 characters"),
        ({"q": "good"}, "is not uncertain or bad"),
        ({"q": "bad", "s": "s" * 501}, "over 500 characters"),
        ({"gts": 10**15}, "gts: 1000000000000000 is outside"),
        ({"v": b"7"}, "is not a number, a string or None"),
    ],
)
def test_the_encoder_keeps_to_the_limits(sample: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        encode([{"d": "d", "t": "t", "ts": 1, "v": 1.0} | sample])


def test_refused_values_when_decoding() -> None:
    """Texts and times the encoder refuses are refused when decoded too."""
    good = encode([{"d": "d", "t": "t", "ts": 1, "v": "abc"}], level=0)
    with pytest.raises(WireV2Error, match="NUL"):
        decode_batch_v2(good.replace(b"abc", b"a\x00c"))
    nan = encode([{"d": "d", "t": "t", "ts": 1, "v": 0.1 + 0.2}], level=0)
    with pytest.raises(WireV2Error, match="NaN or infinite"):
        decode_batch_v2(nan[:-8] + struct.pack(">d", float("nan")))
    assert decode_batch_v2(nan).samples[0]["v"] == 0.1 + 0.2


def test_split_keeps_every_chunk_under_the_limit() -> None:
    samples = modbus(8, 125)
    chunks = split_samples(samples, max_bytes=700, level=6)
    assert [s for c in chunks for s in c] == samples
    assert len(chunks) > 1
    for chunk in chunks:
        payload = encode(list(chunk), level=6, gw="g" * 128, seq=2**63 - 1)
        assert len(payload) <= 700
    assert split_samples(samples, max_bytes=10**6) == [samples]
    with pytest.raises(ValueError, match="does not fit"):
        split_samples(samples, max_bytes=150)
