"""A report's windows and what is cut at their edges, pure: a site's period as UTC
instants (`local_period`), the counter roles (pro rata or whole parts), a series'
reference, the series grouped by their site's window, the window cut on UTC hours, and
state intervals clipped to it under the NO_DATA rule (derive/runs.py's `hold_until`).
kpi/window.py and kpi/plant.py fetch with them from the database; the offline verifier
applies them to a bundle's samples without a database driver.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from zoneinfo import ZoneInfo

from ingest_server.derive.runs import hold_until
from ingest_server.kpi.records import DeviceKey, Inputs, Site
from ingest_server.kpi.timemodel import Interval

# counters whose quantity flows continuously: a reading interval cut by the period's
# edge is shared pro rata; part counters count whole parts at the time they are seen
PRORATED_ROLES = frozenset({"energy_kwh", "water_m3", "gas_m3", "steam_t", "air_m3"})
PART_ROLES = ("part_count_total", "part_count_good", "part_count_scrap")


def local_period(
    date_from: dt.date, date_to: dt.date, timezone: str, as_of: dt.datetime
) -> tuple[dt.datetime, dt.datetime, bool]:
    """[start, end) UTC of local dates from..to inclusive, end cut at as_of; partial?"""
    tz = ZoneInfo(timezone)
    start = dt.datetime.combine(date_from, dt.time(), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(
        dt.UTC
    )
    partial = as_of < end
    return start, min(end, max(as_of, start)), partial


@dataclass(frozen=True, slots=True)
class SeriesRef:
    series_id: int
    device: DeviceKey
    tag: str
    role: str
    wrap: float | None


def is_counter(r: SeriesRef) -> bool:
    return r.role in PRORATED_ROLES or r.role in PART_ROLES


def site_of(inputs: Inputs) -> dict[DeviceKey, Site]:
    """Each device's site: its equipment's, else its meter's."""
    out: dict[DeviceKey, Site] = {}
    for e in inputs.equipment:
        if e.device:
            out[e.device] = inputs.site(e.site)
    for m in inputs.meters:
        if m.device:
            out.setdefault(m.device, inputs.site(m.site))
    return out


def by_window(
    refs: Iterable[SeriesRef], sites: dict[DeviceKey, Site]
) -> dict[tuple[dt.datetime, dt.datetime], list[SeriesRef]]:
    """The series by the window of their device's site."""
    groups: dict[tuple[dt.datetime, dt.datetime], list[SeriesRef]] = defaultdict(list)
    for r in refs:
        s = sites[r.device]
        groups[(s.start, s.end)].append(r)
    return groups


def state_devices(group: Sequence[SeriesRef]) -> dict[DeviceKey, list[int]]:
    """Devices with a machine state -> their state and status series."""
    with_state = {r.device for r in group if r.role == "machine_state"}
    out: dict[DeviceKey, list[int]] = defaultdict(list)
    for r in group:
        if r.device in with_state and r.role in ("machine_state", "device_status"):
            out[r.device].append(r.series_id)
    return out


# -- hours -----------------------------------------------------------------------------


def hour_floor(t: dt.datetime) -> dt.datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def hour_ceil(t: dt.datetime) -> dt.datetime:
    f = hour_floor(t)
    return f if f == t else f + dt.timedelta(hours=1)


def hour_pieces(
    start: dt.datetime, end: dt.datetime
) -> tuple[tuple[dt.datetime, dt.datetime] | None, list[tuple[dt.datetime, dt.datetime]]]:
    """[start, end) cut on UTC hours: the whole hours as one span (None if there is
    none), and the pieces of hours at either edge (the hour holding `as_of`, a start or
    end off the hour)."""
    if end <= start:
        return None, []
    h1, h2 = hour_ceil(start), hour_floor(end)
    if h1 > h2:  # inside one hour
        return None, [(start, end)]
    edges = [(a, b) for a, b in ((start, h1), (h2, end)) if b > a]
    return ((h1, h2) if h1 < h2 else None), edges


# -- state intervals -------------------------------------------------------------------


def clip_intervals(
    rows: Sequence[tuple[float, float | None, str]],
    start: float,
    end: float,
    last_seen: float | None,
) -> list[Interval]:
    """Intervals clipped to [start, end). The open last interval lasts while samples keep
    coming: more than GAP_AFTER after the last one heard, NO_DATA (unless the device is
    offline: then nothing is expected)."""
    out: list[Interval] = []
    for a, b, state in rows:
        if b is not None:
            _push(out, a, b, state, start, end)
            continue
        held = [(a, state)] if last_seen is None else hold_until(a, state, last_seen, end)
        for p, q, s in spans(held, end):
            _push(out, p, q, s, start, end)
    return out


def spans(runs: Sequence[tuple[float, str]], end: float) -> list[tuple[float, float, str]]:
    """(start, end, state) of runs given by their starts, the last one ending at `end`."""
    return [(a, b, s) for (a, s), (b, _) in pairwise([*runs, (end, "")])]


def _push(  # noqa: PLR0917
    out: list[Interval],
    a: float,
    b: float,
    state: str,
    start: float,
    end: float,
) -> None:
    a, b = max(a, start), min(b, end)
    if b <= a:
        return
    if out and out[-1].state == state and out[-1].end == a:
        out[-1] = Interval(out[-1].start, b, state)
    else:
        out.append(Interval(a, b, state))
