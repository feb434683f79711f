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
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

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
_NUM_V2 = struct.Struct(">hiiiqid" + "i" + "ih" + "i" + "i" + "i" + "iq" + "ii").pack
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
    resolve: Callable[[Sequence[Any]], None],
    batch_id: int | None = None,
    positions: Sequence[int] | None = None,
) -> bytearray:
    """COPY rows (no signature or trailer) for pydantic WireSamples; rolls them up too.

    `series` maps (device, tag) to a series id; on a miss, `resolve(samples)` fills it for
    every sample of the batch (one round trip), so the common case costs one dict lookup.
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
            resolve(samples)
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
