"""The run rules of machine states, pure: a device's state from its machine_state and
device_status samples (`effective_state`), maximal runs of one state (`runs`), and the one
NO_DATA rule (`hold_until`). derive/intervals.py applies them at ingest over the stored
samples; the KPIs apply them to the silence at a period's end (kpi/edges.py), the raw
recomputation of verify (kpi/raw.py) and the offline verifier over a bundle's samples,
which imports this module without a database driver (docs/evidence-verify.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from edge_agent.contract.sample import COUNTER_ROLES, MachineState

OFFLINE = "OFFLINE"
UNKNOWN = "UNKNOWN"
NO_DATA = "NO_DATA"
# three default heartbeats: a device this long without a sample is not being heard
GAP_AFTER = timedelta(seconds=900)
_CANONICAL = frozenset(s.value for s in MachineState)
COUNTER_ROLE_NAMES = tuple(sorted(r.value for r in COUNTER_ROLES))
# instants: datetimes here and at ingest; epoch seconds where the KPIs read them back
_T = TypeVar("_T", datetime, float)


def effective_state(state: str | None, status: str | None) -> str:
    if status == "offline":
        return OFFLINE
    if state is None or state not in _CANONICAL:
        return UNKNOWN
    return state


@dataclass(frozen=True, slots=True)
class Event:
    ts: datetime
    kind: str  # "state" | "status"
    value: str | None  # None: bad quality


def runs(
    events: Sequence[Event],
    *,
    state: str | None = None,
    status: str | None = None,
    gap: timedelta | None = GAP_AFTER,
) -> list[tuple[datetime, str]]:
    """(start, state) of each maximal run, from events sorted by time.

    `state`/`status` are the values in force before the first event. Events at the same
    instant are applied together before the state is read. Two events more than `gap`
    apart while the device is not offline: NO_DATA from the first (the last thing heard)
    to the second.
    """
    out: list[tuple[datetime, str]] = []
    i, n = 0, len(events)
    last: datetime | None = None
    while i < n:
        ts = events[i].ts
        if last is not None:
            # the run in force (out[-1]: there is one once a sample is read), as the
            # silence since the last sample leaves it
            start, value = out.pop()
            for run in hold_until(start, value, last, ts, gap=gap):
                if not out or out[-1][1] != run[1]:
                    out.append(run)
        last = ts
        while i < n and events[i].ts == ts:
            e = events[i]
            if e.kind == "state":
                state = e.value
            else:
                status = e.value
            i += 1
        value = effective_state(state, status)
        if not out or out[-1][1] != value:
            out.append((ts, value))
    return out


def hold_until(
    start: _T, state: str, last: _T, heard: _T, *, gap: timedelta | None = GAP_AFTER
) -> list[tuple[_T, str]]:
    """The NO_DATA rule, the one place it is stated: (start, state) of the runs of a
    device from `start`, where its state became `state`, to `heard` (its next sample, or
    the end of what is asked), its last sample before that at `last`.

    A state holds until the next sample. Two samples more than `gap` apart (or the last
    one and `heard`) mean nothing was heard in between: NO_DATA from the last one, and
    nothing left of `state` when its run began there; not while the device is offline
    (it is not expected to send: its offline spell is measured as such). Instants are
    datetimes, or epoch seconds.
    """
    if gap is None or state == OFFLINE or not _longer(heard - last, gap):
        return [(start, state)]
    out: list[tuple[_T, str]] = [(start, state)] if start < last else []
    out.append((max(start, last), NO_DATA))
    return out


def _longer(silence: timedelta | float, gap: timedelta) -> bool:
    if isinstance(silence, timedelta):
        return silence > gap
    return silence > gap.total_seconds()
