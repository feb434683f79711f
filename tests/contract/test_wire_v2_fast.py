"""Contract v2's fast sealing path against the reference: for any batch, valid or not,
`seal_batch_v2` (digest from the encoder's own columns) gives the same payload and digest
as `_seal_reference` (from_wire + batch_digest, then the sample-at-a-time encoder), or
the same error; and the fast path is the one taken for the batches a gateway makes."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.contract import wire_v2_encode
from edge_agent.contract.digest import ZERO, batch_digest, columns_digest, from_wire
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.sample import MachineState
from edge_agent.contract.wire_v2 import decode_batch_v2
from edge_agent.contract.wire_v2_encode import (
    _fast_body,
    _reference_body,
    _seal_reference,
    encode_batch_v2,
    seal_batch_v2,
    split_samples,
)

SIGNER = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
PREV = bytes(range(32, 64))
T0 = 1767225600050


class Level(enum.IntEnum):
    LOW = 3


def outcome(fn: Any, *args: Any, **kw: Any) -> tuple[str, Any]:
    """What a call gives: its result, or its error's type and message."""
    try:
        return "ok", fn(*args, **kw)
    except Exception as exc:
        return "error", (type(exc).__name__, str(exc))


def both_seals(samples: list[dict[str, Any]], level: int = 6, **kw: Any) -> tuple[Any, Any]:
    args: dict[str, Any] = {"gw": "gw-01", "boot": 3, "seq": 42, "sent": T0 + 30,
                            "prev": PREV, "samples": samples, "level": level} | kw  # fmt: skip
    return outcome(seal_batch_v2, SIGNER, **args), outcome(_seal_reference, SIGNER, **args)


def assert_fast_path(samples: list[dict[str, Any]]) -> None:
    """The fast path takes the batch (no fallback) and its body and digest are the
    reference's."""
    body, cols = _fast_body(samples)
    assert body == _reference_body(samples)
    digest = columns_digest(gw="gw-01", boot=3, seq=42, prev=PREV, series=cols.series,
                            texts=cols.texts, columns=cols.columns)  # fmt: skip
    assert digest == batch_digest(gw="gw-01", boot=3, seq=42, prev=PREV,
                                  samples=from_wire(samples))  # fmt: skip


# -- random batches, odd values included -------------------------------------------------
ID = st.sampled_from(["u1", "u2", "r0", "r1", "state", "em-1", "bad/id", ""])
WORD = st.sampled_from(["RUNNING", "IDLE", "BadNoCommunication", "", "a\x00b", "x\udcff",
                        "é", "s" * 501])  # fmt: skip
REGISTER = st.integers(0, 65535)
VALUE = st.one_of(
    REGISTER.map(lambda r: r / 10),  # a Modbus register x 0.1
    REGISTER.map(lambda r: r / 1000),
    REGISTER.map(float),
    st.floats(),  # NaN and infinities too: refused
    st.just(-0.0),
    st.integers(-(2**64), 2**64),  # beyond i64: its double
    st.sampled_from([2**63, 2**63 - 1, -(2**63), -(2**63) - 1]),  # i64's edges
    st.just(10**400),  # beyond a double: refused
    st.booleans(),
    st.none(),
    WORD,
    st.sampled_from([MachineState.RUNNING, Level.LOW, b"7"]),  # a StrEnum, an IntEnum, bytes
)
MS = st.integers(0, 253_402_300_799_999)
TS = st.one_of(st.integers(T0, T0 + 10_000), st.just(-1), st.just(T0 + 0.5), MS)


@st.composite
def sample(draw: st.DrawFn) -> dict[str, Any]:
    s: dict[str, Any] = {"d": draw(ID), "t": draw(ID), "ts": draw(TS), "v": draw(VALUE)}
    if draw(st.integers(0, 3)) == 0:  # most samples are plain
        for key, values in (
            ("q", st.sampled_from(["uncertain", "bad", "good", None])),
            ("s", st.one_of(WORD, st.just(5))),
            ("gts", st.one_of(MS, st.just(-5), st.none())),
            ("sts", st.one_of(MS, st.none())),
            ("x", st.just(1)),  # unknown keys are ignored
        ):
            if draw(st.booleans()):
                s[key] = draw(values)
    return s


@settings(max_examples=400, deadline=None)
@given(st.lists(sample(), max_size=25), st.sampled_from([0, 1, 6]))
def test_any_batch_seals_as_the_reference_seals_it(
    samples: list[dict[str, Any]], level: int
) -> None:
    fast, reference = both_seals(samples, level)
    assert fast == reference


@st.composite
def plain_batch(draw: st.DrawFn) -> list[dict[str, Any]]:
    """What a gateway sends: good ids, finite values, now and then a status or a time."""
    devices = draw(st.lists(st.sampled_from(["u1", "u2", "cnc-01", "em-1"]), min_size=1,
                            unique=True))  # fmt: skip
    tags = [f"r{i}" for i in range(draw(st.integers(1, 40)))]
    scale = draw(st.sampled_from([1, 10, 100, 1000]))
    value = st.one_of(
        REGISTER.map(lambda r: r / scale),
        st.floats(allow_nan=False, allow_infinity=False),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from(["RUNNING", "IDLE", MachineState.DOWN, None, True]),
    )
    polls = draw(st.integers(1, 3))
    out = []
    for p in range(polls):
        for d in devices:
            for t in draw(st.lists(st.sampled_from(tags), max_size=12)):
                s: dict[str, Any] = {"d": d, "t": t, "ts": T0 + 50 * p, "v": draw(value)}
                if draw(st.integers(0, 5)) == 0:
                    s |= {"q": "bad", "s": "BadNoCommunication", "gts": T0 + 50 * p + 12}
                out.append(s)
    return out


