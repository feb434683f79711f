"""Contract v2's batch digest and signature: the test vector of docs/mqtt.md, the digest
rebuilt column-wise with numpy (as a verifier over stored rows would), change detection
and refusals."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.contract.digest import (
    BAD,
    GOOD,
    MAGIC,
    NO_STATUS,
    RECORD_BYTES,
    UNCERTAIN,
    ZERO,
    DigestSample,
    batch_digest,
    digest_samples,
    from_wire,
    sign_batch,
    verify_batch,
)
from edge_agent.contract.identity import FileSigner, fingerprint, public_key_text
from edge_agent.contract.sample import MachineState, Quality, Sample
from edge_agent.contract.wire import encode_batch, verify

# -- the test vector (docs/mqtt.md, "Contract v2 (being built)") -------------------------
SIGNER = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
GW, BOOT, SEQ, PREV = "gw-01", 3, 42, bytes(range(32, 64))
SAMPLES = [
    DigestSample("cnc-01", "state", 1767225600000, "RUNNING", GOOD, None),
    DigestSample("cnc-01", "spindle_kw", 1767225600000, 7.25, GOOD, None),
    DigestSample("em-1", "energy_kwh", 1767225600500, 123456, GOOD, None),
    DigestSample("cnc-01", "program", 1767225601000, "O1001", UNCERTAIN,
                 "UncertainLastUsableValue"),
    DigestSample("em-1", "power_kw", 1767225601000, None, BAD, "BadNoCommunication"),
    DigestSample("cnc-01", "state", 1767225602000, "IDLE", GOOD, None),
]  # fmt: skip
HEADER_HEX = (
    "66652f76322f626174636800000567772d303100000003000000000000002a202122232425262728292a2b"
    "2c2d2e2f303132333435363738393a3b3c3d3e3f000000050006636e632d3031000573746174650006636e"
    "632d3031000a7370696e646c655f6b770004656d2d31000a656e657267795f6b77680006636e632d303100"
    "0770726f6772616d0004656d2d310008706f7765725f6b77000000050000000752554e4e494e4700000005"
    "4f3130303100000018556e6365727461696e4c617374557361626c6556616c7565000000124261644e6f43"
    "6f6d6d756e69636174696f6e0000000449444c4500000006"
)
RECORDS_HEX = [
    "000000000000019b76daa8000002ffffffff0000000000000000",
    "000000010000019b76daa8000001ffffffff401d000000000000",
    "000000020000019b76daa9f40001ffffffff40fe240000000000",
    "000000030000019b76daabe80102000000020000000000000001",
    "000000040000019b76daabe80200000000030000000000000000",
    "000000000000019b76daafd00002ffffffff0000000000000004",
]
DIGEST_HEX = "2baa1d9a4d291186d66ce37323ecba97bc627d989d145154f2ca4fa473432f46"
SIGNATURE_B64 = (
    "0eA8adatFJdPfZ4lPs+Kl6EcyWyJAQoMYGZB+PGFvdJ6OeLIR35Z/R5HR1DDvwdSTOY9plBJ/zVJmL/vY/sLBw=="
)
PUBLIC_KEY_B64 = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
FINGERPRINT = "KZDV-VJ2U-MNDU-YAUF"


def vector_digest(**change: object) -> bytes:
    args: dict[str, Any] = {"gw": GW, "boot": BOOT, "seq": SEQ, "prev": PREV, "samples": SAMPLES}
    return batch_digest(**(args | change))


def test_the_vector() -> None:
    head, records = bytes.fromhex(HEADER_HEX), bytes.fromhex("".join(RECORDS_HEX))
    assert len(MAGIC) == 12
    assert head.startswith(MAGIC)
    assert (len(head), len(records), len(head + records)) == (239, 6 * RECORD_BYTES, 395)
    assert hashlib.sha256(head + records).hexdigest() == DIGEST_HEX
    digest = vector_digest()
    assert digest.hex() == DIGEST_HEX
    signature = sign_batch(SIGNER, digest)
    assert base64.b64encode(signature).decode() == SIGNATURE_B64
    assert public_key_text(SIGNER.public_key()) == PUBLIC_KEY_B64
    assert fingerprint(SIGNER.public_key()) == FINGERPRINT
    assert verify_batch(SIGNER.public_key(), digest, signature)


def test_the_vector_from_samples_and_from_the_wire() -> None:
    quality = {GOOD: Quality.GOOD, UNCERTAIN: Quality.UNCERTAIN, BAD: Quality.BAD}
    samples = [
        Sample(d, t, ts / 1000, v, quality[q], gw_ts=ts / 1000 + 0.2, status=s)
        for d, t, ts, v, q, s in SAMPLES
    ]
    assert batch_digest(gw=GW, boot=BOOT, seq=SEQ, prev=PREV, samples=digest_samples(samples)) == (
        vector_digest()
    )
    payload = encode_batch(gw=GW, boot=BOOT, seq=SEQ, sent=1767225603.0, samples=samples,
                           key=b"k" * 32)  # fmt: skip
    wire = from_wire(verify(payload, b"k" * 32)["samples"])
    assert wire == SAMPLES
    assert batch_digest(gw=GW, boot=BOOT, seq=SEQ, prev=PREV, samples=wire) == vector_digest()


def test_what_the_wire_fits_is_what_the_digest_covers() -> None:
    """A NaN goes out as a bad-quality null saying why; the digest covers that."""
    nan = [Sample("em-1", "power_kw", 1767225600.0, float("nan"))]
    assert digest_samples(nan) == [
        DigestSample("em-1", "power_kw", 1767225600000, None, BAD, "NaN")
    ]


# -- column-wise equals row-wise ---------------------------------------------------------
RECORD = np.dtype([("series", ">u4"), ("ts", ">i8"), ("q", "u1"), ("k", "u1"),
                   ("st", ">u4"), ("v", ">u8")])  # fmt: skip


def first_appearance(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct keys in order of first appearance, each key's index among them)."""
    distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return distinct[order], rank[inverse.reshape(-1)]


