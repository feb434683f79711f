"""Every limit `WireSample` (v1's schema) holds a sample to is refused for a v2 batch too,
by the decoder, with a dead letter naming what is wrong, though the server no longer
runs the schema over v2 samples (payload_v2.parse_batch_v2 maps each limit to its check).

The payloads are made here byte by byte (docs/mqtt.md, "the data payload"), since the
gateway's encoder refuses to make them."""

from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import ValidationError

from edge_agent.contract import topics, wire_v2
from edge_agent.contract.digest import ZERO, batch_digest, from_wire, sign_batch
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.wire import MAX_MS
from ingest_server.ingest import payload
from ingest_server.ingest.check import Limits, check
from ingest_server.ingest.gateway_keys import GatewayDirectory
from ingest_server.ingest.payload import WireSample
from ingest_server.ingest.payload_v2 import BatchV2
from ingest_server.repo.gateways import enroll_public_key
from tests.harness.ingest import ENT, GW, SITE, prepare

GW2 = "gw-02"
TOPIC = topics.prefix(ENT, SITE, GW2) + "/data"
NOW = round(time.time() * 1000)
# the head byte's kinds and extras bits (wire_v2.py)
NULL, INT, F64, F32, TEXT, DEC = 0, 1, 2, 3, 4, 5


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return varint(len(raw)) + raw


def packed(values: list[int]) -> bytes:
    """A packed column, 8 bytes a value (any width is valid)."""
    if not values:
        return b""
    lo = min(values)
    return (
        varint(2 * lo if lo >= 0 else -2 * lo - 1)
        + b"\x08"
        + struct.pack(f">{len(values)}Q", *(v - lo for v in values))
    )


def one_sample(  # noqa: PLR0917
    d: str = "em-1", t: str = "power", ts: int = NOW, v: Any = 1.5, q: int = 0,
    s: str | None = None, gts: int | None = None, sts: int | None = None,
    kind: int | None = None, extras: int | None = None, boot: int = 1, seq: int = 1,
    sent: int = NOW, key: FileSigner | None = None, ints: bytes | None = None,
) -> bytes:  # fmt: skip
    """A v2 payload of one sample, uncompressed; signed by `key` (else 64 zero bytes).
    `ints`: the ints column's bytes, for a value no single packed item can hold."""
    if kind is None:
        kind = {type(None): NULL, int: INT, float: F64, str: TEXT}[type(v)]
    texts = ([v] if kind == TEXT else []) + ([s] if s is not None else [])
    x = extras if extras is not None else (
        (s is not None) | (gts is not None) << 1 | (sts is not None) << 2)  # fmt: skip
    head = q | kind << 2 | (0x40 if x else 0)
    body = b"".join([
        varint(1), varint(1), string(d), varint(1), string(t),
        varint(len(texts)), *map(string, texts),
        varint(1), packed([0]), packed([0]),
        bytes((head,)), packed([0]), varint(ts),
        bytes((x,)) if x else b"",
        packed([0] * len(texts)),
        (packed([v]) if ints is None else ints) if kind == INT else b"",
        packed([v]) if DEC <= kind <= DEC + 9 else b"",
        struct.pack(">f", v) if kind == F32 else b"",
        struct.pack(">d", v) if kind == F64 else b"",
        packed([gts - ts]) if gts is not None else b"",
        packed([sts - ts]) if sts is not None else b"",
    ])  # fmt: skip
    signature = bytes(64)
    if key is not None:
        wire = {"d": d, "t": t, "ts": ts, "v": v} | ({"s": s} if s else {})
        wire |= {"q": ("good", "uncertain", "bad")[q]} if q else {}
        digest = batch_digest(gw=GW2, boot=boot, seq=seq, prev=ZERO, samples=from_wire([wire]))
        signature = sign_batch(key, digest)
    header = wire_v2.MAGIC + bytes((2, 0)) + string(GW2) + varint(boot) + varint(seq)
    return header + varint(sent) + ZERO + signature + body


@dataclass
class Case:
    name: str
    fields: dict[str, Any]  # one_sample's arguments
    reason: str  # in the dead letter
    wire: dict[str, Any] | None  # the same sample as v1's wire carries it, if it can


