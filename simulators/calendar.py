"""Shift calendar arithmetic: local working days and shifts to UTC windows.

Pure functions over the scenario's `Calendar` and the site's time zone. Times are
epoch seconds (UTC). A shift belongs to the local date it starts on; a shift that
ends at or before its start runs past midnight into the next day.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from simulators.scenario import WEEKDAYS, Calendar

DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class ShiftWindow:
    shift: str
    local_date: dt.date
    start: float
    end: float
    breaks: tuple[tuple[float, float], ...]


def is_workday(calendar: Calendar, day: dt.date) -> bool:
    if day in calendar.extra_workdays:
        return True
    if day in calendar.holidays:
        return False
    return WEEKDAYS[day.weekday()] in calendar.workdays


def local_midnight(tz: ZoneInfo, day: dt.date) -> float:
    return dt.datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()


def local_date(tz: ZoneInfo, t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, tz).date()


def _at(tz: ZoneInfo, day: dt.date, minutes: int) -> float:
    # Wall-clock arithmetic on an aware datetime, so a DST change inside a shift is honoured.
    base = dt.datetime(day.year, day.month, day.day, tzinfo=tz)
    return (base + dt.timedelta(minutes=minutes)).timestamp()


class ShiftCalendar:
    """A site's calendar in its time zone, with shift windows memoised per day."""

    def __init__(self, calendar: Calendar, tz: ZoneInfo) -> None:
        self.calendar = calendar
        self.tz = tz
        self._days: dict[dt.date, tuple[ShiftWindow, ...]] = {}

    def windows(self, day: dt.date) -> tuple[ShiftWindow, ...]:
        """Shift instances that start on local `day`; none on a non-working day."""
        cached = self._days.get(day)
        if cached is None:
            cached = self._days[day] = self._build(day)
        return cached

    def _build(self, day: dt.date) -> tuple[ShiftWindow, ...]:
        if not is_workday(self.calendar, day):
            return ()
        out = []
        for shift in self.calendar.shifts:
            s = shift.start_min
            breaks = tuple(
                (_at(self.tz, day, s + bs), _at(self.tz, day, s + be))
                for bs, be in shift.break_offsets_min()
            )
            out.append(
                ShiftWindow(
                    shift=shift.name,
                    local_date=day,
                    start=_at(self.tz, day, s),
                    end=_at(self.tz, day, s + shift.length_min),
                    breaks=breaks,
                )
            )
        return tuple(sorted(out, key=lambda w: w.start))

    def local_date(self, t: float) -> dt.date:
        return local_date(self.tz, t)

    def midnight(self, day: dt.date) -> float:
        return local_midnight(self.tz, day)

    def between(self, start: float, end: float) -> list[ShiftWindow]:
        """Every shift window that overlaps [start, end)."""
        day = self.local_date(start) - dt.timedelta(days=1)
        last = self.local_date(end)
        out: list[ShiftWindow] = []
        while day <= last:
            out.extend(w for w in self.windows(day) if w.end > start and w.start < end)
            day += dt.timedelta(days=1)
        return out

    def in_shift(self, t: float) -> bool:
        return bool(self.between(t, t + 1e-6))

    def next_boundary(self, t: float) -> float:
        """The first shift start or end strictly after t (searching at most two weeks ahead)."""
        day = self.local_date(t) - dt.timedelta(days=1)
        for _ in range(16):
            for w in self.windows(day):
                for edge in (w.start, w.end):
                    if edge > t:
                        return edge
            day += dt.timedelta(days=1)
        return t + 14 * DAY_S
