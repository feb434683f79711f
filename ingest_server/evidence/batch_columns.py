"""Contract v2 batch digests column-wise: every batch of a sample table at once
(issue 17, "Fast"; the digest is edge_agent/contract/digest.py's `batch_digest`, byte for
byte, docs/mqtt.md).

    rows sorted by (batch_id, batch_pos): batch_id device tag ts value text quality status
      --prepare--> per row its 26-byte big-endian record (one numpy structured array),
                   per batch its series and text tables (distinct entries in order of
                   first appearance, ranked by sort/unique, their bytes gathered at once)
      --digest---> per batch: SHA-256 over header + tables + count + its records' slice

The per-row work is numpy and pyarrow compute; what is left per batch is its header and
three hashlib updates over memoryview slices. `prepare` does not need the batches' headers
(their `prev` is the previous batch's digest: the gateway's chain, which a writer of
batches learns one batch at a time), `digest` takes one. A batch holding a row the digest
refuses (no device or tag, a quality outside 0-2, a NaN or infinite number, an id over
65535 bytes) gets no digest here (`Prepared.bad`): the caller walks it with `batch_digest`,
which names the sample and field.

Pure: pyarrow and numpy, no database.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

MAGIC = b"fe/v2/batch\x00"  # edge_agent.contract.digest.MAGIC
NO_STATUS = 0xFFFFFFFF
KIND_NULL, KIND_NUMBER, KIND_TEXT = 0, 1, 2
COLUMNS = ["batch_id", "device", "tag", "ts", "value", "text", "quality", "status"]
RECORD = np.dtype([("series", ">u4"), ("ts", ">i8"), ("quality", "u1"), ("kind", "u1"),
                   ("status", ">u4"), ("value", ">u8")])  # fmt: skip
assert RECORD.itemsize == 26
_U16, _U32 = 0xFFFF, 0xFFFFFFFF
_HEAD = struct.Struct(">IQ32s")
_COUNT = struct.Struct(">I")


@dataclass(frozen=True)
class Prepared:
    """Every batch of a table, ready to hash: batch i is rows starts[i]:starts[i+1]."""

    batch_ids: np.ndarray  # int64, ascending, distinct
    starts: np.ndarray  # int64, len(batch_ids) + 1
    records: memoryview  # 26 bytes a row, the rows' order
    series: np.ndarray  # every batch's series table entries (codes of `pairs`), in turn
    series_at: np.ndarray  # entry offsets into `series`, len(batch_ids) + 1
    series_n: np.ndarray  # entries per batch
    pairs: list[bytes]  # each series' entry: device, tag (each u16 length + UTF-8)
    texts: memoryview
    texts_at: np.ndarray
    texts_n: np.ndarray
    bad: frozenset[int]  # batch ids with a row the digest refuses: walk them slowly
    _tables: dict[bytes, bytes] = field(default_factory=dict)  # a gateway's batches repeat

    def _series_table(self, i: int) -> bytes:
        codes = self.series[int(self.series_at[i]) : int(self.series_at[i + 1])]
        key = codes.tobytes()
        table = self._tables.get(key)
        if table is None:
            pairs = self.pairs
            table = b"".join([pairs[c] for c in codes.tolist()])
            if len(self._tables) < 4096:
                self._tables[key] = table
        return table

    def index(self) -> dict[int, int]:
        return {int(b): i for i, b in enumerate(self.batch_ids.tolist())}

    def digest(self, i: int, *, gw: str, boot: int, seq: int, prev: bytes) -> bytes:
        """Batch i's digest under this header (`batch_digest`'s)."""
        raw = gw.encode()
        if len(raw) > _U16 or len(prev) != 32 or not 0 <= boot <= _U32:
            raise ValueError(f"gw, boot or prev out of range for batch {self.batch_ids[i]}")
        lo, hi = int(self.starts[i]), int(self.starts[i + 1])
        h = hashlib.sha256(MAGIC + struct.pack(">H", len(raw)) + raw
                           + _HEAD.pack(boot, seq, bytes(prev)))  # fmt: skip
        h.update(_COUNT.pack(int(self.series_n[i])))
        h.update(self._series_table(i))
        h.update(_COUNT.pack(int(self.texts_n[i])))
        h.update(self.texts[int(self.texts_at[i]) : int(self.texts_at[i + 1])])
        h.update(_COUNT.pack(hi - lo))
        h.update(self.records[lo * 26 : hi * 26])
        return h.digest()


def empty_digest(*, gw: str, boot: int, seq: int, prev: bytes) -> bytes:
    """The digest of a batch without samples."""
    return _empty().digest(0, gw=gw, boot=boot, seq=seq, prev=prev)


def _empty() -> Prepared:
    z = np.zeros(2, np.int64)
    n = np.zeros(1, np.int64)
    e = memoryview(b"")
    return Prepared(np.zeros(1, np.int64), z, e, n[:0], z, n, [], e, z, n, frozenset())


def _first_ranks(group: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For events in order, each the `code` of an entry in batch `group` (ascending): the
    rank of its code among the batch's distinct codes in order of first appearance, and
    the distinct (group, code) entries' event index of first appearance, in table order."""
    n = len(code)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    span = int(code.max()) - int(code.min()) + 1
    if int(group.max()) < (1 << 62) // span:  # one int64 key: a faster stable sort
        order = np.argsort(group * span + (code - int(code.min())), kind="stable")
    else:
        order = np.lexsort((code, group))  # stable: within a (group, code), event order
    g, c = group[order], code[order]
    new = np.empty(n, bool)
    new[0] = True
    new[1:] = (g[1:] != g[:-1]) | (c[1:] != c[:-1])
    entry_of_sorted = np.cumsum(new) - 1
    first = order[new]  # each entry's first event
    by_first = np.argsort(first, kind="stable")  # table order: groups ascend with events
    first_sorted = first[by_first]
    eg = group[first_sorted]
    gstart = np.flatnonzero(np.r_[True, eg[1:] != eg[:-1]])
    counts = np.diff(np.r_[gstart, len(eg)])
    rank_sorted = np.arange(len(eg)) - np.repeat(gstart, counts)
    rank_of_entry = np.empty(len(eg), np.int64)
    rank_of_entry[by_first] = rank_sorted
    ranks = np.empty(n, np.int64)
    ranks[order] = rank_of_entry[entry_of_sorted]
    return ranks, first_sorted