CASES = [
    Case("device not an id", {"d": "cnc/01"}, "device or tag 'cnc/01' is not an id",
         {"d": "cnc/01"}),
    Case("device over 128 characters", {"d": "d" * 129}, "is not an id", {"d": "d" * 129}),
    Case("empty tag", {"t": ""}, "device or tag '' is not an id", {"t": ""}),
    Case("tag not ASCII", {"t": "tèmp"}, "device or tag 'tèmp' is not an id", {"t": "tèmp"}),
    Case("ts after 9999", {"ts": MAX_MS + 1}, f"ts: outside 0..{MAX_MS}", {"ts": MAX_MS + 1}),
    Case("NaN", {"v": float("nan")}, "a value that is NaN or infinite", {"v": float("nan")}),
    Case("infinity as f32", {"v": float("inf"), "kind": F32}, "NaN or infinite",
         {"v": float("inf")}),
    Case("text with NUL", {"v": "a\x00b"}, "a text holds a NUL character", {"v": "a\x00b"}),
    Case("text over 4096 bytes", {"v": "é" * 2049}, "a text value over 4096 bytes",
         {"v": "é" * 2049}),
    # minimum 2^63 - 1 (zigzag), width 1, + 1: 2^63
    Case("integer beyond i64", {"v": 0, "ints": varint(2**64 - 2) + b"\x01\x01"},
         f"ints: outside {-(2**63)}..{2**63 - 1}", None),
    Case("decimal mantissa over 2^53", {"v": 2**53 + 1, "kind": DEC + 1}, "mantissas: outside",
         None),
    Case("quality 3", {"q": 3}, "head byte 0x0b is not quality, kind and extras",
         {"q": "good?"}),
    Case("kind 15", {"v": None, "kind": 15}, "head byte 0x3c", None),
    Case("status over 500 characters", {"q": 2, "s": "s" * 501}, "a status of 501 characters",
         {"q": "bad", "s": "s" * 501}),
    Case("status with NUL", {"q": 2, "s": "Bad\x00"}, "a text holds a NUL character",
         {"q": "bad", "s": "Bad\x00"}),
    Case("empty status", {"q": 2, "s": ""}, "a status of 0 characters", None),
    Case("gts after 9999", {"gts": MAX_MS + 1}, f"gts: outside 0..{MAX_MS}",
         {"gts": MAX_MS + 1}),
    Case("sts before 1970", {"sts": -1}, f"sts: outside 0..{MAX_MS}", {"sts": -1}),
    Case("unknown extras bit", {"extras": 0x09, "gts": NOW}, "extras byte 0x09",
         {"x": 1}),
    Case("boot 0", {"boot": 0}, "boot 0 outside 1..2147483647", None),
    Case("boot over 2^31 - 1", {"boot": 2**31}, "boot 2147483648 outside", None),
    Case("seq over 2^63 - 1", {"seq": 2**63}, "seq 9223372036854775808 outside", None),
    Case("sent after 9999", {"sent": MAX_MS + 1}, f"sent {MAX_MS + 1} outside", None),
]  # fmt: skip


def test_the_decoder_and_the_schema_share_their_limits() -> None:
    """The decoder's constants are the schema's, and the schema has no field the mapping
    in parse_batch_v2 leaves out (a new one must be added there and to the decoder)."""
    assert wire_v2.MAX_ID_CHARS == payload.MAX_ID_CHARS
    assert wire_v2.ID_PATTERN.pattern.rstrip("Z").rstrip("\\") == payload.ID_PATTERN.strip("^$")
    assert (wire_v2.MAX_BOOT, wire_v2.MAX_SEQ) == (payload.MAX_BOOT, payload.MAX_SEQ)
    assert set(WireSample.model_fields) == {"d", "t", "ts", "v", "q", "s", "gts", "sts"}


@pytest.mark.parametrize("case", [c for c in CASES if c.wire is not None], ids=lambda c: c.name)
def test_v1s_schema_refuses_the_same_sample(case: Case) -> None:
    """Each case breaks a limit of `WireSample` itself, not one of v2's own."""
    good = {"d": "em-1", "t": "power", "ts": NOW, "v": 1.5}
    WireSample.model_validate(good)
    with pytest.raises(ValidationError):
        WireSample.model_validate(good | case.wire)  # type: ignore[operator]


@dataclass
class Received:
    topic: str
    payload: bytes


def test_each_limit_is_a_dead_letter_naming_it(db: str, tmp_path: Path) -> None:
    key = FileSigner.create(tmp_path / "gw-02.key")
    prepare(db, gateways=(GW, GW2))
    with psycopg.connect(db) as conn:
        enroll_public_key(conn, enterprise=ENT, site=SITE, gateway=GW2, public_key=key.public_key())
    directory = GatewayDirectory(lambda: psycopg.connect(db))
    limits = Limits(max_payload_bytes=1 << 20, max_past_ms=10**13, max_future_ms=10**13)
    taken = [Received(TOPIC, one_sample(key=key))]  # the control: the same bytes, no fault
    taken += [Received(TOPIC, one_sample(**c.fields)) for c in CASES]
    try:
        group = check(taken, directory=directory, limits=limits, now_ms=NOW)
    finally:
        directory.close()
    (item,) = group.data
    assert isinstance(item.batch, BatchV2)
    assert item.batch.samples[0].v == 1.5
    assert len(group.dead) == len(CASES)
    for case, dead in zip(CASES, group.dead, strict=True):
        assert re.match(r"v2 payload: (header|body) at byte \d+: ", dead.reason), case.name
        assert case.reason in dead.reason, (case.name, dead.reason)
        header_ok = not {"boot", "seq"} & case.fields.keys()
        # acknowledged dead (the gateway stops resending) when its key is readable
        assert (dead.ack is not None) == header_ok, case.name