def u16(text: str) -> bytes:
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def columnwise_digest(gw: str, boot: int, seq: int, prev: bytes, cols: dict[str, Any]) -> bytes:
    """The digest from stored columns, with no per-sample Python loop: a device and a tag
    column, ts (ms), q, kind, num (the number where kind 1), text (where kind 2) and
    status ('' for none), as a verifier reads them from the database."""
    n = len(cols["ts"])
    pairs = np.empty(n, dtype=[("d", cols["device"].dtype), ("t", cols["tag"].dtype)])
    pairs["d"], pairs["t"] = cols["device"], cols["tag"]
    series, series_index = first_appearance(pairs)
    # the texts scanned in order, within a sample its text value, then its status
    scan = np.stack([cols["text"].astype(str), cols["status"].astype(str)], axis=1).ravel()
    present = np.stack([cols["kind"] == 2, cols["status"] != ""], axis=1).ravel()
    texts, text_index = first_appearance(scan[present])
    index = np.full(2 * n, NO_STATUS, dtype=np.int64)
    index[present] = text_index
    value_index, status_index = index.reshape(n, 2).T

    assert RECORD.itemsize == RECORD_BYTES  # no padding
    rec = np.empty(n, dtype=RECORD)
    rec["series"], rec["ts"], rec["q"], rec["k"] = series_index, cols["ts"], cols["q"], cols["kind"]
    rec["st"] = status_index
    bits = np.asarray(cols["num"], ">f8").view(">u8")
    text_bits = np.where(cols["kind"] == 2, value_index, 0).astype(np.uint64)
    rec["v"] = np.where(cols["kind"] == 1, bits, text_bits)  # both uint64: no float detour

    head = [MAGIC, u16(gw), boot.to_bytes(4, "big"), seq.to_bytes(8, "big"), prev]
    head.append(len(series).to_bytes(4, "big"))
    head += [u16(str(d)) + u16(str(t)) for d, t in series.tolist()]  # per entry, not sample
    head.append(len(texts).to_bytes(4, "big"))
    head += [len(t.encode()).to_bytes(4, "big") + t.encode() for t in texts.tolist()]
    head.append(n.to_bytes(4, "big"))
    return hashlib.sha256(b"".join(head) + rec.tobytes()).digest()


def columns(samples: list[DigestSample]) -> dict[str, Any]:
    """What the database would hold for these samples (the test's own set-up)."""

    def kind(v: object) -> int:
        return 0 if v is None else 2 if isinstance(v, str) else 1

    kinds = [kind(s.value) for s in samples]
    num = [float(s.value) if isinstance(s.value, int | float) else 0.0 for s in samples]
    text = [s.value if isinstance(s.value, str) else "" for s in samples]
    return {
        "device": np.array([s.device for s in samples], dtype=str),
        "tag": np.array([s.tag for s in samples], dtype=str),
        "ts": np.array([s.ts_ms for s in samples], dtype=np.int64),
        "q": np.array([s.quality for s in samples], dtype=np.uint8),
        "kind": np.array(kinds, dtype=np.uint8),
        "num": np.array(num),
        "text": np.array(text, dtype=object),
        "status": np.array([s.status or "" for s in samples], dtype=object),
    }  # fmt: skip


