"""The evidence bundle's Parquet members: their schemas, and how they are written (zstd;
the samples' encodings, and their row groups each over its own range of batch ids, so
that a verifier checks a row group's batches alone: docs/evidence-verify.md, "Speed").
The samples are written as they are fetched (`_write_samples`), a row group at a time,
never all in memory (bundle.py fetches them).
"""

from __future__ import annotations

import bisect
import hashlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]

ZSTD_LEVEL = 9  # within a few % of 19 on samples, several times faster
# the samples' Parquet: ts and batch_pos change by little from row to row; series, texts,
# statuses and batch ids repeat; doubles compress best split into byte planes
_SAMPLE_ENCODING = {"ts": "DELTA_BINARY_PACKED", "batch_pos": "DELTA_BINARY_PACKED",
                    "value": "BYTE_STREAM_SPLIT"}  # fmt: skip
_SAMPLE_DICTIONARY = ["series_id", "text", "quality", "status", "batch_id", "reason"]
SAMPLE_SCHEMA = pa.schema([
    ("series_id", pa.int32()), ("ts", pa.int64()), ("value", pa.float64()),
    ("text", pa.string()), ("quality", pa.int8()), ("status", pa.string()),
    ("batch_id", pa.int64()), ("batch_pos", pa.int32()),
])  # fmt: skip
ASIDE_SCHEMA = SAMPLE_SCHEMA.append(pa.field("reason", pa.int8()))
SERIES_SCHEMA = pa.schema([
    ("series_id", pa.int32()), ("site", pa.string()), ("gateway", pa.string()),
    ("device", pa.string()), ("tag", pa.string()), ("role", pa.string()),
    ("unit", pa.string()), ("data_type", pa.string()), ("scale", pa.float64()),
    ("offset", pa.float64()), ("wrap", pa.float64()),
])  # fmt: skip
LEDGER_SCHEMA = pa.schema([
    ("batch_id", pa.int64()), ("site", pa.string()), ("gateway", pa.string()),
    ("boot", pa.int32()), ("seq", pa.int64()), ("sent", pa.int64()),
    ("received_at", pa.int64()), ("contract", pa.int8()), ("prev", pa.binary(32)),
    ("digest", pa.binary(32)), ("signature", pa.binary(64)), ("n_total", pa.int32()),
    ("samples", pa.int32()), ("rejected", pa.int32()), ("role", pa.string()),
    ("complete", pa.bool_()),
])  # fmt: skip
LEAF_SCHEMA = pa.schema([
    ("day", pa.date32()), ("index", pa.int32()), ("site", pa.string()),
    ("gateway", pa.string()), ("boot", pa.int32()), ("seq", pa.int64()),
    ("digest", pa.binary(32)),
])  # fmt: skip


def _parquet(table: pa.Table, **options: Any) -> bytes:
    # pyarrow's own buffer, never a Python file object: with one, arrow may still be
    # tidying up on a worker thread when the interpreter exits (apache/arrow#33975)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=ZSTD_LEVEL, **options)
    return bytes(sink.getvalue())


SAMPLE_ROW_GROUP = 1 << 20  # rows; a row group of samples spans its own batches


class _HashingFile(io.RawIOBase):
    """A file written through, its SHA-256 and size kept on the way (the manifest's)."""

    def __init__(self, f: io.BufferedWriter) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        self._f.write(b)
        self.sha256.update(b)
        self.size += len(b)
        return len(b)

    def tell(self) -> int:
        return self.size


_BY_KEY = [("series_id", "ascending"), ("ts", "ascending")]


