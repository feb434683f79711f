"""Contract v2's column-wise decoding against the reference: for any batch, the digest the
server computes from the decoder's columns (`decode_columns_v2(...).digest()`) is
`batch_digest` over the decoded wire samples, byte for byte, and the table references
resolved in C are those the one-at-a-time walk resolves (or refused alike)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.contract.digest import batch_digest, from_wire
from edge_agent.contract.wire_v2 import (
    WireV2Error,
    _resolve,
    decode_batch_v2,
    decode_columns_v2,
)
from tests.contract.test_wire_v2 import BOOT, GW, MS, SEQ, encode, wire_samples

T0 = 1767225600000


def reference_digest(payload: bytes) -> bytes:
    """What a receiver that walks the sample dicts computes (DecodedBatch.digest)."""
    batch = decode_batch_v2(payload)
    return batch_digest(gw=batch.gw, boot=batch.boot, seq=batch.seq, prev=batch.prev,
                        samples=from_wire(batch.samples))  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(wire_samples(), st.sampled_from([0, 6]), st.binary(min_size=32, max_size=32), MS)
def test_the_columns_digest_is_the_reference_digest(
    samples: list[dict[str, Any]], level: int, prev: bytes, sent: int
) -> None:
    payload = encode(samples, level=level, prev=prev, sent=sent)
    cols = decode_columns_v2(payload)
    assert cols.digest() == reference_digest(payload)
    assert cols.digest() == batch_digest(gw=GW, boot=BOOT, seq=SEQ, prev=prev,
                                         samples=from_wire(samples))  # fmt: skip
    assert cols.samples() == decode_batch_v2(payload).samples


def test_large_tables_and_every_kind_digest_alike() -> None:
    """Over 255 series, devices and texts (the references no longer fit a byte), series
    repeated out of order, and each kind of value, with statuses and second clocks."""
    values: list[Any] = [1.5, 7, -(2**63), 2**63 - 1, 0.1 + 0.2, -0.0, 1e300, 12.25, None,
                         "RUNNING", "", 3.0, 2**53 + 1]  # fmt: skip
    samples = []
    for i in range(900):
        s: dict[str, Any] = {"d": f"dev-{i % 300}", "t": f"t{(i * 7) % 290}",
                             "ts": T0 + (i * 37) % 1000, "v": values[i % 13]}  # fmt: skip
        if i % 5 == 0:
            s["v"] = f"text-{i % 400}"
        if i % 11 == 0:
            s |= {"q": "bad", "s": f"Status{i % 270}", "gts": s["ts"] + 5}
        elif i % 13 == 0:
            s |= {"q": "uncertain", "sts": s["ts"] - 3}
        samples.append(s)
    payload = encode(samples)
    assert decode_batch_v2(payload).samples == [
        s | {"v": float(s["v"])} if isinstance(s["v"], int) and s["v"] >= 2**63 else s
        for s in samples
    ]
    assert decode_columns_v2(payload).digest() == reference_digest(payload)
    assert decode_columns_v2(encode([])).digest() == reference_digest(encode([]))


def walk(refs: list[int], n_entries: int, what: str) -> list[int]:
    """The references resolved one at a time: docs/mqtt.md's rule, stated plainly."""
    out, new = [], 0
    for r in refs:
        if r == 0:
            out.append(new)
            new += 1
        elif 0 < r <= new:
            out.append(r - 1)
        else:
            raise WireV2Error(f"{what}: reference {r} to an entry not yet introduced")
    if new != n_entries:
        raise WireV2Error(f"{what}: {new} entries used of {n_entries}")
    return out


def fail(what: str) -> WireV2Error:
    return WireV2Error(what)


REF = st.one_of(st.integers(0, 6), st.integers(-2, 300), st.just(0))


@settings(max_examples=400, deadline=None)
@given(st.lists(REF, max_size=40), st.integers(0, 12))
def test_references_resolve_as_the_walk_resolves(refs: list[int], n_entries: int) -> None:
    try:
        want: Any = walk(refs, n_entries, "x")
    except WireV2Error as exc:
        want = str(exc)
    if not any(refs) and len(refs) != n_entries:  # the all-new shortcut words its own
        want = f"x: {len(refs)} new entries for a table of {n_entries}"
    try:
        got: Any = _resolve(refs, n_entries, fail, "x")
    except WireV2Error as exc:
        got = str(exc)
    assert got == want


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([1, 2, 7, 254, 255, 256, 300]), st.data())
def test_valid_references_of_any_size_resolve(n_entries: int, data: st.DataObject) -> None:
    """Valid reference columns, small (a byte each) and large: the walk's result."""
    refs, new = [], 0
    for _ in range(n_entries + data.draw(st.integers(0, 30))):
        if new < n_entries and (new == 0 or data.draw(st.booleans())):
            refs.append(0)
            new += 1
        else:
            refs.append(data.draw(st.integers(1, new)))
    refs += [0] * (n_entries - new)
    assert _resolve(refs, n_entries, fail, "x") == walk(refs, n_entries, "x")


def test_a_bad_reference_is_named() -> None:
    with pytest.raises(WireV2Error, match=re.escape("x: reference 3 to an entry not yet")):
        _resolve([0, 1, 3, 0], 2, fail, "x")
    with pytest.raises(WireV2Error, match=re.escape("x: 2 entries used of 3")):
        _resolve([0, 1, 0, 2], 3, fail, "x")
