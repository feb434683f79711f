"""The ISO 22400-2 time model of one work unit over a period: pure, over typed records.

Times are epoch seconds (floats). The timeline of [start, end) is cut three ways:
outside planned operation time (no shift), shift breaks (planned downtime), and shift
time to work. Each piece of the machine's state intervals is counted as follows:

| where            | state                   | counted in                              |
|------------------|-------------------------|-----------------------------------------|
| work             | RUNNING                 | APT (actual production time)            |
| work             | SETUP                   | setup                                   |
| work             | IDLE                    | idle (delay)                            |
| work             | DOWN                    | down                                    |
| work             | OFF                     | off in planned time (delay)             |
| work             | PLANNED_STOP            | planned downtime (leaves PBT)           |
| work             | OFFLINE, UNKNOWN,       | unknown: never counted as running or    |
|                  | NO_DATA, no data yet    | stopped                                 |
| break            | any, or none            | planned downtime (from the segments)    |
| break            | RUNNING                 | planned downtime AND running outside    |
| break            | unknown, no data        | planned downtime AND unknown_pot_s      |
| outside          | RUNNING                 | running outside planned time            |

Running outside planned time is a tally beside the buckets, not one of them: APT, setup,
idle, down, off in planned time and unknown partition PBT; a RUNNING second in a break is
in planned downtime and in running_outside_s (and running_s), never in APT, so
availability does not see it and effectiveness, utilisation and MTBF do.

POT = shifts' time in the period; planned downtime = breaks + PLANNED_STOP in work
time; PBT = POT - planned downtime. Availability = APT / (PBT - unknown), i.e. over the
planned busy time whose state is known; its coverage is (PBT - unknown) / PBT.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import pairwise

KNOWN_STATES = frozenset({"RUNNING", "IDLE", "SETUP", "DOWN", "PLANNED_STOP", "OFF"})
UNKNOWN_STATES = frozenset({"OFFLINE", "UNKNOWN", "NO_DATA"})

_OUT, _BREAK, _WORK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Interval:
    """[start, end) in epoch seconds (floats: a month of a plant is 250,000 of them, and
    float arithmetic is ten times cheaper than datetime arithmetic)."""

    start: float
    end: float
    state: str


@dataclass(slots=True)
class TimeBuckets:
    """Seconds per bucket; see the module docstring."""

    calendar_s: float = 0.0
    pot_s: float = 0.0
    planned_downtime_s: float = 0.0
    pbt_s: float = 0.0
    apt_s: float = 0.0
    setup_s: float = 0.0
    idle_s: float = 0.0
    down_s: float = 0.0
    off_in_plan_s: float = 0.0
    unknown_s: float = 0.0  # in PBT
    running_outside_s: float = 0.0
    running_s: float = 0.0  # every RUNNING second of the period
    unknown_pot_s: float = 0.0  # in POT (breaks included): for coverage
    unknown_period_s: float = 0.0  # anywhere in the period
    down_total_s: float = 0.0  # every DOWN second of the period
    down_events: int = 0  # DOWN intervals starting in the period

    def add(self, other: TimeBuckets) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_json(self) -> dict[str, float]:
        d = asdict(self)
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in d.items()}

    @property
    def known_pbt_s(self) -> float:
        return self.pbt_s - self.unknown_s

    @property
    def coverage(self) -> float:
        """Share of planned operation time whose state is known (of the calendar time
        when nothing was planned)."""
        if self.pot_s > 0:
            return (self.pot_s - self.unknown_pot_s) / self.pot_s
        if self.calendar_s > 0:
            return (self.calendar_s - self.unknown_period_s) / self.calendar_s
        return 0.0


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            if b > out[-1][1]:
                out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def plan_segments(
    start: float,
    end: float,
    shifts: Sequence[tuple[float, float]],
    breaks: Sequence[tuple[float, float]],
) -> list[tuple[float, float, int]]:
    """The period cut into (a, b, kind) pieces: outside, break, work; in time order."""
    pot = [(max(a, start), min(b, end)) for a, b in _merge(shifts)]
    pot = [(a, b) for a, b in pot if b > a]
    brk = [(max(a, start), min(b, end)) for a, b in _merge(breaks)]
    cuts = {start, end}
    for a, b in (*pot, *brk):
        cuts.add(a)
        cuts.add(b)
    points = sorted(c for c in cuts if start <= c <= end)
    out: list[tuple[float, float, int]] = []
    for a, b in pairwise(points):
        mid_in = any(x <= a and b <= y for x, y in pot)
        kind = _OUT
        if mid_in:
            kind = _BREAK if any(x <= a and b <= y for x, y in brk) else _WORK
        if out and out[-1][2] == kind and out[-1][1] == a:
            out[-1] = (out[-1][0], b, kind)
        else:
            out.append((a, b, kind))
    return out


def time_model(  # noqa: PLR0912 (one branch per bucket)
    start: float,
    end: float,
    intervals: Sequence[Interval],
    segments: Sequence[tuple[float, float, int]],
) -> TimeBuckets:
    """Buckets of one machine. `intervals` are sorted, non-overlapping state intervals
    (clipped or not); time they do not cover counts as unknown."""
    t = TimeBuckets()
    t.calendar_s = end - start
    segments = [(max(a, start), min(b, end), k) for a, b, k in segments if b > start and a < end]
    for a, b, kind in segments:
        if kind != _OUT:
            t.pot_s += b - a
        if kind == _BREAK:
            t.planned_downtime_s += b - a
    covered = 0.0
    i = 0
    n = len(segments)
    for iv in intervals:
        a0, b0 = max(iv.start, start), min(iv.end, end)
        if iv.state == "DOWN" and start <= iv.start < end:
            t.down_events += 1
        if b0 <= a0:
            continue
        covered_piece = b0 - a0
        covered += covered_piece
        if iv.state == "RUNNING":
            t.running_s += covered_piece
        elif iv.state == "DOWN":
            t.down_total_s += covered_piece
        if iv.state in UNKNOWN_STATES or iv.state not in KNOWN_STATES:
            t.unknown_period_s += covered_piece
        while i < n and segments[i][1] <= a0:
            i += 1
        j = i
        while j < n and segments[j][0] < b0:
            sa, sb, kind = segments[j]
            lo, hi = max(sa, a0), min(sb, b0)
            if hi > lo:
                _bucket(t, kind, iv.state, (hi - lo))
            j += 1
    # time without any interval (before the first data, holes): unknown
    for a, b, kind in _gaps(start, end, intervals, segments):
        s = b - a
        t.unknown_period_s += s
        if kind != _OUT:
            t.unknown_pot_s += s
        if kind == _WORK:
            t.unknown_s += s
    t.pbt_s = t.pot_s - t.planned_downtime_s
    return t


def _bucket(t: TimeBuckets, kind: int, state: str, s: float) -> None:
    if state == "RUNNING" and kind != _WORK:
        t.running_outside_s += s
    if kind == _OUT:
        return
    unknown = state in UNKNOWN_STATES or state not in KNOWN_STATES
    if unknown:
        t.unknown_pot_s += s
    if kind == _BREAK:
        return  # planned downtime whatever the machine did (counted from the segments)
    if unknown:
        t.unknown_s += s
    elif state == "RUNNING":
        t.apt_s += s
    elif state == "SETUP":
        t.setup_s += s
    elif state == "IDLE":
        t.idle_s += s
    elif state == "DOWN":
        t.down_s += s
    elif state == "OFF":
        t.off_in_plan_s += s
    elif state == "PLANNED_STOP":
        t.planned_downtime_s += s


def _gaps(
    start: float,
    end: float,
    intervals: Sequence[Interval],
    segments: Sequence[tuple[float, float, int]],
) -> Iterable[tuple[float, float, int]]:
    """Pieces of the period no interval covers, cut by segment kind."""
    holes: list[tuple[float, float]] = []
    cursor = start
    for iv in intervals:
        a, b = max(iv.start, start), min(iv.end, end)
        if b <= a:
            continue
        if a > cursor:
            holes.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        holes.append((cursor, end))
    for ha, hb in holes:
        for sa, sb, kind in segments:
            lo, hi = max(sa, ha), min(sb, hb)
            if hi > lo:
                yield lo, hi, kind


@dataclass(frozen=True, slots=True)
class Performance:
    availability: float | None
    effectiveness: float | None
    quality_ratio: float | None
    oee: float | None
    utilisation: float | None
    mtbf_s: float | None
    mttr_s: float | None


def performance(
    t: TimeBuckets, *, ideal_cycle_time_s: float | None, produced: float | None, good: float | None
) -> Performance:
    """ISO 22400-2 indicators from the buckets and the part counts."""
    availability = t.apt_s / t.known_pbt_s if t.known_pbt_s > 0 else None
    # parts made in any running time are set against all of it (in planned time it is APT)
    effectiveness = (
        ideal_cycle_time_s * produced / t.running_s
        if ideal_cycle_time_s and produced is not None and t.running_s > 0
        else None
    )
    quality = good / produced if produced and good is not None else None
    oee = (
        availability * effectiveness * quality
        if availability is not None and effectiveness is not None and quality is not None
        else None
    )
    known = t.calendar_s - t.unknown_period_s
    utilisation = t.running_s / t.calendar_s if t.calendar_s > 0 and known > 0 else None
    mtbf = t.running_s / t.down_events if t.down_events else None
    mttr = t.down_total_s / t.down_events if t.down_events else None
    return Performance(availability, effectiveness, quality, oee, utilisation, mtbf, mttr)