# no NUL (the contract has none, and numpy's fixed-width strings drop trailing ones), no
# lone surrogates (not UTF-8)
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=6)
NUMBER = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**70), 2**70)


@st.composite
def batches(draw: st.DrawFn) -> list[DigestSample]:
    ids = draw(st.lists(TEXT, min_size=1, max_size=4, unique=True))
    words = draw(st.lists(TEXT, min_size=1, max_size=4, unique=True))
    word = st.sampled_from(words)
    sample = st.builds(
        DigestSample,
        st.sampled_from(ids),
        st.sampled_from(ids),
        st.integers(-(2**63), 2**63 - 1),
        st.none() | NUMBER | st.booleans() | word,
        st.sampled_from([GOOD, UNCERTAIN, BAD]),
        st.none() | word,
    )
    return draw(st.lists(sample, max_size=30))


@settings(max_examples=300, deadline=None)
@given(batches(), TEXT, st.binary(min_size=32, max_size=32))
def test_columnwise_equals_rowwise(samples: list[DigestSample], gw: str, prev: bytes) -> None:
    expected = batch_digest(gw=gw, boot=7, seq=2**64 - 1, prev=prev, samples=samples)
    assert columnwise_digest(gw, 7, 2**64 - 1, prev, columns(samples)) == expected  # fmt: skip


def test_columnwise_on_the_vector() -> None:
    assert columnwise_digest(GW, BOOT, SEQ, PREV, columns(SAMPLES)).hex() == DIGEST_HEX


# -- any change is seen ------------------------------------------------------------------
def changed(i: int, **field: Any) -> list[DigestSample]:
    samples = list(SAMPLES)
    samples[i] = samples[i]._replace(**field)
    return samples