def _gather(blob: bytes, offsets: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The bytes of entries `codes` (each blob[offsets[c]:offsets[c+1]]) concatenated."""
    lengths = (offsets[1:] - offsets[:-1])[codes]
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    out_at = np.cumsum(lengths) - lengths
    idx = np.repeat(offsets[:-1][codes] - out_at, lengths) + np.arange(total)
    return np.frombuffer(blob, np.uint8)[idx]


def _encoded(strings: list[str], width: str) -> tuple[bytes, np.ndarray, np.ndarray]:
    """Each string as a length (u16 `>H` or u32 `>I`) + UTF-8; their offsets; whether
    each can be encoded (UTF-8, within the length's range)."""
    parts, ok, top = [], np.ones(len(strings), bool), _U16 if width == ">H" else _U32
    pack = struct.Struct(width).pack
    for i, s in enumerate(strings):
        try:
            raw = s.encode()
        except UnicodeEncodeError:
            raw = b""
            ok[i] = False
        if len(raw) > top:
            raw = b""
            ok[i] = False
        parts.append(pack(len(raw)) + raw)
    offsets = np.zeros(len(parts) + 2, np.int64)  # and an empty entry at len(strings)
    offsets[1:-1] = np.cumsum([len(p) for p in parts], dtype=np.int64)
    offsets[-1] = offsets[-2]
    return b"".join(parts), offsets, np.r_[ok, False]


def _codes(array: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Dictionary codes of a string column (-1 null) and its distinct strings."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    enc = pc.dictionary_encode(array)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    valid = enc.is_valid().to_numpy(zero_copy_only=False)
    codes = np.where(valid, np.nan_to_num(idx.astype(float), nan=-1), -1).astype(np.int64)
    return codes, enc.dictionary.to_pylist(), valid


def _column(rows: pa.Table, name: str) -> pa.Array:
    col = rows[name]
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def prepare(rows: pa.Table) -> Prepared:
    """Every batch of `rows` (COLUMNS, sorted by (batch_id, batch_pos), no null batch_id)."""
    n = rows.num_rows
    bid = _column(rows, "batch_id").to_numpy(zero_copy_only=False).astype(np.int64)
    bstart = np.flatnonzero(np.r_[True, bid[1:] != bid[:-1]]) if n else np.zeros(0, np.int64)
    batch_ids = bid[bstart]
    starts = np.r_[bstart, n].astype(np.int64)
    group = np.repeat(np.arange(len(bstart)), np.diff(starts))
    bad = np.zeros(n, bool)
    s_rank, series, series_at, series_n, pairs = _series(rows, group, len(bstart), bad)
    text_index, status_index, is_text, texts, texts_at, texts_n = _texts(
        rows, group, len(bstart), bad
    )
    rec = _records(rows, s_rank, text_index, status_index, is_text, bad)
    return Prepared(
        batch_ids, starts, _bytes(rec.view(np.uint8)), series, series_at, series_n, pairs,
        _bytes(texts), texts_at, texts_n,
        frozenset(np.unique(bid[bad]).tolist()),
    )  # fmt: skip


def _series(
    rows: pa.Table, group: np.ndarray, n_batches: int, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[bytes]]:
    """Each row's series index, and the batches' series tables: (device, tag) pairs
    ranked per batch by first appearance, as codes of the distinct pairs' encodings.
    Marks in `bad` the rows the digest refuses."""
    dev, devs, dev_ok = _codes(_column(rows, "device"))
    tag, tags, tag_ok = _codes(_column(rows, "tag"))
    bad |= ~dev_ok | ~tag_ok
    _, _, dev_fit = _encoded(devs, ">H")
    _, _, tag_fit = _encoded(tags, ">H")
    dev = np.where(dev < 0, len(devs), dev)  # a null: the empty entry appended to each
    tag = np.where(tag < 0, len(tags), tag)
    bad |= ~dev_fit[dev] | ~tag_fit[tag]  # over 65535 bytes, or not UTF-8: the slow way
    pair = np.where(bad, -1, dev * (len(tags) + 1) + tag)
    s_rank, s_first = _first_ranks(group, pair)
    distinct, entries = np.unique(pair[s_first], return_inverse=True)
    pairs = []
    for p in distinct.tolist():
        if p < 0:
            pairs.append(b"")  # a refused row's entry: its batch is walked slowly
            continue
        d, t = divmod(p, len(tags) + 1)
        pairs.append(_id(devs[d]) + _id(tags[t]))
    s_group = group[s_first]
    series_n = np.bincount(s_group, minlength=n_batches).astype(np.int64)
    series_at = np.zeros(n_batches + 1, np.int64)
    series_at[1:] = np.cumsum(series_n)
    return s_rank, entries.astype(np.int32).ravel(), series_at, series_n, pairs


def _id(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _texts(
    rows: pa.Table, group: np.ndarray, n_batches: int, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's text and status index, whether it is a text, and the batches' text
    tables: a text value, then its status when it has one, in row order."""
    n = rows.num_rows
    text_col, status_col = _column(rows, "text"), _column(rows, "status")
    both, strings, both_ok = _codes(pa.concat_arrays([text_col.cast(pa.string()),
                                                      status_col.cast(pa.string())]))  # fmt: skip
    both = np.where(both < 0, len(strings), both)
    t_code, st_code = both[:n], both[n:]
    t_ok, st_ok = both_ok[:n], both_ok[n:]
    text_index, status_index, texts, texts_at, texts_n = _text_tables(
        strings, t_code, st_code, t_ok, st_ok, group, n_batches, bad
    )
    return text_index, status_index, t_ok, texts, texts_at, texts_n


def _text_tables(  # noqa: PLR0917 (the two preparations' columns, positionally)
    strings: list[str],
    t_code: np.ndarray,
    st_code: np.ndarray,
    t_ok: np.ndarray,
    st_ok: np.ndarray,
    group: np.ndarray,
    n_batches: int,
    bad: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each row's text and status index and the batches' text tables (a text value, then
    its status when it has one and it is not empty, in row order), from the rows' codes
    into `strings` (len(strings): none). Rows with a text the digest refuses go in `bad`."""
    n = len(t_code)
    empty = np.array([s == "" for s in strings] + [True], bool)
    st_ok = st_ok & ~empty[st_code]
    ev_row = np.r_[np.flatnonzero(t_ok), np.flatnonzero(st_ok)]
    ev_slot = np.r_[np.zeros(int(t_ok.sum()), np.int64), np.ones(int(st_ok.sum()), np.int64)]
    ev_order = np.argsort(ev_row * 2 + ev_slot, kind="stable")
    ev_row, ev_slot = ev_row[ev_order], ev_slot[ev_order]
    ev_code = np.where(ev_slot == 0, t_code[ev_row], st_code[ev_row])
    x_rank, x_first = _first_ranks(group[ev_row], ev_code)
    txt_blob, txt_at, txt_fit = _encoded(strings, ">I")
    if not txt_fit.all():
        bad[ev_row[~txt_fit[ev_code]]] = True
    x_codes = ev_code[x_first]
    texts = _gather(txt_blob, txt_at, x_codes)
    x_group = group[ev_row[x_first]]
    texts_n = np.bincount(x_group, minlength=n_batches).astype(np.int64)
    texts_at = _batch_offsets(x_group, (txt_at[1:] - txt_at[:-1])[x_codes], n_batches)
    text_index = np.zeros(n, np.int64)
    status_index = np.full(n, NO_STATUS, np.int64)
    text_index[ev_row[ev_slot == 0]] = x_rank[ev_slot == 0]
    status_index[ev_row[ev_slot == 1]] = x_rank[ev_slot == 1]
    return text_index, status_index, texts, texts_at, texts_n


def _records(  # noqa: PLR0917 (one caller; the columns prepare has built)
    rows: pa.Table,
    s_rank: np.ndarray,
    text_index: np.ndarray,
    status_index: np.ndarray,
    t_ok: np.ndarray,
    bad: np.ndarray,
) -> np.ndarray:
    """Each row's 26-byte record; marks in `bad` a NaN or infinite number, a quality
    outside 0-2 and a null time."""
    n = rows.num_rows
    value = _column(rows, "value")
    v_ok = value.is_valid().to_numpy(zero_copy_only=False)
    v = value.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
    kind = np.where(t_ok, KIND_TEXT, np.where(v_ok, KIND_NUMBER, KIND_NULL)).astype(np.uint8)
    bad |= (kind == KIND_NUMBER) & ~np.isfinite(v)
    quality = _column(rows, "quality").to_numpy(zero_copy_only=False)
    q_bad = ~np.isin(quality, (0, 1, 2)) if n else np.zeros(0, bool)
    if _column(rows, "quality").null_count:
        q_bad |= ~_column(rows, "quality").is_valid().to_numpy(zero_copy_only=False)
    bad |= q_bad
    ts = _column(rows, "ts")
    bad |= ~ts.is_valid().to_numpy(zero_copy_only=False)
    rec = np.zeros(n, RECORD)
    rec["series"] = s_rank
    rec["ts"] = ts.fill_null(0).to_numpy(zero_copy_only=False)
    rec["quality"] = np.where(q_bad, 0, np.nan_to_num(quality.astype(float))).astype(np.uint8)
    rec["kind"] = kind
    rec["status"] = status_index
    bits = np.where(np.isfinite(v), v, 0.0).view(np.uint64)
    rec["value"] = np.where(kind == KIND_TEXT, text_index.astype(np.uint64),
                            np.where(kind == KIND_NUMBER, bits, np.uint64(0)))  # fmt: skip
    return rec


def _bytes(array: np.ndarray) -> memoryview:
    """A contiguous uint8 array's bytes, not copied."""
    return memoryview(array.data).cast("B")


def _within(lengths: np.ndarray) -> np.ndarray:
    """0..len-1 for each length, concatenated."""
    total = int(lengths.sum())
    out: np.ndarray = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return out


def _batch_offsets(entry_group: np.ndarray, entry_bytes: np.ndarray, n_batches: int) -> np.ndarray:
    """Byte offsets of each batch's entries (entries in batch order)."""
    per = np.bincount(entry_group, weights=entry_bytes, minlength=n_batches)
    out = np.zeros(n_batches + 1, np.int64)
    out[1:] = np.cumsum(per.astype(np.int64))
    return out


@dataclass(frozen=True)
class Columns:
    """A table's rows as arrays, in (batch_id, batch_pos) order, with its strings coded
    (`prepare_columns`): what a caller that holds codes already (the offline verifier:
    a series id for the device and tag, the Parquet's dictionary for the texts) hands
    over instead of a table of strings."""

    batch_id: np.ndarray  # int64
    pair: np.ndarray  # int64: the row's (device, tag) entry in `pairs`, -1 when refused
    pairs: list[bytes]  # each entry: device, tag (each u16 length + UTF-8)
    ts: np.ndarray  # int64 ms (0 where null)
    ts_ok: np.ndarray  # bool
    value: np.ndarray  # float64 (0 where null)
    value_ok: np.ndarray  # bool
    text: np.ndarray  # int64: code in `strings`, -1 null
    status: np.ndarray  # int64: code in `strings`, -1 null
    strings: list[str]  # distinct
    quality: np.ndarray  # int64 (-1 where null)


def prepare_columns(c: Columns) -> Prepared:
    """`prepare` over coded columns: the same batches, byte for byte (the tests hold the
    two to `batch_digest`)."""
    n = len(c.batch_id)
    bid = c.batch_id
    bstart = np.flatnonzero(np.r_[True, bid[1:] != bid[:-1]]) if n else np.zeros(0, np.int64)
    batch_ids = bid[bstart]
    starts = np.r_[bstart, n].astype(np.int64)
    nb = len(bstart)
    group = np.repeat(np.arange(nb), np.diff(starts))
    bad = c.pair < 0
    # the series tables
    s_rank, s_first = _first_ranks(group, c.pair)
    distinct, entries = np.unique(c.pair[s_first], return_inverse=True)
    pairs = [b"" if p < 0 else c.pairs[p] for p in distinct.tolist()]
    series_n = np.bincount(group[s_first], minlength=nb).astype(np.int64)
    series_at = np.zeros(nb + 1, np.int64)
    series_at[1:] = np.cumsum(series_n)
    # the text tables: a text value, then its status when it has one (not empty)
    strings = c.strings
    k = len(strings)
    t_code = np.where(c.text < 0, k, c.text)
    st_code = np.where(c.status < 0, k, c.status)
    t_ok = c.text >= 0
    text_index, status_index, texts, texts_at, texts_n = _text_tables(
        strings, t_code, st_code, t_ok, c.status >= 0, group, nb, bad
    )
    # the records
    v = np.where(c.value_ok, c.value, 0.0).astype(np.float64)
    kind = np.where(t_ok, KIND_TEXT, np.where(c.value_ok, KIND_NUMBER, KIND_NULL)).astype(np.uint8)
    bad |= (kind == KIND_NUMBER) & ~np.isfinite(v)
    q_bad = (c.quality < 0) | (c.quality > 2)
    bad |= q_bad | ~c.ts_ok
    rec = np.zeros(n, RECORD)
    rec["series"] = s_rank
    rec["ts"] = np.where(c.ts_ok, c.ts, 0)
    rec["quality"] = np.where(q_bad, 0, c.quality).astype(np.uint8)
    rec["kind"] = kind
    rec["status"] = status_index
    bits = np.where(np.isfinite(v), v, 0.0).view(np.uint64)
    rec["value"] = np.where(kind == KIND_TEXT, text_index.astype(np.uint64),
                            np.where(kind == KIND_NUMBER, bits, np.uint64(0)))  # fmt: skip
    return Prepared(
        batch_ids, starts, _bytes(rec.view(np.uint8)), entries.astype(np.int32).ravel(),
        series_at, series_n, pairs, _bytes(texts), texts_at, texts_n,
        frozenset(np.unique(bid[bad]).tolist()),
    )  # fmt: skip


def pair_entries(
    devices: list[str | None], tags: list[str | None]
) -> tuple[np.ndarray, list[bytes]]:
    """Each series' (device, tag) entry code, -1 when the digest refuses it (no device or
    tag, over 65535 bytes, not UTF-8), and the distinct entries' bytes."""
    code = np.full(len(devices), -1, np.int64)
    seen: dict[bytes, int] = {}
    for i, (d, t) in enumerate(zip(devices, tags, strict=True)):
        if d is None or t is None:
            continue
        try:
            raw_d, raw_t = d.encode(), t.encode()
        except UnicodeEncodeError:
            continue
        if len(raw_d) > _U16 or len(raw_t) > _U16:
            continue
        entry = struct.pack(">H", len(raw_d)) + raw_d + struct.pack(">H", len(raw_t)) + raw_t
        code[i] = seen.setdefault(entry, len(seen))
    return code, list(seen)
