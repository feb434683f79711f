"""Every bundled v2 batch's digest recomputed column-wise from the bundle's samples
(batch_columns), a part of about _PART_ROWS samples at a time (`_plan`); the batches that
fail, with their samples as the ledger check's `StoredSample`s for the walk.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from ingest_server.evidence import batch_columns, ledger
from ingest_server.evidence.offline.ledger_columns import _Ledger
from ingest_server.evidence.offline.members import _parquet, _row_groups, _table
from ingest_server.evidence.offline.trust import _ms_time

_SAMPLE_COLUMNS = ["series_id", "ts", "value", "text", "quality", "status", "batch_id",
                   "batch_pos"]  # fmt: skip
_SAMPLE_MEMBERS = ("samples.parquet", "samples_aside.parquet")
_PART_ROWS = 4 << 20  # samples the batch check holds at once, about 0.4 GB with their records
_I64 = (-(1 << 63), (1 << 63) - 1)


@dataclass
class _Part:
    """A range of batch ids and the row groups (member, index) holding its samples."""

    lo: int
    hi: int
    rows: int
    groups: list[tuple[str, int]]


def _plan(files: Mapping[str, bytes], led: _Ledger) -> list[_Part]:
    """Ranges of batch ids whose samples are checked together, each about _PART_ROWS
    samples. Every row group's batch ids are read (not its statistics, which the bundle's
    maker could have written), and groups whose ranges overlap go into one part: the
    bundle writes each row group over its own range of batches
    (bundle_parquet._write_samples), so a part is a row group or two. Overlapping groups
    (a bundle sorted otherwise) make a large part, cut by the ledger's batch sizes and its
    row groups read once a cut."""
    spans: list[tuple[int, int, int, str, int]] = []
    for name in _SAMPLE_MEMBERS:
        for i, ids in enumerate(_row_groups(files, name, ["batch_id"])):
            col = ids["batch_id"]
            if col.null_count == len(col):
                continue  # v1 samples only
            mm = pc.min_max(col)
            spans.append((mm["min"].as_py(), mm["max"].as_py(), len(col), name, i))
    spans.sort()
    merged: list[_Part] = []
    for lo, hi, n, name, i in spans:
        if merged and lo <= merged[-1].hi:
            m = merged[-1]
            m.hi, m.rows = max(m.hi, hi), m.rows + n
            m.groups.append((name, i))
        else:
            merged.append(_Part(lo, hi, n, [(name, i)]))
    order = np.lexsort((np.maximum(led.n_total, 0), led.batch_id))
    ids, sizes = led.batch_id[order], np.maximum(led.n_total, 0)[order]
    parts: list[_Part] = []
    for m in merged:
        if m.rows <= _PART_ROWS:
            parts.append(m)
            continue
        lo, acc = m.lo, 0
        a, b = np.searchsorted(ids, m.lo, "right"), np.searchsorted(ids, m.hi, "right")
        for bid, n in zip(ids[a:b].tolist(), sizes[a:b].tolist(), strict=True):
            if acc + n > _PART_ROWS and acc:
                parts.append(_Part(lo, bid - 1, acc, m.groups))
                lo, acc = bid, 0
            acc += n
        parts.append(_Part(lo, m.hi, acc, m.groups))
    return parts


_SAMPLE_TYPES = {"series_id": pa.int32(), "ts": pa.int64(), "value": pa.float64(),
                 "text": pa.string(), "quality": pa.int8(), "status": pa.string(),
                 "batch_id": pa.int64(), "batch_pos": pa.int32()}  # fmt: skip


def _stored(rows: pa.Table, lo: int, hi: int) -> list[ledger.StoredSample]:
    """Rows lo..hi as the ledger check's samples (the slow walk of one batch)."""
    part = rows.slice(lo, hi - lo)
    cols = [part[n].to_pylist() for n in ("batch_id", "batch_pos", "device", "tag", "ts",
                                          "value", "text", "quality", "status")]  # fmt: skip
    return [ledger.StoredSample(*x) for x in zip(*cols, strict=True)]


