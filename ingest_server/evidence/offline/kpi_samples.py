"""The bundle's samples as the KPI figures read them (`Measured`): samples.parquet a row
group at a time, each series kept as the few arrays its role needs
(docs/evidence-verify.md, "Speed").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]

from ingest_server.evidence.offline.members import _parquet
from ingest_server.kpi.edges import PART_ROLES, PRORATED_ROLES

_SAMPLE_COLUMNS = ["series_id", "ts", "value", "text", "quality", "batch_id"]


@dataclass
class _Series:
    """One series' samples, sorted by time: what the figures read of it (by its role)."""

    ts: np.ndarray  # int64 ms, every sample
    signed: np.ndarray  # bool: in a batch (a gateway signed it)
    value: np.ndarray | None = None  # float64 (NaN when null): counters
    good: np.ndarray | None = None  # quality < 2 and a value: counters
    bad: np.ndarray | None = None  # quality >= 2: state and status series
    text: np.ndarray | None = None  # int32 code in Measured.strings, -1 null: states


@dataclass
class _Kept:
    """A series' samples (or a row group's piece of them) as kept: times as offsets from
    `base` (uint32 when they fit: 49 days), the rest as _Series holds them."""

    base: int
    offsets: np.ndarray
    signed: np.ndarray
    value: np.ndarray | None = None
    good: np.ndarray | None = None
    bad: np.ndarray | None = None
    text: np.ndarray | None = None

    @staticmethod
    def times(ts: np.ndarray) -> tuple[int, np.ndarray]:
        if not len(ts):
            return 0, ts.astype(np.int64)
        base = int(ts.min())
        off = ts - base
        return base, off.astype(np.uint32) if int(off.max()) <= 0xFFFFFFFF else off

    def ts(self) -> np.ndarray:
        out: np.ndarray = self.offsets.astype(np.int64) + self.base
        return out


_STATE_ROLES = ("machine_state", "device_status")
_EMPTY = _Series(np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0), np.zeros(0, bool),
                 np.zeros(0, bool), np.zeros(0, np.int32))  # fmt: skip


class Measured:
    """The bundle's samples, one series at a time, and its series (docs/evidence-verify.md,
    "Speed"). samples.parquet is read a row group at a time, only the columns the figures
    need; each row group's rows of a series (sorted by (series_id, ts) within the group,
    as the bundle writes them; sorted here if not) are copied out as the few arrays its
    role needs (counters: time, value, good; states: time, text code, bad; every series:
    time and signed), times as 4-byte offsets, the row group then let go; a series'
    pieces are joined and put in time order (stable: the file's order among equal
    times) when it is first asked for. Memory: about 14 bytes a counter sample and 10 a
    state sample, not the whole table with its sort."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.series = _parquet(files, "series.parquet").read().to_pylist()
        roles = {int(r["series_id"]): str(r["role"]) for r in self.series}
        counters = {sid for sid, role in roles.items() if role in PRORATED_ROLES
                    or role in PART_ROLES}  # fmt: skip
        states = {sid for sid, role in roles.items() if role in _STATE_ROLES}
        self.strings: list[str] = []  # the texts, each once
        self._string_at: dict[str, int] = {}
        self._pieces: dict[int, list[_Kept]] = {}
        self._joined: dict[int, _Kept] = {}
        self.n = 0
        pf = _parquet(files, "samples.parquet")
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g, columns=_SAMPLE_COLUMNS)
            self.n += t.num_rows
            self._split(t, counters, states)
            del t

    def _codes(self, col: pa.ChunkedArray | pa.Array) -> np.ndarray:
        """A text column's codes in `strings` (-1 null)."""
        enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray)
                                   else col)  # fmt: skip
        at = [self._string_at.setdefault(x, len(self._string_at)) for x in
              enc.dictionary.to_pylist()]  # fmt: skip
        self.strings = list(self._string_at)
        local = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        out: np.ndarray = np.array([*at, -1], np.int32)[local]
        return out

    def _split(self, t: pa.Table, counters: set[int], states: set[int]) -> None:
        n = t.num_rows
        if not n:
            return
        sid = pc.fill_null(t["series_id"], -1).to_numpy(zero_copy_only=False).astype(np.int64)
        if np.any(sid[1:] < sid[:-1]):  # not as the bundle writes it: group it (stable)
            order = np.argsort(sid, kind="stable")
            t, sid = t.take(pa.array(order)), sid[order]
        ts = pc.fill_null(t["ts"], 0).to_numpy(zero_copy_only=False).astype(np.int64)
        signed = pc.is_valid(t["batch_id"]).to_numpy(zero_copy_only=False)
        quality = pc.fill_null(t["quality"], 2).to_numpy(zero_copy_only=False)
        at = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1], True])
        value = good = bad = text = None
        for lo, hi in zip(at[:-1].tolist(), at[1:].tolist(), strict=True):
            s = int(sid[lo])
            base, off = _Kept.times(ts[lo:hi])
            piece = _Kept(base, off, signed[lo:hi].copy())
            if s in counters:
                if value is None:
                    value = pc.fill_null(t["value"], np.nan).to_numpy(zero_copy_only=False)
                    good = (quality < 2) & pc.is_valid(t["value"]).to_numpy(zero_copy_only=False)
                piece.value, piece.good = value[lo:hi].copy(), good[lo:hi].copy()  # type: ignore[index]
            if s in states:
                if bad is None:
                    bad, text = quality >= 2, self._codes(t["text"])
                piece.bad, piece.text = bad[lo:hi].copy(), text[lo:hi].copy()  # type: ignore[index]
            self._pieces.setdefault(s, []).append(piece)

    def of(self, sid: int) -> _Series:
        """Series `sid`'s samples, sorted by time."""
        kept = self._joined.get(sid)
        if kept is None:
            kept = self._join(sid)
            if kept is None:
                return _EMPTY
            self._joined[sid] = kept
        return _Series(kept.ts(), kept.signed, kept.value, kept.good, kept.bad, kept.text)

    def _join(self, sid: int) -> _Kept | None:
        pieces = self._pieces.pop(sid, None)
        if not pieces:
            return None
        ts = np.concatenate([p.ts() for p in pieces])
        signed = np.concatenate([p.signed for p in pieces])
        value = good = bad = text = None
        if pieces[0].value is not None:
            value = np.concatenate([p.value for p in pieces])
            good = np.concatenate([p.good for p in pieces])
        if pieces[0].bad is not None:
            bad = np.concatenate([p.bad for p in pieces])
            text = np.concatenate([p.text for p in pieces])
        del pieces
        if np.any(ts[1:] < ts[:-1]):
            order = np.argsort(ts, kind="stable")
            ts, signed = ts[order], signed[order]
            if value is not None:
                value, good = value[order], good[order]  # type: ignore[index]
            if bad is not None:
                bad, text = bad[order], text[order]  # type: ignore[index]
        base, off = _Kept.times(ts)
        return _Kept(base, off, signed, value, good, bad, text)
