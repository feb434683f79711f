"""Where the time went: the loss Pareto of DOWN and IDLE time by downtime reason, and MTBF
and MTTR by cause (停机原因), pure, over typed stop records.

    repo/downtime.py stops()  ->  [Stop]  ->  loss_pareto(by=...)      ->  [Pareto]
                                            \\->  by_cause(running_s=...) ->  [CauseFigures]

A `Stop` is one DOWN or IDLE state interval of a machine (derive/intervals.py) with the
reason an operator attached to it, or none. Times are epoch seconds; an interval is
counted by its part inside the period [start, end), the same way for every reason, so
the bars of a Pareto add up to the DOWN and IDLE time of the machines in it.

Loss Pareto: per group (the whole scope, a process or a machine) one bar per reason and
one for the time no reason is attached to (`reason` None), each with its DOWN and IDLE
seconds, sorted by their sum, largest first, with its share of the group's loss time and
the cumulative share up to it (the Pareto curve). The time is calendar time: a stop
outside the shifts has a cause too, and counts here, while availability counts only the
DOWN and IDLE time of shift work (docs/kpi.md, ISO 22400-2 time model).

By cause, as docs/kpi.md defines MTBF and MTTR for all DOWN (ISO 22400-2, 6): events of
a cause are its DOWN intervals starting in the period; MTTR = its DOWN time in the period
/ its events; MTBF = the running time of the scope / its events, the mean running time
between two failures of that cause. The causes partition the DOWN time and the events,
so the events add up to the scope's DOWN events and the failure rates 1 / MTBF of the
causes add up to the scope's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

LOSS_STATES = ("DOWN", "IDLE")
Grouping = Literal["all", "process", "equipment"]


@dataclass(frozen=True, slots=True)
class Stop:
    """A DOWN or IDLE interval [start, end) of a machine and the reason attached to it."""

    equipment: str
    process: str | None
    state: str
    start: float
    end: float
    reason: str | None


class ParetoBar(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str | None  # None: the time no reason is attached to
    down_s: float
    idle_s: float
    loss_s: float
    stops: int  # intervals with time in the period
    share: float  # of the group's loss time
    cumulative_share: float


class Pareto(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str | None  # the process or machine; None: every stop (by="all") or no process
    loss_s: float
    bars: list[ParetoBar]


class CauseFigures(BaseModel):
    model_config = ConfigDict(frozen=True)

    reason: str | None  # None: DOWN time no reason is attached to
    events: int
    down_s: float
    mtbf_s: float | None  # None: no event of the cause in the period
    mttr_s: float | None


def _inside(stop: Stop, start: float, end: float) -> float:
    return max(0.0, min(stop.end, end) - max(stop.start, start))


def _bars(stops: list[Stop], start: float, end: float) -> list[ParetoBar]:
    tally: dict[str | None, list[float]] = {}  # reason -> [down, idle, stops]
    for st in stops:
        s = _inside(st, start, end)
        if s <= 0:
            continue
        t = tally.setdefault(st.reason, [0.0, 0.0, 0])
        t[0 if st.state == "DOWN" else 1] += s
        t[2] += 1
    total = sum(t[0] + t[1] for t in tally.values())
    # largest first; equal times by reason id, the unassigned bar after the reasons
    order = sorted(tally.items(), key=lambda kv: (-(kv[1][0] + kv[1][1]), kv[0] is None,
                                                   kv[0] or ""))  # fmt: skip
    bars, running = [], 0.0
    for reason, (down, idle, n) in order:
        running += down + idle
        bars.append(ParetoBar(
            reason=reason, down_s=down, idle_s=idle, loss_s=down + idle, stops=int(n),
            share=(down + idle) / total, cumulative_share=running / total,
        ))  # fmt: skip
    return bars


def loss_pareto(
    stops: Iterable[Stop], *, start: float, end: float, by: Grouping = "all"
) -> list[Pareto]:
    """The Pareto of each group over [start, end): one for every stop (`by="all"`), or one
    per process or machine, the group with the most loss time first (then by id).
    Intervals of other states are not losses here and are left out; a group whose stops
    have no time in the period has no Pareto."""
    key: Callable[[Stop], str | None] = {
        "all": lambda _s: None,
        "process": lambda s: s.process,
        "equipment": lambda s: s.equipment,
    }[by]
    groups: dict[str | None, list[Stop]] = {}
    for st in stops:
        if st.state in LOSS_STATES:
            groups.setdefault(key(st), []).append(st)
    out = []
    for group, members in groups.items():
        bars = _bars(members, start, end)
        if bars:
            out.append(Pareto(group=group, loss_s=sum(b.loss_s for b in bars), bars=bars))
    out.sort(key=lambda p: (-p.loss_s, p.group is None, p.group or ""))
    return out


def by_cause(
    stops: Iterable[Stop], *, start: float, end: float, running_s: float
) -> list[CauseFigures]:
    """MTBF and MTTR per reason of the DOWN stops over [start, end), `running_s` being
    every RUNNING second of the same machines in the period (the MTBF of all DOWN divides
    it too); the cause with the most DOWN time first, the unassigned time after the
    reasons on a tie. A cause whose DOWN time in the period all belongs to intervals that
    started before it has time but no event, and no MTBF or MTTR."""
    tally: dict[str | None, list[float]] = {}  # reason -> [down, events]
    for st in stops:
        if st.state != "DOWN":
            continue
        s = _inside(st, start, end)
        began = start <= st.start < end
        if s <= 0 and not began:
            continue
        t = tally.setdefault(st.reason, [0.0, 0])
        t[0] += s
        t[1] += began
    rows = [
        CauseFigures(
            reason=reason,
            events=int(n),
            down_s=down,
            mtbf_s=running_s / n if n else None,
            mttr_s=down / n if n else None,
        )
        for reason, (down, n) in tally.items()
    ]
    rows.sort(key=lambda r: (-r.down_s, r.reason is None, r.reason or ""))
    return rows
