"""The offline verifier's fast paths (evidence/offline/, docs/evidence-verify.md "Speed")
give the answers of the slow ones: libsodium's signature verdict is cryptography's, the
ledger's columns find what the ledger check's objects find."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edge_agent.contract.digest import ZERO
from ingest_server.evidence import bundle_parquet as bdl
from ingest_server.evidence import ledger
from ingest_server.evidence.offline import anchors, chain, ledger_columns, signatures
from ingest_server.evidence.offline import trust as offline_trust

L = 2**252 + 27742317777372353535851937790883648493  # the order of Ed25519's base point


def _openssl(public: Ed25519PrivateKey, signature: bytes, digest: bytes) -> bool:
    try:
        public.public_key().verify(signature, digest)
    except InvalidSignature:
        return False
    return True


@pytest.mark.parametrize("kind", ["valid", "invalid", "malleated", "other_key", "short"])
def test_libsodium_gives_cryptographys_answer(kind: str) -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    digest = os.urandom(32)
    sig = key.sign(digest)
    if kind == "invalid":
        sig = sig[:10] + bytes([sig[10] ^ 1]) + sig[11:]
    elif kind == "malleated":  # S + L: the same equation, a non-canonical S
        sig = sig[:32] + (int.from_bytes(sig[32:], "little") + L).to_bytes(32, "little")
    elif kind == "other_key":
        sig = Ed25519PrivateKey.generate().sign(digest)
    elif kind == "short":
        sig = sig[:63]
    want = len(sig) == 64 and _openssl(key, sig, digest)
    assert signatures._sodium_verify(sig + digest, public) is want
    assert want is (kind == "valid")


def _ledger_bundle(rows: list[tuple[object, ...]]) -> ledger_columns._Ledger:
    table = pa.Table.from_pylist(
        [dict(zip(bdl.LEDGER_SCHEMA.names, r, strict=True)) for r in rows], bdl.LEDGER_SCHEMA
    )
    return ledger_columns._Ledger({"enterprise": "e"}, {"ledger.parquet": bdl._parquet(table)})


def _row(  # noqa: PLR0917
    bid: int, gw: str, seq: int, prev: bytes, digest: bytes, received_ms: int
) -> tuple[object, ...]:
    return (bid, "p1", gw, 1, seq, received_ms - 40, received_ms, 2, prev, digest, bytes(64),
            1, 1, 0, "period", True)  # fmt: skip


def test_the_ledgers_columns_are_its_batches_and_find_them_by_id_and_digest() -> None:
    d = [bytes([i]) * 32 for i in range(1, 5)]
    led = _ledger_bundle([_row(10, "gw-b", 1, ZERO, d[0], 1000),
                          _row(11, "gw-a", 1, ZERO, d[1], 2000),
                          _row(12, "gw-a", 2, d[1], d[2], 3000),
                          _row(12, "gw-a", 3, d[2], d[3], 4000)])  # fmt: skip
    assert led.n == 4
    assert led.gateways == ["e/p1/gw-a", "e/p1/gw-b"]  # codes in the names' order
    assert led.batch(0) == ledger.Batch(10, "e/p1/gw-b", "gw-b", 1, 1,
                                        offline_trust._ms_time(960),
                                        offline_trust._ms_time(1000), 2, ZERO,
                                        d[0], bytes(64), 1, "period")  # fmt: skip
    # a batch id given twice: the last row, as a dict by id keeps it; -1: not held
    assert led.rows_of(np.array([12, 10, 99])).tolist() == [3, 0, -1]
    assert led.with_digest(d[2]) == 2
    assert led.with_digest(ZERO) is None
    assert ledger_columns._Known(led)[d[1]].seq == 1


def test_local_days_follow_the_sites_zone_at_both_ends_of_a_day() -> None:
    zone = ZoneInfo("America/New_York")  # a DST change inside the span
    times = [dt.datetime(2026, 3, 7, 23, 59, 59, 999000, tzinfo=zone),
             dt.datetime(2026, 3, 8, 0, 0, tzinfo=zone),
             dt.datetime(2026, 3, 8, 3, 30, tzinfo=zone),
             dt.datetime(2026, 3, 8, 23, 59, tzinfo=zone),
             dt.datetime(2026, 3, 9, 0, 0, 0, 1000, tzinfo=zone)]  # fmt: skip
    ms = [int(t.timestamp() * 1000) for t in times]
    led = _ledger_bundle([_row(i + 1, "gw", i + 1, ZERO, bytes([i + 1]) * 32, m)
                          for i, m in enumerate(ms)])  # fmt: skip
    days = anchors._local_days(led, {"p1": zone})
    epoch = dt.date(1970, 1, 1)
    assert [epoch + dt.timedelta(days=int(n)) for n in days] == [t.date() for t in times]


def test_the_chain_column_wise_finds_what_check_chain_finds() -> None:
    """Links that hold, a gap, a restart (prev ZERO), a prev naming an earlier batch, a
    prev naming nothing and a seq stored twice: the same findings and notes, worded alike."""
    d = {i: bytes([i]) * 32 for i in range(1, 30)}
    chains = {
        "gw-a": [(1, ZERO, 1), (2, d[1], 2), (3, d[2], 3), (5, d[3], 5), (6, d[5], 6)],  # gap 4
        "gw-b": [(1, ZERO, 11), (2, d[11], 12), (3, ZERO, 13), (4, d[11], 14)],  # restart, order
        "gw-c": [(1, d[29], 21), (2, d[21], 22), (2, d[21], 23), (3, d[28], 24)],  # twice, none
    }
    rows, bid = [], 100
    for gw, links in chains.items():
        for seq, prev, dig in links:
            bid += 1
            rows.append(_row(bid, gw, seq, prev, d[dig], 1_800_000_000_000 + bid * 1000))
    table = pa.Table.from_pylist(
        [dict(zip(bdl.LEDGER_SCHEMA.names, r, strict=True)) for r in rows], bdl.LEDGER_SCHEMA
    )
    series = pa.Table.from_pylist([], bdl.SERIES_SCHEMA)
    files = {"ledger.parquet": bdl._parquet(table), "declarations.json": b"[]",
             "series.parquet": bdl._parquet(series),
             "registry.json": b'{"sites": [], "equipment": [], "meters": []}'}  # fmt: skip
    trust = offline_trust._Trust("e", [], {}, [])
    c = chain._chain({"enterprise": "e"}, files, trust, {})
    led = ledger_columns._Ledger({"enterprise": "e"}, files)
    batches = [led.batch(i) for i in range(led.n)]
    known = {bytes(b.digest): b for b in batches if b.digest is not None}
    want = []
    for gw in sorted({b.gateway for b in batches}):
        want += ledger.check_chain([b for b in batches if b.gateway == gw], known,
                                   ledger.Disclosed([], []))  # fmt: skip
    findings = [f for f in want if f.kind != "note"]
    assert {f.kind for f in findings} == {"gap", "order"}
    got = [r.text_en for r in c.reasons]
    assert [g.split(";")[0] for g in got] == [
        f"{f.where()}: {f.message}".split(";")[0]
        for f in sorted(findings, key=lambda f: f.kind != "gap")
    ]
    assert c.details["notes"] == [f"{f.where()}: {f.message}" for f in want if f.kind == "note"]


@pytest.mark.parametrize("seed", range(6))
def test_the_state_samples_kept_give_the_intervals_of_all_of_them(seed: int) -> None:
    """kpi/columnar.py state_samples_needed: the intervals of the samples it keeps are
    those of every sample, through values held, changed, bad, and silences over the gap."""
    from ingest_server.derive.runs import GAP_AFTER  # noqa: PLC0415
    from ingest_server.kpi.columnar import (  # noqa: PLC0415
        ms_time,
        state_intervals,
        state_samples_needed,
    )

    rng = np.random.default_rng(seed)
    n = 3000
    steps = rng.choice([10_000, 60_000, 400_000, 500_000, 950_000, 2_000_000], n,
                       p=[0.6, 0.2, 0.08, 0.06, 0.04, 0.02])  # fmt: skip
    ts = 1_800_000_000_000 + np.cumsum(steps)
    values = np.array(["RUNNING", "IDLE", "DOWN", "OFF", "weird", None], dtype=object)
    hold = np.cumsum(rng.random(n) < 0.05)
    code = rng.integers(0, len(values), hold[-1] + 1)[hold]
    code = np.where(rng.random(n) < 0.01, len(values) - 1, code)  # a bad one now and then
    start, end = ms_time(int(ts[40])), ms_time(int(ts[-40]))
    lo = int(np.searchsorted(ts, ts[40])) - 1
    hi = int(np.searchsorted(ts, ts[-40]))

    def intervals(at: np.ndarray) -> list[Any]:
        rows = [(1, ms_time(int(ts[i])), values[code[i]]) for i in at]
        return state_intervals(rows, {1: "machine_state"}, ms_time(int(ts[hi])), start, end)

    window = np.arange(lo, hi)
    keep = state_samples_needed(ts[lo:hi], np.where(code[lo:hi] == 5, -1, code[lo:hi]),
                                GAP_AFTER.total_seconds())  # fmt: skip
    assert 0 < keep.sum() < len(keep) * 0.6  # it drops many
    assert intervals(window[keep]) == intervals(window)


@pytest.mark.parametrize("seed", range(4))
def test_coded_columns_give_prepares_digests(seed: int) -> None:
    """batch_columns.prepare_columns (codes: the offline verifier's) and prepare (a table
    of strings) give every batch the same digest, and refuse the same batches: nulls,
    statuses (empty ones too), a NaN, a quality out of range, a text equal to a status."""
    from ingest_server.evidence import batch_columns as bc  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    n = 4000
    batch = np.sort(rng.integers(0, 120, n))
    devices = np.array(["d1", "d2", "设备3", None], dtype=object)[
        rng.choice(4, n, p=[0.45, 0.3, 0.24, 0.01])
    ]
    tags = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)]
    is_text = rng.random(n) < 0.3
    texts = np.array(["RUNNING", "IDLE", "ok", ""], dtype=object)[rng.integers(0, 4, n)]
    value = rng.normal(size=n)
    value[rng.random(n) < 0.005] = np.nan
    status = np.array([None, None, None, "ok", "", "late"], dtype=object)[rng.integers(0, 6, n)]
    quality = rng.choice([0, 1, 2, 3], n, p=[0.7, 0.15, 0.145, 0.005])
    table = pa.table({
        "batch_id": pa.array(batch, pa.int64()), "device": pa.array(devices, pa.string()),
        "tag": pa.array(tags, pa.string()), "ts": pa.array(np.arange(n) * 1000, pa.int64()),
        "value": pa.array(np.where(is_text | (rng.random(n) < 0.02), None, value),
                          pa.float64()),
        "text": pa.array(np.where(is_text, texts, None), pa.string()),
        "quality": pa.array(quality, pa.int8()), "status": pa.array(status, pa.string()),
    })  # fmt: skip
    a = bc.prepare(table)
    code, entries = bc.pair_entries(list(devices), list(tags))
    strings = sorted({x for x in [*texts, *status] if x is not None})
    at = {x: i for i, x in enumerate(strings)}
    b = bc.prepare_columns(bc.Columns(
        batch_id=batch.astype(np.int64), pair=code, pairs=entries, ts=np.arange(n) * 1000,
        ts_ok=np.ones(n, bool),
        value=pc.fill_null(table["value"], 0.0).to_numpy(zero_copy_only=False),
        value_ok=table["value"].is_valid().to_numpy(zero_copy_only=False),
        text=np.array([at[x] if x is not None else -1 for x in table["text"].to_pylist()]),
        status=np.array([at[x] if x is not None else -1 for x in status]), strings=strings,
        quality=quality.astype(np.int64)))  # fmt: skip
    assert a.batch_ids.tolist() == b.batch_ids.tolist()
    assert a.bad == b.bad
    assert a.bad  # some refused, so the comparison below is of the others
    for i in range(len(a.batch_ids)):
        if int(a.batch_ids[i]) in a.bad:
            continue
        head = {"gw": "gw-1", "boot": 1, "seq": i + 1, "prev": ZERO}
        assert a.digest(i, **head) == b.digest(i, **head)