@pytest.mark.parametrize(
    "change",
    [
        {"samples": changed(1, value=7.5)},
        {"samples": changed(1, value=-0.0)},
        {"samples": changed(0, value="IDLE")},
        {"samples": changed(4, value=0)},
        {"samples": changed(2, ts_ms=1767225600501)},
        {"samples": changed(0, quality=UNCERTAIN)},
        {"samples": changed(3, status="UncertainInitialValue")},
        {"samples": changed(3, status=None)},
        {"samples": changed(0, device="cnc-02")},
        {"samples": changed(0, tag="state2")},
        {"samples": SAMPLES[:5]},
        {"samples": [SAMPLES[1], SAMPLES[0], *SAMPLES[2:]]},
        {"samples": [*SAMPLES[:4], SAMPLES[5], SAMPLES[4]]},
        {"prev": ZERO},
        {"boot": 4},
        {"seq": 43},
        {"gw": "gw-02"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_change_changes_the_digest(change: dict[str, Any]) -> None:
    assert vector_digest(**change) != vector_digest()


def test_the_same_values_the_same_digest() -> None:
    """An integer is its double, and an empty status is no status (the wire leaves it
    out): these do not change the digest."""
    assert vector_digest(samples=changed(2, value=123456.0)) == vector_digest()
    assert vector_digest(samples=changed(0, status="")) == vector_digest()
    assert vector_digest(samples=[tuple(s) for s in SAMPLES]) == vector_digest()


def test_a_signature_holds_for_its_key_and_digest_only() -> None:
    digest = vector_digest()
    signature = sign_batch(SIGNER, digest)
    other = FileSigner(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    assert not verify_batch(other.public_key(), digest, signature)
    assert not verify_batch(SIGNER.public_key(), digest, sign_batch(other, digest))
    assert not verify_batch(SIGNER.public_key(), vector_digest(seq=43), signature)
    assert not verify_batch(SIGNER.public_key(), digest, signature[:63])
    with pytest.raises(ValueError, match="digest: a batch digest is 32 bytes, not 31"):
        verify_batch(SIGNER.public_key(), digest[:31], signature)


def test_an_empty_batch_has_a_digest() -> None:
    head = MAGIC + u16(GW) + (3).to_bytes(4, "big") + (42).to_bytes(8, "big") + ZERO + bytes(12)
    assert vector_digest(samples=[], prev=ZERO) == hashlib.sha256(head).digest()


# -- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"samples": changed(1, value=float("nan"))},
         r"samples\[1\]\.value: nan: NaN and infinities are not measurements"),
        ({"samples": changed(1, value=float("-inf"))},
         r"samples\[1\]\.value: -inf: NaN and infinities"),
        ({"samples": changed(2, value=10**400)}, r"samples\[2\]\.value: .* beyond a double"),
        ({"samples": changed(2, value=b"7")}, r"samples\[2\]\.value: b'7' is not a number"),
        ({"samples": changed(4, quality=3)},
         r"samples\[4\]\.quality: 3 is not 0 \(good\), 1 \(uncertain\) or 2 \(bad\)"),
        ({"samples": changed(4, quality=1.0)}, r"samples\[4\]\.quality: 1\.0 is not 0"),
        ({"samples": changed(5, ts_ms=1767225602000.0)}, r"samples\[5\]\.ts_ms: .* not an integer"),
        ({"samples": changed(5, ts_ms=2**63)}, r"samples\[5\]\.ts_ms: .* within an i64"),
        ({"samples": changed(3, device="d" * 65536)},
         r"samples\[3\]\.device: 65536 bytes of UTF-8, over the u16 length 65535"),
        ({"samples": changed(3, tag="prog\udcd6")},
         r"samples\[3\]\.tag: '\\udcd6' at 4 cannot be UTF-8"),
        ({"samples": changed(3, status="\ud800")}, r"samples\[3\]\.status: '\\ud800' at 0 cannot"),
        ({"samples": changed(0, value="RUN\udcff")}, r"samples\[0\]\.value: '\\udcff' at 3"),
        ({"samples": changed(3, status=5)}, r"samples\[3\]\.status: 5 is not a string"),
        ({"samples": [SAMPLES[0][:5]]}, r"samples\[0\]: not a \(device, tag, ts_ms, value"),
        ({"prev": PREV[:31]},
         r"prev: the previous batch's digest is 32 bytes \(ZERO when there is none\), not 31"),
        ({"prev": None}, r"prev: .* not NoneType"),
        ({"boot": -1}, r"boot: -1 is not an integer in the u32 range 0\.\.4294967295"),
        ({"boot": 2**32}, r"boot: 4294967296 is not an integer in the u32 range"),
        ({"seq": 2**64}, r"seq: 18446744073709551616 is not an integer in the u64 range"),
        ({"seq": True}, r"seq: True is not an integer"),
        ({"gw": "gw\udc80"}, r"gw: '\\udc80' at 2 cannot be UTF-8"),
        ({"gw": "g" * 65536}, r"gw: 65536 bytes of UTF-8, over the u16 length 65535"),
    ],
)  # fmt: skip
def test_refusals_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        vector_digest(**change)


def test_the_records_are_26_bytes_and_in_the_batch_order() -> None:
    assert RECORD.itemsize == RECORD_BYTES == 26
    rec = np.frombuffer(bytes.fromhex("".join(RECORDS_HEX)), dtype=RECORD)
    assert rec["series"].tolist() == [0, 1, 2, 3, 4, 0]
    assert rec["st"].tolist() == [NO_STATUS, NO_STATUS, NO_STATUS, 2, 3, NO_STATUS]
    assert rec["v"][1:3].view(">f8").tolist() == [7.25, 123456.0]


def test_wire_samples_keep_their_json_form() -> None:
    text = '[{"d":"em-1","t":"power_kw","ts":1,"v":null,"q":"bad","s":"timeout"}]'
    assert from_wire(json.loads(text)) == [
        DigestSample("em-1", "power_kw", 1, None, BAD, "timeout")
    ]
    with pytest.raises(ValueError, match="a wire sample without 'ts'"):
        from_wire([{"d": "em-1", "t": "power_kw", "v": None}])
    with pytest.raises(ValueError, match="unknown quality"):
        from_wire([{"d": "em-1", "t": "power_kw", "ts": 1, "v": None, "q": "meh"}])


def test_a_str_enum_is_its_text_and_other_types_are_refused() -> None:
    assert vector_digest(samples=changed(0, value=MachineState.RUNNING)) == vector_digest()
    for odd in (Decimal("7.25"), b"7.25", [7.25]):
        with pytest.raises(ValueError, match=r"samples\[1\]\.value: .* is not a number"):
            vector_digest(samples=changed(1, value=odd))


def test_the_docs_print_this_vector() -> None:
    """docs/mqtt.md prints the vector for other languages' gateways: the same bytes."""
    docs = (Path(__file__).resolve().parents[2] / "docs/mqtt.md").read_text(encoding="utf-8")
    heading = re.search(r"## Contract v2( \(being built\))?: the batch digest", docs)
    assert heading is not None
    section = docs[heading.start() :]
    head_block, records_block = re.findall(r"```\n(.*?)```", section, re.S)
    hex_of = [re.split(r"\s{2,}", line)[0].replace(" ", "") for line in head_block.splitlines()]
    assert "".join(hex_of) == HEADER_HEX
    assert records_block.replace(" ", "").split() == RECORDS_HEX
    for value in (DIGEST_HEX, SIGNATURE_B64, PUBLIC_KEY_B64, FINGERPRINT):
        assert f"`{value}`" in section