def _rows_table(rows: Sequence[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    """Fetched rows as `schema`'s columns, but ts in microseconds (exact: the sort key;
    `_ms_ts` makes it the bundle's ms, floored as ledger.ts_ms does)."""
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [
        pa.array(col, pa.timestamp("us", "UTC")).cast(pa.int64())
        if f.name == "ts" else pa.array(col, type=f.type)
        for f, col in zip(schema, cols, strict=True)
    ]  # fmt: skip
    return pa.Table.from_arrays(arrays, schema=schema)


def _ms_ts(table: pa.Table) -> pa.Table:
    i = table.schema.get_field_index("ts")
    ms = np.floor_divide(table.column(i).to_numpy(), 1000)
    return table.set_column(i, "ts", pa.array(ms, pa.int64()))


def _merged(chunks: Iterator[pa.Table], extra: pa.Table) -> Iterator[pa.Table]:
    """`chunks` (by (series_id, ts)) with the few `extra` rows (the same order, none of
    them in `chunks`) put in their places."""
    keys = list(zip(extra["series_id"].to_pylist(), extra["ts"].to_pylist(), strict=True))
    i = 0
    for chunk in chunks:
        if not chunk.num_rows:
            continue
        last = (chunk["series_id"][-1].as_py(), chunk["ts"][-1].as_py())
        j = bisect.bisect_right(keys, last, lo=i)
        if j > i:
            yield pa.concat_tables([chunk, extra.slice(i, j - i)]).sort_by(_BY_KEY)
            i = j
        else:
            yield chunk
    if i < len(keys):
        yield extra.slice(i)


def _group_plan(
    counts: Sequence[tuple[int | None, int]],
) -> list[tuple[tuple[int, int] | None, int]]:
    """The row groups' batch ranges and rows, as `batch_groups` cuts them: the v1 samples
    (None) first, then consecutive batch ids (`counts` by id), a batch in the group where
    its first sample falls."""
    out: list[tuple[tuple[int, int] | None, int]] = []
    v1 = sum(n for b, n in counts if b is None)
    if v1:
        out.append((None, v1))
    start, group = 0, -1
    for b, n in counts:
        if b is None:
            continue
        if start // SAMPLE_ROW_GROUP != group:
            group = start // SAMPLE_ROW_GROUP
            out.append(((b, b), 0))
        (first, _), rows = out[-1]  # type: ignore[misc]
        out[-1] = ((first, b), rows + n)
        start += n
    return out


def _write_samples(
    path: Path,
    schema: pa.Schema,
    groups: Sequence[tuple[tuple[int, int] | None, int]],
    fetch: Any,  # Callable[[range or None], Iterator[pa.Table]] (µs ts, by key)
) -> tuple[str, int, int]:
    """The samples' Parquet at `path`, as `samples_parquet` writes it, from each group's
    tables in order (`fetch`): a row group each SAMPLE_ROW_GROUP rows of a batch group.
    Holds at most one row group and one fetch. Returns (SHA-256 hex, bytes, rows)."""
    total = 0
    with open(path, "wb") as f:
        sink = _HashingFile(f)
        with sample_writer(sink, schema) as w:
            for batches, _rows in groups:
                pending: list[pa.Table] = []
                held = 0
                for t in fetch(batches):
                    pending.append(t)
                    held += t.num_rows
                    while held >= SAMPLE_ROW_GROUP:
                        table = pa.concat_tables(pending)
                        w.write_table(_ms_ts(table.slice(0, SAMPLE_ROW_GROUP)),
                                      row_group_size=SAMPLE_ROW_GROUP)  # fmt: skip
                        pending = [table.slice(SAMPLE_ROW_GROUP)]
                        held -= SAMPLE_ROW_GROUP
                        total += SAMPLE_ROW_GROUP
                if held:
                    w.write_table(
                        _ms_ts(pa.concat_tables(pending)), row_group_size=SAMPLE_ROW_GROUP
                    )
                    total += held
            if not total:  # two empty row groups, as samples_parquet writes no rows
                w.write_table(schema.empty_table())
                w.write_table(schema.empty_table())
    return sink.sha256.hexdigest(), sink.size, total


def sample_writer(sink: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """The samples' Parquet writer: each series' times and values run on smoothly, which
    the encodings above turn into a few bits a sample (docs/evidence.md)."""
    return pq.ParquetWriter(
        sink, schema, compression="zstd", compression_level=ZSTD_LEVEL,
        use_dictionary=[c for c in _SAMPLE_DICTIONARY if c in schema.names],
        column_encoding=_SAMPLE_ENCODING,
    )  # fmt: skip


def batch_groups(batch_id: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Each row's row group: v1 samples (no batch) first (-1), then consecutive ranges of
    batch ids of about SAMPLE_ROW_GROUP samples each, so that a verifier checks a row
    group's batches alone (offline/digests.py `_plan`) with a bounded working set."""
    ids = pa.chunked_array([batch_id]) if isinstance(batch_id, pa.Array) else batch_id
    values = ids.fill_null(np.iinfo(np.int64).min).to_numpy()
    valid = ids.is_valid().to_numpy()
    distinct, counts = np.unique(values[valid], return_counts=True)
    group_of = (np.cumsum(counts) - counts) // SAMPLE_ROW_GROUP
    out = np.full(len(values), -1, np.int64)
    out[valid] = group_of[np.searchsorted(distinct, values[valid])]
    return out


def samples_parquet(table: pa.Table) -> bytes:
    """The samples' Parquet: rows in (batch group, series_id, ts) order, one row group a
    batch group (batch_groups; the stable sort keeps `table`'s (series_id, ts) order
    within each), so the verifier streams them (docs/evidence-verify.md, "Speed")."""
    groups = batch_groups(table["batch_id"])
    order = np.argsort(groups, kind="stable")
    table, groups = table.take(pa.array(order)), groups[order]
    cuts = np.flatnonzero(np.diff(groups)) + 1
    sink = pa.BufferOutputStream()  # not a Python file object (`_parquet`)
    with sample_writer(sink, table.schema) as w:
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(groups)], strict=True):
            w.write_table(table.slice(int(lo), int(hi - lo)), row_group_size=SAMPLE_ROW_GROUP)
        if not len(groups):
            w.write_table(table)
    return bytes(sink.getvalue())
