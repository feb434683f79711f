"""Planned operation time: a site's shift calendar as UTC windows over a period.

The registry's calendar (`CalendarDef`: workdays, holidays, 调休 extra workdays, shifts
with breaks, in local HH:MM) and the site's time zone give, for any period, the shift
windows that overlap it. A shift belongs to the local date it starts on; an end at or
before the start runs past midnight ("24:00" is midnight at the end of the day). Local
times are wall-clock times, so a shift across a daylight-saving change is as long as the
clock on the wall says.

Written independently of simulators/calendar.py on purpose: the end-to-end tests compare
KPIs with the simulator's truth, and two implementations that agree are a check that one
shared implementation could not give.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from ingest_server.repo.registry_model import CalendarDef, Shift, hhmm

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 24 * 60


@dataclass(frozen=True, slots=True)
class Window:
    """One shift instance: [start, end) in UTC, its breaks inside it."""

    shift: str
    local_date: dt.date
    start: dt.datetime
    end: dt.datetime
    breaks: tuple[tuple[dt.datetime, dt.datetime], ...]

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def break_seconds(self) -> float:
        return sum((b - a).total_seconds() for a, b in self.breaks)


def works(calendar: CalendarDef, day: dt.date) -> bool:
    if day in calendar.extra_workdays:
        return True
    if day in calendar.holidays:
        return False
    return _WEEKDAYS[day.weekday()] in calendar.workdays


def _wall(tz: ZoneInfo, day: dt.date, minutes: int) -> dt.datetime:
    """The UTC instant of `minutes` after local midnight of `day` on the wall clock."""
    extra_days, minute_of_day = divmod(minutes, _DAY)
    local = dt.datetime.combine(day + dt.timedelta(days=extra_days), dt.time(), tzinfo=tz)
    local += dt.timedelta(minutes=minute_of_day)  # aware arithmetic is wall-clock arithmetic
    return local.astimezone(dt.UTC)


def _shift_window(shift: Shift, day: dt.date, tz: ZoneInfo) -> Window:
    start = hhmm(shift.start)
    end = hhmm(shift.end)
    if end <= start:
        end += _DAY
    breaks = []
    for b in shift.breaks:
        bs, be = hhmm(b.start), hhmm(b.end)
        if bs < start:  # a break after midnight in a night shift
            bs += _DAY
        if be <= bs:
            be += _DAY
        breaks.append((_wall(tz, day, bs), _wall(tz, day, be)))
    return Window(
        shift=shift.name,
        local_date=day,
        start=_wall(tz, day, start),
        end=_wall(tz, day, end),
        breaks=tuple(sorted(breaks)),
    )


def windows(
    calendar: CalendarDef, timezone: str, start: dt.datetime, end: dt.datetime
) -> list[Window]:
    """Every shift window that overlaps [start, end), in time order."""
    tz = ZoneInfo(timezone)
    out: list[Window] = []
    for day in _days(start.astimezone(tz).date() - dt.timedelta(days=1), end.astimezone(tz).date()):
        if not works(calendar, day):
            continue
        for shift in calendar.shifts:
            w = _shift_window(shift, day, tz)
            if w.end > start and w.start < end:
                out.append(w)
    out.sort(key=lambda w: w.start)
    return out


def _days(first: dt.date, last: dt.date) -> Iterator[dt.date]:
    day = first
    while day <= last:
        yield day
        day += dt.timedelta(days=1)
