"""A report's measured inputs from samples held as columns: the rules of kpi/raw.py and of
kpi/fetch.py's raw path (`fetch_inputs(raw=True)`), over numpy arrays instead of SQL rows,
for the offline verifier (evidence/offline/kpi_inputs.py rebuilds `Inputs` from a bundle with
these). Pure: no database, no file format; times are epoch milliseconds (int64), one
series' samples sorted by time.

    counter readings --counter_sums--> quantity, deltas, rollovers, resets, anomalies
    a series' times  --tag_cover-----> samples received, heartbeats covered (coverage)
    state samples    --state_intervals> the device's intervals (derive/runs.py's rules)
    edit trails      --audit_block---> what a report signs of them (`registry_audit`)

Each function states which SQL or loop of the database path it stands for; the tests
(tests/evidence/test_offline_kpi.py) hold the two to the same figures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ingest_server.derive.runs import Event, hold_until, runs
from ingest_server.kpi.edges import clip_intervals, spans
from ingest_server.kpi.timemodel import Interval

Ms = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
HOUR_MS = 3_600_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ms_time(ms: int | float) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=int(ms))


def ms_of(t: dt.datetime) -> int:
    return (t - _EPOCH) // dt.timedelta(milliseconds=1)


# -- counters ------------------------------------------------------------------------------


@dataclass(slots=True)
class CounterResult:
    quantity: float = 0.0
    deltas: int = 0
    rollovers: int = 0
    resets: int = 0
    # (ts ms, flag, previous reading, reading, delta) of each rollover and reset, by time
    anomalies: list[tuple[int, str, float, float, float]] = field(default_factory=list)


def around(ts: Ms, start_ms: int, end_ms: int) -> slice:
    """The positions of `ts` (sorted) in [start, end), with the last one before it and
    the first one at or after its end: what the raw path reads of a series."""
    i0 = int(np.searchsorted(ts, start_ms, "left"))
    i1 = int(np.searchsorted(ts, end_ms, "left"))
    return slice(max(i0 - 1, 0), min(i1 + 1, len(ts)))


def counter_sums(
    ts: Ms, values: Floats, *, wrap: float | None, start_ms: int, end_ms: int, prorated: bool
) -> CounterResult:
    """A counter's sums over [start, end) from its good readings (quality < 2, a value;
    sorted by time, any span: the last before the window and the first after it are
    taken here). kpi/raw.py raw_counters and counter_delta, over the arrays at once: the
    increase between consecutive readings (a fall is a rollover when the series wraps and
    it fell by more than half the wrap, else a reset: the increase is the new reading);
    a flowing quantity's reading interval cut by an edge counts pro rata, a part count
    at the reading's time."""
    out = CounterResult()
    if end_ms <= start_ms:
        return out
    w = around(ts, start_ms, end_ms)
    t, v = ts[w], values[w]
    if len(t) < 2:
        return out
    t0, t1, v0, v1 = t[:-1], t[1:], v[:-1], v[1:]
    fell = v1 < v0
    rolled = fell & (wrap is not None) & ((v0 - v1) > (wrap or 0.0) / 2)
    reset = fell & ~rolled
    delta = np.where(~fell, v1 - v0, np.where(rolled, v1 + (wrap or 0.0) - v0, v1))
    inside_t1 = (t1 >= start_ms) & (t1 < end_ms)
    if prorated:
        length = (t1 - t0) / 1000.0
        inside = (np.minimum(t1, end_ms) - np.maximum(t0, start_ms)) / 1000.0
        take = (inside > 0) & (length > 0)
        out.quantity = float(np.sum(delta[take] * inside[take] / length[take]))
    else:
        out.quantity = float(np.sum(delta[inside_t1]))
    out.deltas = int(np.count_nonzero(inside_t1))
    out.rollovers = int(np.count_nonzero(rolled & inside_t1))
    out.resets = int(np.count_nonzero(reset & inside_t1))
    for i in np.flatnonzero((rolled | reset) & inside_t1):
        flag = "rollover" if rolled[i] else "reset"
        out.anomalies.append((int(t1[i]), flag, float(v0[i]), float(v1[i]), float(delta[i])))
    return out


# -- tag coverage -------------------------------------------------------------------------