def _digests(
    manifest: dict[str, Any], files: Mapping[str, bytes], led: _Ledger
) -> tuple[dict[int, list[ledger.StoredSample]], np.ndarray, list[ledger.Orphans], int]:
    """Each bundled batch's digest recomputed column-wise against its stored one: the
    batches that fail (with their samples, for the walk), the ids of the ledger's
    batches with samples, orphan samples, and the samples recomputed."""
    walk: dict[int, list[ledger.StoredSample]] = {}
    seen: list[np.ndarray] = []
    orphans: list[ledger.Orphans] = []
    recomputed = 0
    series = _table(files, "series.parquet", ["series_id", "site", "gateway", "device", "tag"])
    coded = _Coded(series)
    prefixes = [batch_columns.MAGIC + struct.pack(">H", len(g.encode())) + g.encode()
                for g in led.gw_ids]  # fmt: skip
    # a gateway id the digest's u16 length cannot hold: its batches are walked (named)
    fits = np.array([len(x) - 14 <= 0xFFFF for x in prefixes] + [True], bool)
    ent = manifest["enterprise"]
    for part in _plan(files, led):
        rows, cols = _part_rows(files, part, coded)
        prepared = batch_columns.prepare_columns(cols)
        starts, ids = prepared.starts, prepared.batch_ids
        counts = np.diff(starts)
        pos = rows["batch_pos"]
        want = np.arange(len(pos)) - np.repeat(starts[:-1], counts)
        wrong = np.bincount(np.repeat(np.arange(len(ids)), counts), weights=pos != want,
                            minlength=len(ids))  # fmt: skip
        at = led.rows_of(ids)
        for i in np.flatnonzero(at < 0).tolist():
            lo, hi = int(starts[i]), int(starts[i + 1])
            site, gw = coded.site_gateway(int(rows["series_id"][lo]))
            ts = rows["ts"][lo:hi][rows["ts_ok"][lo:hi]]
            orphans.append(ledger.Orphans(
                f"{ent}/{site}/{gw}", int(ids[i]), hi - lo, _ms_time(int(ts.min())),
                _ms_time(int(ts.max()))))  # fmt: skip
        held = at >= 0
        seen.append(ids[held])
        recomputed += int(counts[held].sum())
        r = np.where(held, at, 0)
        bad = np.isin(ids, np.fromiter(prepared.bad, np.int64, len(prepared.bad)))
        fast = held & ~bad & (wrong == 0) & (counts == led.n_total[r]) & ~led.odd[r]
        fast &= (led.boot[r] >= 0) & (led.boot[r] <= 0xFFFFFFFF) & (led.seq[r] >= 0)
        fast &= fits[led.gw[r]]
        got = _digest_all(prepared, np.flatnonzero(fast), prefixes, led.gw[r], led.boot[r],
                          led.seq[r], led.prev[r])  # fmt: skip
        fast &= (got == led.digest[r]).all(axis=1)
        for i in np.flatnonzero(held & ~fast).tolist():
            lo, hi = int(starts[i]), int(starts[i + 1])
            walk[int(ids[i])] = _stored(_walk_rows(rows, lo, hi, coded), 0, hi - lo)
        del rows, prepared, cols
    return walk, np.concatenate([np.zeros(0, np.int64), *seen]), orphans, recomputed


_HEAD = struct.Struct(">IQ")


def _digest_all(  # noqa: PLR0917 (one caller: the batch columns it has)
    p: batch_columns.Prepared,
    which: np.ndarray,
    prefixes: list[bytes],
    gw: np.ndarray,
    boot: np.ndarray,
    seq: np.ndarray,
    prev: np.ndarray,
) -> np.ndarray:
    """The digests of batches `which` of `p` (zeros elsewhere), under their headers: the
    gateway's prefix (MAGIC, its id), boot, seq and prev. batch_columns' digest, with the
    per-batch work cut to what hashlib needs (each gateway's series table joined once)."""
    out = np.zeros((len(p.batch_ids), 32), np.uint8)
    if not len(which):
        return out
    sha = hashlib.sha256
    count = batch_columns._COUNT.pack
    records, texts, starts = p.records, p.texts, p.starts.tolist()
    texts_at, series_n, texts_n = p.texts_at.tolist(), p.series_n.tolist(), p.texts_n.tolist()
    heads = [prefixes[g] for g in gw.tolist()]
    boots, seqs = boot.tolist(), seq.tolist()
    table = p._series_table
    digests = []
    for i in which.tolist():
        h = sha(heads[i] + _HEAD.pack(boots[i], seqs[i]) + prev[i].tobytes()
                + count(series_n[i]) + table(i) + count(texts_n[i]))  # fmt: skip
        h.update(texts[texts_at[i] : texts_at[i + 1]])
        lo, hi = starts[i], starts[i + 1]
        h.update(count(hi - lo))
        h.update(records[lo * 26 : hi * 26])
        digests.append(h.digest())
    out[which] = np.frombuffer(b"".join(digests), np.uint8).reshape(-1, 32)
    return out


class _Coded:
    """series.parquet as codes: each series id's (device, tag) entry for the digest, and
    its names for a finding."""

    def __init__(self, series: pa.Table) -> None:
        ids = series["series_id"].to_numpy(zero_copy_only=False).astype(np.int64)
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.rows = order
        self.pair, self.pairs = batch_columns.pair_entries(
            series["device"].to_pylist(), series["tag"].to_pylist()
        )
        self.table = series

    def at(self, sid: np.ndarray) -> np.ndarray:
        """Each series id's row in series.parquet, -1 when it is not there."""
        if not len(self.ids):
            return np.full(len(sid), -1, np.int64)
        i = np.minimum(np.searchsorted(self.ids, sid), len(self.ids) - 1)
        return np.where(self.ids[i] == sid, self.rows[i], -1)

    def site_gateway(self, sid: int) -> tuple[Any, Any]:
        r = int(self.at(np.array([sid], np.int64))[0])
        if r < 0:
            return None, None
        return self.table["site"][r].as_py(), self.table["gateway"][r].as_py()


