"""Samples to PostgreSQL's binary COPY format, in one pass that also rolls them up.

psycopg's `write_row` converts each value through its dumpers (and would need a
`datetime` per timestamp); here each row is one `struct.pack` into a buffer written to
COPY in block mode, and the same pass collects what the commit needs besides: per series
and hour the rollup (count, good count, sum, min, max, first, last), which also gives each
series' time span for the derived data.

Row layout (the `samples` table): series_id int4, ts timestamptz, value float8, text text,
quality int2, status text, gw_ts timestamptz, server_ts timestamptz, batch_id int8,
batch_pos int4 (both NULL for a v1 sample; a v2 sample's batch and place in it). A
timestamptz is int64 microseconds since 2000-01-01 UTC.

A v2 batch comes as the decoder's columns (`encode_v2`): its good numbers without status
or second clock, nearly all of a plant's samples, are rows of one fixed layout, so they
are one template repeated with four columns written into it by strided copies in C; the
others are packed one at a time as above. The order of rows in COPY does not matter (each
carries its batch_pos).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from itertools import compress
from typing import Any

from edge_agent.contract.wire_v2 import K_INT, PLAIN_NUMBER, QUALITY_OF_HEAD, BatchColumns

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
TRAILER = b"\xff\xff"
COLUMNS = "series_id, ts, value, text, quality, status, gw_ts, server_ts, batch_id, batch_pos"
FIELDS = 10
PG_EPOCH_MS = 946_684_800_000
HOUR_MS = 3_600_000
_QUALITY = {None: 0, "uncertain": 1, "bad": 2}

# the common row: a good number, no status, no second clock; of a v1 batch (no batch
# columns) or of a v2 batch (batch_id, batch_pos)
_NUM = struct.Struct(">hiiiqid" + "i" + "ih" + "i" + "i" + "i" + "i" + "i").pack
_ROW_V2 = struct.Struct(">hiiiqid" + "i" + "ih" + "i" + "i" + "i" + "iq" + "ii")
_NUM_V2 = _ROW_V2.pack
# (width, offset) in a _ROW_V2 of what differs from one plain row to the next: series_id,
# ts, value, batch_pos
_PLAIN_FIELDS = ((4, 6), (8, 14), (8, 26), (4, 72))
_GOOD_OF_HEAD = bytes(int(q == 0) for q in QUALITY_OF_HEAD)
_INT_OF_HEAD = bytes(int((h >> 2) & 0x0F == K_INT) for h in range(256))
_BATCH = struct.Struct(">iqii").pack
_HEAD = struct.Struct(">hiiiq").pack  # field count, series_id, ts
_F8 = struct.Struct(">id").pack
_TS = struct.Struct(">iq").pack
_I2 = struct.Struct(">ih").pack
_LEN = struct.Struct(">i").pack
_NULL = _LEN(-1)


def _text(value: str) -> bytes:
    data = value.encode()
    return _LEN(len(data)) + data


def _ts(ms: int | None) -> bytes:
    return _NULL if ms is None else _TS(8, (ms - PG_EPOCH_MS) * 1000)


class Rollup:
    """Per (series, hour): [n, n_good, sum, min, max, first_ts, first_v, last_ts, last_v]."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[int, int], list[Any]] = {}

    def add(
        self,
        sids: Iterable[int],
        ms: Iterable[int],
        nums: Iterable[float | None],
        goods: Iterable[int],
    ) -> None:
        """Roll up samples given as columns (a number, or None for a text or null)."""
        buckets = self.buckets
        get = buckets.get
        for sid, t, num, good in zip(sids, ms, nums, goods, strict=True):
            key = (sid, t // HOUR_MS)
            b = get(key)
            if b is None:
                buckets[key] = [1, good, num, num, num, t, num, t, num]
                continue
            b[0] += 1
            b[1] += good
            if num is not None:
                b[2] = num if b[2] is None else b[2] + num
                if b[3] is None or num < b[3]:
                    b[3] = num
                if b[4] is None or num > b[4]:
                    b[4] = num
            if t < b[5]:
                b[5], b[6] = t, num
            if t >= b[7]:
                b[7], b[8] = t, num

    def spans(self) -> dict[int, tuple[int, int]]:
        """series id -> (first ms, last ms) of the rows rolled up."""
        out: dict[int, tuple[int, int]] = {}
        for (sid, _hour), b in self.buckets.items():
            old = out.get(sid)
            out[sid] = (b[5], b[7]) if old is None else (min(old[0], b[5]), max(old[1], b[7]))
        return out

    def rows(self) -> list[tuple[Any, ...]]:
        """In key order: two servers updating the same rollup rows lock them in the same
        order, so they wait for each other instead of deadlocking."""
        return [
            (sid, hour * HOUR_MS, *self.buckets[sid, hour]) for sid, hour in sorted(self.buckets)
        ]


def encode(  # noqa: PLR0917
    samples: Sequence[Any],
    series: dict[tuple[str, str], int],
    rollup: Rollup,
    resolve: Callable[[Iterable[tuple[str, str]]], None],
    batch_id: int | None = None,
    positions: Sequence[int] | None = None,
) -> bytearray:
    """COPY rows (no signature or trailer) for pydantic WireSamples; rolls them up too.

    `series` maps (device, tag) to a series id; on a miss, `resolve(keys)` fills it for
    every (device, tag) of the batch (one round trip), so the common case costs one dict
    lookup.
    With `batch_id` (a v2 batch) each row carries it and its sample's place: `positions[i]`,
    or i when `positions` is None.
    """
    out = bytearray()
    append = out.extend
    buckets = rollup.buckets
    get = series.get
    v2 = batch_id is not None
    place = range(len(samples)) if positions is None else positions
    tail = _NULL + _NULL
    for i, s in enumerate(samples):
        sid = get((s.d, s.t))
        if sid is None:
            resolve([(x.d, x.t) for x in samples])
            sid = series[s.d, s.t]
        ms = s.ts
        v = s.v
        q = s.q
        num = v if (v.__class__ is float or v.__class__ is int) else None
        if num is not None and q is None and s.s is None and s.gts is None and s.sts is None:
            if v2:
                append(_NUM_V2(FIELDS, 4, sid, 8, (ms - PG_EPOCH_MS) * 1000, 8, num, -1, 2, 0,
                               -1, -1, -1, 8, batch_id, 4, place[i]))  # fmt: skip
            else:
                append(_NUM(FIELDS, 4, sid, 8, (ms - PG_EPOCH_MS) * 1000, 8, num, -1, 2, 0,
                            -1, -1, -1, -1, -1))  # fmt: skip
        else:
            append(_HEAD(FIELDS, 4, sid, 8, (ms - PG_EPOCH_MS) * 1000))
            append(_NULL if num is None else _F8(8, num))
            append(_text(v) if v.__class__ is str else _NULL)
            append(_I2(2, _QUALITY[q]))
            append(_NULL if s.s is None else _text(s.s))
            append(_ts(s.gts))
            append(_ts(s.sts))
            append(_BATCH(8, batch_id, 4, place[i]) if v2 else tail)
        # Rollup.add's bucket update, inlined: this loop runs once per sample stored
        key = (sid, ms // HOUR_MS)
        b = buckets.get(key)
        good = 1 if q is None else 0
        if b is None:
            buckets[key] = [1, good, num, num, num, ms, num, ms, num]
            continue
        b[0] += 1
        b[1] += good
        if num is not None:
            b[2] = num if b[2] is None else b[2] + num
            if b[3] is None or num < b[3]:
                b[3] = num
            if b[4] is None or num > b[4]:
                b[4] = num
        if ms < b[5]:
            b[5], b[6] = ms, num
        if ms >= b[7]:
            b[7], b[8] = ms, num
    return out


def encode_v2(
    cols: BatchColumns,
    sids: Sequence[int],
    rollup: Rollup,
    batch_id: int,
    positions: Sequence[int] | None = None,
) -> bytearray:
    """COPY rows for a v2 batch's samples at `positions` (None: all), from the decoder's
    columns; rolls them up too. `sids[j]` is the series id of `cols.series[j]`."""
    n = len(cols.ts)
    heads, ms, values = cols.heads, cols.ts, cols.values
    sid_of = list(map(sids.__getitem__, cols.series_ix))
    plain = heads.translate(PLAIN_NUMBER)
    chosen: Sequence[int] | range = range(n)
    if positions is not None:  # rare: samples set aside for their time
        chosen = positions
        keep = bytearray(n)
        for p in positions:
            keep[p] = 1
        plain = bytes(a & b for a, b in zip(plain, keep, strict=True))
    m = plain.count(1)
    out = bytearray()
    if m:
        c_sid: Sequence[int]
        c_pos: Sequence[int]
        if m == n:
            c_sid, c_ms, c_v, c_pos = sid_of, ms, values, range(n)
        else:
            c_sid, c_ms = list(compress(sid_of, plain)), list(compress(ms, plain))
            c_v, c_pos = list(compress(values, plain)), list(compress(range(n), plain))
        cols_packed = (
            struct.pack(f">{m}i", *c_sid),
            struct.pack(f">{m}q", *[(t - PG_EPOCH_MS) * 1000 for t in c_ms]),
            struct.pack(f">{m}d", *c_v),
            struct.pack(f">{m}i", *c_pos),
        )
        out = bytearray(_NUM_V2(FIELDS, 4, 0, 8, 0, 8, 0.0, -1, 2, 0, -1, -1, -1, 8,
                                batch_id, 4, 0)) * m  # fmt: skip
        size = _ROW_V2.size
        for col, (width, offset) in zip(cols_packed, _PLAIN_FIELDS, strict=True):
            for j in range(width):
                out[offset + j :: size] = col[j::width]
    if m < len(chosen):
        append = out.extend
        texts, extras = cols.texts, cols.extras
        none3 = (None, None, None)
        for i in [i for i in chosen if not plain[i]]:
            v = values[i]
            status, gts, sts = extras.get(i, none3)
            append(_HEAD(FIELDS, 4, sid_of[i], 8, (ms[i] - PG_EPOCH_MS) * 1000))
            append(_NULL if v is None or v.__class__ is str else _F8(8, v))
            append(_text(v) if v.__class__ is str else _NULL)
            append(_I2(2, QUALITY_OF_HEAD[heads[i]]))
            append(_NULL if status is None else _text(texts[status]))
            append(_ts(gts))
            append(_ts(sts))
            append(_BATCH(8, batch_id, 4, i))
    nums: list[Any] = values
    if cols.text_at or heads.translate(_INT_OF_HEAD).count(1):  # texts: None; ints: doubles
        nums = [None if v.__class__ is str else float(v) if v.__class__ is int else v
                for v in values]  # fmt: skip
    goods = heads.translate(_GOOD_OF_HEAD)
    if positions is None:
        rollup.add(sid_of, ms, nums, goods)
    else:
        rollup.add(*([col[p] for p in positions] for col in (sid_of, ms, nums, goods)))
    return out