def tag_cover(ts: Ms, *, start_ms: int, end_ms: int, heartbeat_s: float) -> tuple[int, float]:
    """(samples received in [start, end), heartbeats they cover) of one series from its
    sample times (sorted, any quality): kpi/fetch.py _fetch_tags with `raw`. The whole
    UTC hours credit each at most the heartbeats an hour holds (repo/measurements.py
    _COUNTS_FROM_SAMPLES); a piece of an hour at an edge credits the time its samples
    cover, each until the next one, at most a heartbeat, those from a heartbeat before
    the piece (not before the window) for what reaches into it (`sample_cover`)."""
    if end_ms <= start_ms:
        return 0, 0.0
    received, counted = 0, 0.0
    h1 = -(-start_ms // HOUR_MS) * HOUR_MS
    h2 = end_ms // HOUR_MS * HOUR_MS
    if h1 > h2:
        edges = [(start_ms, end_ms)]
    else:
        edges = [(a, b) for a, b in ((start_ms, h1), (h2, end_ms)) if b > a]
        if h1 < h2:
            whole = ts[int(np.searchsorted(ts, h1)) : int(np.searchsorted(ts, h2))]
            if len(whole):
                _, n = np.unique(whole // HOUR_MS, return_counts=True)
                received += len(whole)
                counted += float(np.sum(np.minimum(n, 3600.0 / heartbeat_s)))
    hb_ms = heartbeat_s * 1000.0
    for a, b in edges:
        since = max(a - hb_ms, start_ms)
        piece = ts[int(np.searchsorted(ts, since)) : int(np.searchsorted(ts, b))]
        if not len(piece):
            continue
        received += int(np.count_nonzero(piece >= a))
        nxt = np.append(piece[1:].astype(np.float64), np.inf)
        upto = np.minimum(np.minimum(piece + hb_ms, nxt), float(b))
        cover = np.maximum(0.0, (upto - np.maximum(piece, a)) / 1000.0)
        counted += float(np.sum(cover)) / heartbeat_s
    return received, counted


# -- state intervals ----------------------------------------------------------------------


def state_intervals(
    rows: Iterable[tuple[int, dt.datetime, str | None]],
    kinds: Mapping[int, str],
    first_after: dt.datetime | None,
    start: dt.datetime,
    end: dt.datetime,
) -> list[Interval]:
    """A device's state intervals in [start, end): kpi/raw.py raw_intervals over given
    rows. `rows`: (series_id, ts, text; None when of bad quality) of its state and status
    series' samples in the window and the last of each before it; `kinds`: series_id ->
    role; `first_after`: the time of the first sample of any of them at or after `end`."""
    events = sorted(
        (Event(ts, "state" if kinds[sid] == "machine_state" else "status", v)
         for sid, ts, v in rows if ts < end),
        key=lambda e: (e.ts, e.kind),
    )  # fmt: skip
    # the earlier of the two "last before start" samples only sets a value: the silence
    # before the later one says nothing about the period
    pre = [e for e in events if e.ts < start]
    if len(pre) == 2:
        pre[0] = Event(pre[1].ts, pre[0].kind, pre[0].value)
        events = sorted([*pre, *(e for e in events if e.ts >= start)], key=lambda e: e.ts)
    result = [(t.timestamp(), state) for t, state in runs(events)]
    nxt = first_after.timestamp() if first_after is not None else None
    rows_iv: list[tuple[float, float | None, str]] = []
    for i, (a, state) in enumerate(result):
        b = result[i + 1][0] if i + 1 < len(result) else None
        rows_iv.append((a, b, state))
    if rows_iv and nxt is not None:
        a, _, state = rows_iv.pop()
        rows_iv += spans(hold_until(a, state, events[-1].ts.timestamp(), nxt), nxt)
    last_seen = events[-1].ts.timestamp() if events and nxt is None else None
    return clip_intervals(rows_iv, start.timestamp(), end.timestamp(), last_seen)


# -- the audit trail a report signs ------------------------------------------------------


def _at(value: Any) -> dt.datetime:
    t = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    return t.astimezone(dt.UTC)


def _iso_us(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def trail_edit(e: Mapping[str, Any]) -> dict[str, Any]:
    """One trail entry (repo/audit.py's row, or equipment_audit.json's) as a report lists
    it: id, at (UTC, microseconds), equipment, field, old, new, account, note."""
    return {"id": int(e["id"]), "at": _iso_us(_at(e["at"])), "equipment": e["equipment_id"],
            "field": e["field"], "old": e["old"], "new": e["new"], "account": e["account"],
            "note": e.get("note") or ""}  # fmt: skip


def registry_edit(e: Mapping[str, Any]) -> dict[str, Any]:
    """One entry of the registry's other trail (repo/audit.py registry_trail's row, or
    registry_audit.json's) as a report lists it: id, at, kind, entity, field, old, new,
    account, note (field `*`: the entity inserted, old null, or removed, new null)."""
    return {"id": int(e["id"]), "at": _iso_us(_at(e["at"])), "kind": e["kind"],
            "entity": e["entity_id"], "field": e["field"], "old": e["old"], "new": e["new"],
            "account": e["account"], "note": e.get("note") or ""}  # fmt: skip


_EQUIPMENT_LINE = ("id", "at", "equipment", "field", "old", "new", "account", "note")
_REGISTRY_LINE = ("id", "at", "kind", "entity", "field", "old", "new", "account", "note")


def _signed_part(
    edits: list[dict[str, Any]], line: Sequence[str], since: dt.datetime
) -> dict[str, Any]:
    h = hashlib.sha256()
    for x in edits:
        text = json.dumps([x[k] for k in line], ensure_ascii=False, separators=(",", ":"),
                          sort_keys=True)  # fmt: skip
        h.update(text.encode())
        h.update(b"\n")
    return {"entries": len(edits), "sha256": h.hexdigest(),
            "edits": [x for x in edits if _at(x["at"]) >= since]}  # fmt: skip


def _upto(entries: Sequence[Mapping[str, Any]], read_at: dt.datetime) -> list[Mapping[str, Any]]:
    return sorted((e for e in entries if _at(e["at"]) <= read_at),
                  key=lambda e: (_at(e["at"]), int(e["id"])))  # fmt: skip


# the block's versions: 1 the equipment trail only; 2 with `registry`, the other trail
AUDIT_BLOCK_VERSION = 2


def audit_block(
    entries: Sequence[Mapping[str, Any]],
    read_at: dt.datetime,
    since: dt.datetime,
    registry: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """What a report signs of the registry's edit trails (`registry_audit`, docs/evidence.md):
    when the registry was read, how many edits the equipment trail (`entries`) held then
    and the SHA-256 of their canonical lines (one JSON array per edit, oldest first: id,
    at, equipment, field, old, new, account, note), and the edits since `since` (the
    period's start) listed in full: the ones that moved the attributes of the period.
    With `registry` (the other trail, repo/audit.py registry_trail; version 2), the same
    of it under `registry`, its lines [id, at, kind, entity, field, old, new, account,
    note]. Without (a version 1 block, as reports made before it sign): no `version`."""
    part = _signed_part([trail_edit(e) for e in _upto(entries, read_at)], _EQUIPMENT_LINE,
                        since)  # fmt: skip
    block: dict[str, Any] = {
        "read_at": _iso_us(read_at),
        "entries": part["entries"],
        "sha256": part["sha256"],
        "since": _iso_us(since),
        "edits": part["edits"],
    }
    if registry is not None:
        block["version"] = AUDIT_BLOCK_VERSION
        block["registry"] = _signed_part(
            [registry_edit(e) for e in _upto(registry, read_at)], _REGISTRY_LINE, since
        )
    return block


def state_samples_needed(
    ts: Ms, code: npt.NDArray[np.int64], gap_s: float
) -> npt.NDArray[np.bool_]:
    """Which samples of a device's one state series (sorted by time; `code` a code of each
    value, -1 for bad quality) `state_intervals` needs to give the same intervals: in each
    run of one value, the first and the last sample of each stretch of gap/2, so that a
    sample dropped repeats the value in force and leaves no silence over `gap_s` (derive/
    runs.py's NO_DATA rule) that was not there, nor hides one that was: a silence over it
    lies between two samples kept. A series with two samples at one time is kept whole
    (those apply together)."""
    n = len(ts)
    if n <= 2 or bool(np.any(ts[1:] <= ts[:-1])):
        return np.ones(n, bool)
    half = max(int(gap_s * 1000) // 2, 1)
    change = np.r_[True, code[1:] != code[:-1]]
    run = np.cumsum(change)
    bucket = (ts - ts[0]) // half
    first = np.r_[True, (run[1:] != run[:-1]) | (bucket[1:] != bucket[:-1])]
    keep: npt.NDArray[np.bool_] = first | np.r_[first[1:], True]
    return keep
