"""Seeded, deterministic state schedule of one machine.

The schedule is generated one local day at a time from ``(seed, equipment id, date)``
alone, so the state at any instant is the same however the simulation is stepped,
whichever day it starts on, and in history mode or in real time.

Inside each shift window the machine alternates RUNNING spans with IDLE gaps,
occasional DOWN (alarm) spans drawn from its MTBF/MTTR, changeover SETUPs, a setup
at shift start and a rare planned maintenance stop; breaks are PLANNED_STOP.
Outside shifts it is OFF (or IDLE when left powered). Span edges fall on whole
seconds so that truth files compare exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from edge_agent.contract.sample import MachineState
from simulators.calendar import ShiftCalendar, ShiftWindow
from simulators.scenario import Equipment

NO_PROGRAM = -1
FEED_OVERRIDES_PCT = (80.0, 90.0, 100.0, 100.0, 100.0, 100.0, 110.0)


@dataclass(frozen=True, slots=True)
class Span:
    start: float
    end: float
    state: MachineState
    power_kw: float
    program: str
    feed_override_pct: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def _block_start(cal: ShiftCalendar, day: dt.date) -> float:
    """Where day's block begins: local midnight, or later if yesterday's shift runs past it."""
    start = cal.midnight(day)
    for w in cal.windows(day - dt.timedelta(days=1)):
        start = max(start, w.end)
    return start


def _rng(seed: int, equipment_id: str, day: dt.date, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random: stable across runs and
    # independent of PYTHONHASHSEED.
    return random.Random(f"{seed}:{equipment_id}:{day.isoformat()}:{purpose}")


def _minutes(rng: random.Random, lo_hi: tuple[float, float]) -> float:
    return max(1.0, round(rng.uniform(*lo_hi) * 60))


def _window_spans(
    eq: Equipment, w: ShiftWindow, rng: random.Random, program_index: int
) -> tuple[list[tuple[float, float, MachineState, int]], int]:
    """Raw (start, end, state, program index) spans filling one shift window."""
    b = eq.behaviour
    out: list[tuple[float, float, MachineState, int]] = []
    t = w.start

    def add(state: MachineState, seconds: float) -> None:
        nonlocal t
        end = min(w.end, t + seconds)
        if end > t:
            out.append((t, end, state, program_index))
        t = end

    if rng.random() < b.setup_at_shift_start:
        program_index = rng.randrange(len(eq.programs))
        add(MachineState.SETUP, _minutes(rng, b.setup_min))
    while t < w.end:
        run_s = _minutes(rng, b.run_min)
        add(MachineState.RUNNING, run_s)
        if rng.random() < min(1.0, run_s / 3600 / b.mtbf_h):
            repair_s = rng.expovariate(1 / (b.mttr_min * 60))
            add(MachineState.DOWN, round(min(max(60.0, repair_s), 4 * b.mttr_min * 60)))
        elif rng.random() < b.changeover_per_run:
            program_index = (program_index + 1) % len(eq.programs)
            add(MachineState.SETUP, _minutes(rng, b.setup_min))
        else:
            add(MachineState.IDLE, _minutes(rng, b.idle_min))

    stops = list(w.breaks)
    if rng.random() < b.planned_stop_per_shift:
        length = _minutes(rng, b.planned_stop_min)
        latest = max(w.start, w.end - length)
        at = float(round(rng.uniform(w.start, latest)))
        stops.append((at, min(w.end, at + length)))
    return _overlay(out, stops, MachineState.PLANNED_STOP), program_index


def _overlay(
    spans: list[tuple[float, float, MachineState, int]],
    stops: list[tuple[float, float]],
    state: MachineState,
) -> list[tuple[float, float, MachineState, int]]:
    """Cut `stops` out of `spans` and fill them with `state` (breaks win over everything).

    Overlapping or touching stops are joined first: a maintenance stop over a break is
    one stop, not two with different programs (a state change that never happened).
    """
    joined: list[tuple[float, float]] = []
    for s0, s1 in sorted(stops):
        if joined and s0 <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], s1))
        else:
            joined.append((s0, s1))
    for s0, s1 in joined:
        cut: list[tuple[float, float, MachineState, int]] = []
        prog = spans[0][3] if spans else 0
        for a, b, st, p in spans:
            if b <= s0 or a >= s1:
                cut.append((a, b, st, p))
                continue
            if a < s0:
                cut.append((a, s0, st, p))
            if b > s1:
                cut.append((s1, b, st, p))
            prog = p
        cut.append((s0, s1, state, prog))
        spans = sorted(cut)
    return spans


def day_spans(eq: Equipment, cal: ShiftCalendar, seed: int, day: dt.date) -> list[Span]:
    """The machine's spans tiling [block start of day, block start of the next day)."""
    start = _block_start(cal, day)
    end = _block_start(cal, day + dt.timedelta(days=1))
    outside = MachineState.OFF if eq.behaviour.outside_shift == "off" else MachineState.IDLE
    rng = _rng(seed, eq.id, day, "states")
    program_index = rng.randrange(len(eq.programs))
    raw: list[tuple[float, float, MachineState, int]] = []
    t = start
    # Outside shifts no program is active (-1): a weekend OFF is then one span across
    # midnights, whatever program each day happens to draw.
    for w in cal.windows(day):
        if w.start > t:
            raw.append((t, w.start, outside, NO_PROGRAM))
        spans, program_index = _window_spans(eq, w, rng, program_index)
        raw.extend(spans)
        t = w.end
    if end > t:
        raw.append((t, end, outside, NO_PROGRAM))

    power_rng = _rng(seed, eq.id, day, "power")
    out: list[Span] = []
    for a, b, state, p in raw:
        power = eq.power_kw[state]
        feed = 100.0
        if state is MachineState.RUNNING:
            power = round(power * (1 + eq.power_jitter * power_rng.uniform(-1, 1)), 3)
            feed = power_rng.choice(FEED_OVERRIDES_PCT)
        span = Span(a, b, state, power, eq.programs[p] if p != NO_PROGRAM else "", feed)
        if out and _same_run(out[-1], span):
            out[-1] = dataclasses.replace(span, start=out[-1].start)
        else:
            out.append(span)
    return out


def _same_run(a: Span, b: Span) -> bool:
    return (
        a.end == b.start
        and a.state is b.state
        and a.power_kw == b.power_kw
        and a.program == b.program
        and a.feed_override_pct == b.feed_override_pct
    )


def spans_from(eq: Equipment, cal: ShiftCalendar, seed: int, t: float) -> Iterator[Span]:
    """Endless iterator of spans, the first one containing t (clipped to start at t).

    Spans that continue across a day boundary (a weekend OFF) come out as one span.
    """
    day = cal.local_date(t) - dt.timedelta(days=1)
    pending: Span | None = None
    while True:
        for raw in day_spans(eq, cal, seed, day):
            if raw.end <= t:
                continue
            span = raw if raw.start >= t else dataclasses.replace(raw, start=t)
            if pending is None:
                pending = span
            elif _same_run(pending, span):
                pending = dataclasses.replace(span, start=pending.start)
            else:
                yield pending
                pending = span
        day += dt.timedelta(days=1)
