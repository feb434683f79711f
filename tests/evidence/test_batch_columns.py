"""The column-wise batch digests (evidence/batch_columns.py) equal `batch_digest` byte for
byte, over seeded random tables: texts, statuses (empty ones too), nulls, every kind,
series repeated and interleaved, unicode, one-sample and empty batches; and a batch the
digest refuses is left to the slow walk, never given a digest of its own."""

from __future__ import annotations

import math
import random
from typing import Any

import pyarrow as pa
import pytest

from edge_agent.contract.digest import ZERO, batch_digest
from ingest_server.evidence import batch_columns

SCHEMA = pa.schema([
    ("batch_id", pa.int64()), ("device", pa.string()), ("tag", pa.string()),
    ("ts", pa.int64()), ("value", pa.float64()), ("text", pa.string()),
    ("quality", pa.int8()), ("status", pa.string()),
])  # fmt: skip
DEVICES = ["plc-1", "mächine-2", "设备三", "d", "💡"]
TAGS = ["state", "parts", "温度", "x" * 40, ""]
TEXTS = ["RUNNING", "IDLE", "", "停机", "é", "RUNNING ", "💥"]
STATUSES = [None, None, None, "", "stale", "comm_loss", "停机", "RUNNING"]


def random_batch(rng: random.Random, n: int) -> list[dict[str, Any]]:
    pairs = [(rng.choice(DEVICES), rng.choice(TAGS)) for _ in range(rng.randint(1, 6))]
    rows = []
    for _ in range(n):
        device, tag = rng.choice(pairs)
        kind = rng.random()
        text = rng.choice(TEXTS) if kind < 0.3 else None
        value = None
        if kind >= 0.3:
            value = rng.choice([None, 0.0, -0.0, 1.5, -3e300, 5e-324,
                                float(rng.randint(0, 1 << 40)), rng.uniform(-9, 9)])  # fmt: skip
        if text is not None and rng.random() < 0.3:
            value = rng.uniform(0, 10)  # a text sample's value is not what is digested
        rows.append({"device": device, "tag": tag, "ts": rng.randint(-(1 << 62), 1 << 62),
                     "value": value, "text": text, "quality": rng.choice([0, 0, 1, 2]),
                     "status": rng.choice(STATUSES)})  # fmt: skip
    return rows


def slow(rows: list[dict[str, Any]], head: dict[str, Any]) -> bytes:
    return batch_digest(**head, samples=[
        (r["device"], r["tag"], r["ts"], r["text"] if r["text"] is not None else r["value"],
         r["quality"], r["status"]) for r in rows])  # fmt: skip


def head(rng: random.Random, i: int) -> dict[str, Any]:
    return {"gw": rng.choice(["gw-1", "网关", "g"]), "boot": rng.randint(0, 0xFFFFFFFF),
            "seq": rng.randint(0, (1 << 64) - 1),
            "prev": ZERO if i % 3 == 0 else rng.randbytes(32)}  # fmt: skip


def table(batches: dict[int, list[dict[str, Any]]]) -> pa.Table:
    rows = [{"batch_id": b, **r} for b in sorted(batches) for r in batches[b]]
    return pa.Table.from_pylist(rows, SCHEMA)


@pytest.mark.parametrize("seed", range(40))
def test_every_batch_equals_batch_digest(seed: int) -> None:
    rng = random.Random(seed)
    ids = sorted(rng.sample(range(-5, 10_000), rng.randint(1, 12)))
    batches = {b: random_batch(rng, rng.choice([0, 1, 1, 2, 5, 30, 200])) for b in ids}
    heads = {b: head(rng, i) for i, b in enumerate(ids)}
    prepared = batch_columns.prepare(table(batches))
    at = prepared.index()
    assert prepared.bad == frozenset()
    for b in ids:
        want = slow(batches[b], heads[b])
        if not batches[b]:
            assert b not in at
            assert batch_columns.empty_digest(**heads[b]) == want
            continue
        assert prepared.digest(at[b], **heads[b]) == want, (seed, b)


def test_an_empty_table_prepares_no_batch() -> None:
    prepared = batch_columns.prepare(table({}))
    assert prepared.index() == {}


def test_table_entries_keep_first_appearance_across_texts_and_statuses() -> None:
    # the status of a number comes before a later text value; a text equal to an earlier
    # status reuses its entry; an empty status has none
    keys = ["device", "tag", "ts", "value", "text", "quality", "status"]
    rows = [dict(zip(keys, r, strict=True)) for r in [
        ("b", "t", 1, 1.0, None, 1, "S"),
        ("a", "t", 2, None, "X", 0, ""),
        ("b", "t", 3, None, "S", 0, "X"),
        ("a", "u", 4, None, None, 2, None),
    ]]  # fmt: skip
    h = {"gw": "gw", "boot": 1, "seq": 2, "prev": ZERO}
    prepared = batch_columns.prepare(table({7: rows}))
    assert prepared.digest(0, **h) == slow(rows, h)
    assert prepared.series_n.tolist() == [3]
    assert prepared.texts_n.tolist() == [2]


@pytest.mark.parametrize(
    "change",
    [{"value": math.nan}, {"value": math.inf}, {"quality": 3}, {"device": None}, {"tag": None},
     {"tag": "x" * 70_000}, {"ts": None}],
)  # fmt: skip
def test_a_row_the_digest_refuses_marks_its_batch_only(change: dict[str, Any]) -> None:
    rng = random.Random(1)
    batches = {1: random_batch(rng, 20), 2: random_batch(rng, 20), 3: random_batch(rng, 5)}
    batches[2][7] = {**batches[2][7], "text": None, **change}
    heads = {b: head(rng, b) for b in batches}
    prepared = batch_columns.prepare(table(batches))
    assert prepared.bad == {2}
    with pytest.raises(ValueError, match=r"samples\[7\]|cannot be digested"):
        slow(batches[2], heads[2])
    at = prepared.index()
    for b in (1, 3):
        assert prepared.digest(at[b], **heads[b]) == slow(batches[b], heads[b])