@settings(max_examples=150, deadline=None)
@given(plain_batch())
def test_gateway_batches_take_the_fast_path(samples: list[dict[str, Any]]) -> None:
    assert_fast_path(samples)
    fast, reference = both_seals(samples)
    assert fast == reference
    assert fast[0] == "ok"
    payload, digest = fast[1]
    batch = decode_batch_v2(payload)
    assert batch.digest() == digest
    assert batch.verify(SIGNER.public_key())


# -- the shapes the agent makes, at full size --------------------------------------------
def modbus(units: int, regs: int, polls: int = 1, scale: float = 10) -> list[dict[str, Any]]:
    return [{"d": f"u{u}", "t": f"r{a}", "ts": T0 + 50 * p, "v": ((a * 7 + u + p) % 65536) / scale}
            for p in range(polls) for u in range(1, units + 1) for a in range(regs)]  # fmt: skip


@pytest.mark.parametrize(
    "samples",
    [
        modbus(16, 125),  # one read of 2,000 tags: every series new
        modbus(4, 125, polls=4),  # 500 tags read four times in one batch
        modbus(4, 50, scale=1),  # integral doubles: k = 0
        modbus(4, 50, scale=1000),
        modbus(4, 50, scale=3),  # not decimals: f32 or f64, value by value
        [*modbus(2, 10), {"d": "u1", "t": "r0", "ts": T0, "v": -0.0}],  # -0.0 goes as f64
        [*modbus(2, 10), {"d": "cnc-01", "t": "state", "ts": T0, "v": MachineState.RUNNING},
         {"d": "cnc-01", "t": "program", "ts": T0 + 1, "v": "O1001", "q": "uncertain",
          "s": "RUNNING"},  # a text both value and status: one table entry
         {"d": "em-1", "t": "energy_kwh", "ts": T0 + 2, "v": 2**63},  # an f64
         {"d": "em-1", "t": "count", "ts": T0 + 3, "v": True, "sts": T0 + 9}],
        [],
    ],
    ids=["2000-new", "repeats", "k0", "k3", "f64", "neg-zero", "mixed", "empty"],
)  # fmt: skip
def test_agent_shapes_take_the_fast_path(samples: list[dict[str, Any]]) -> None:
    assert_fast_path(samples)
    fast, reference = both_seals(samples)
    assert fast == reference
    assert fast[0] == "ok"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": math.nan}, r"samples\[3\]\.value: nan: NaN and infinities"),
        ({"q": "good"}, "is not uncertain or bad"),
        ({"q": None}, "a wire sample without None or with an unknown quality"),
        ({"s": "ok", "q": "bad", "v": "a\x00b"}, "has a NUL"),
        ({"d": "u/1"}, "is not 1 to 128 characters"),
        ({"ts": 1.5}, r"samples\[3\]\.ts_ms: 1\.5 is not an integer"),
    ],
)
def test_refusals_are_the_references(change: dict[str, Any], message: str) -> None:
    """A batch the fast path does not take is refused with the reference's words."""
    samples = modbus(1, 8)
    samples[3] = samples[3] | change
    with pytest.raises(ValueError, match=message):
        seal_batch_v2(SIGNER, gw="gw-01", boot=3, seq=42, sent=T0, prev=ZERO, samples=samples)
    with pytest.raises(ValueError, match=message):
        _seal_reference(SIGNER, gw="gw-01", boot=3, seq=42, sent=T0, prev=ZERO, samples=samples)


def test_a_refused_id_is_never_remembered_as_good() -> None:
    """Ids that passed are remembered (the next batch skips the regex); one that failed
    is checked again, every time."""
    bad = [{"d": "u 1", "t": "r0", "ts": T0, "v": 1.0}]
    for _ in range(2):
        with pytest.raises(ValueError, match="'u 1' is not 1 to 128 characters"):
            encode_batch_v2(gw="gw-01", boot=1, seq=1, sent=T0, prev=ZERO,
                            signature=bytes(64), samples=bad)  # fmt: skip
    assert "u 1" not in wire_v2_encode._KNOWN_IDS


def test_split_cuts_where_it_did_and_each_chunk_seals_the_same() -> None:
    samples = modbus(8, 125, polls=2)
    chunks = split_samples(samples, max_bytes=2000, level=6)
    assert [s for c in chunks for s in c] == samples
    assert len(chunks) > 1
    for seq, chunk in enumerate(chunks, 1):
        fast, reference = both_seals(list(chunk), seq=seq, gw="g" * 128)
        assert fast == reference
        assert len(fast[1][0]) <= 2000