def _codes_of(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """A string column's codes (-1 null) and its distinct strings."""
    enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist()


def _part_rows(
    files: Mapping[str, bytes], part: _Part, coded: _Coded
) -> tuple[dict[str, np.ndarray], batch_columns.Columns]:
    """The bundled samples (both tables) of the batches in `part`'s range as arrays in
    (batch_id, batch_pos) order (a stable sort, as `_batch_samples`), and as the digest's
    coded columns."""
    opened = {n: _parquet(files, n) for n in {n for n, _ in part.groups}}
    chunks = []
    for name, i in part.groups:
        t = opened[name].read_row_group(i, columns=_SAMPLE_COLUMNS)
        ids = t["batch_id"]
        mm = pc.min_max(ids)
        if ids.null_count or mm["min"].as_py() < part.lo or mm["max"].as_py() > part.hi:
            t = t.filter(pc.and_(pc.greater_equal(ids, part.lo), pc.less_equal(ids, part.hi)))
        chunks.append(t)
    if chunks:
        t = pa.concat_tables(chunks)
    else:
        t = pa.schema([pa.field(n, _SAMPLE_TYPES[n]) for n in _SAMPLE_COLUMNS]).empty_table()
    bid = t["batch_id"].to_numpy(zero_copy_only=False).astype(np.int64)
    pos_col = t["batch_pos"]
    if pos_col.null_count:  # not a bundle's: sorted as pyarrow sorts (nulls last)
        order = pc.sort_indices(t, [("batch_id", "ascending"), ("batch_pos", "ascending")])
        order = order.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        pos = pos_col.to_numpy(zero_copy_only=False).astype(np.int64)
        lo = int(bid.min()) if len(bid) else 0
        small = len(bid) and int(bid.max()) - lo < (1 << 31)
        if small and pos.min() >= 0 and pos.max() < (1 << 31):
            order = np.argsort((bid - lo) * (1 << 31) + pos, kind="stable")
        else:
            order = np.lexsort((pos, bid))

    def ints(name: str, fill: int) -> np.ndarray:
        col = pc.fill_null(t[name], fill).to_numpy(zero_copy_only=False)
        out: np.ndarray = col.astype(np.int64)[order]
        return out

    def ok(name: str) -> np.ndarray:
        col = t[name]
        if not col.null_count:
            return np.ones(t.num_rows, bool)
        out: np.ndarray = col.is_valid().to_numpy(zero_copy_only=False)[order]
        return out

    sid = ints("series_id", -1)  # a null: no series (a wrong guess only costs a walk)
    at = coded.at(sid)
    pair = np.where(at >= 0, coded.pair[np.maximum(at, 0)], -1) if len(at) else at
    text, text_strings = _codes_of(t["text"])
    status, status_strings = _codes_of(t["status"])
    strings = list(dict.fromkeys([*text_strings, *status_strings]))
    index = {x: i for i, x in enumerate(strings)}
    remap_t = np.array([index[x] for x in text_strings] + [-1], np.int64)
    remap_s = np.array([index[x] for x in status_strings] + [-1], np.int64)
    rows = {"batch_id": bid[order], "batch_pos": ints("batch_pos", -1), "series_id": sid,
            "ts": ints("ts", 0), "ts_ok": ok("ts"), "table": t, "order": order}  # fmt: skip
    value = pc.fill_null(t["value"], 0.0).to_numpy(zero_copy_only=False)[order]
    cols = batch_columns.Columns(
        batch_id=rows["batch_id"], pair=pair, pairs=coded.pairs, ts=rows["ts"],
        ts_ok=rows["ts_ok"], value=value, value_ok=ok("value"), text=remap_t[text[order]],
        status=remap_s[status[order]], strings=strings, quality=ints("quality", -1),
    )  # fmt: skip
    return rows, cols


def _walk_rows(rows: dict[str, Any], lo: int, hi: int, coded: _Coded) -> pa.Table:
    """Rows lo..hi of a part with their series' device, tag, site and gateway (null when
    the series is not in series.parquet): what `_stored` reads."""
    part = rows["table"].take(pa.array(rows["order"][lo:hi]))
    at = coded.at(rows["series_id"][lo:hi])
    take = pa.array(np.maximum(at, 0))
    for name in ("device", "tag", "site", "gateway"):
        col = pc.take(coded.table[name], take)
        col = pc.if_else(pa.array(at >= 0), col, pa.scalar(None, pa.string()))
        part = part.append_column(name, col)
    return part
