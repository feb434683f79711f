"""Planned operation windows from the registry's calendar, against the simulator's own
(independent) calendar arithmetic: the same windows and breaks, day after day, across
holidays, 调休 workdays, night shifts and daylight-saving changes."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from ingest_server.kpi.calendar import windows
from ingest_server.repo.registry import CalendarDef, hhmm, load_registry
from simulators.calendar import ShiftCalendar
from simulators.scenario import Calendar, default_scenario_path

DEMO = default_scenario_path().with_name("demo-registry.yaml")
NIGHTS = {
    "workdays": ["mon", "tue", "wed", "thu", "fri"],
    "holidays": ["2026-03-27"],
    "extra_workdays": ["2026-03-28"],
    "shifts": [
        {"name": "day", "start": "06:00", "end": "14:00",
         "breaks": [{"start": "10:00", "end": "10:20"}]},
        {"name": "late", "start": "14:00", "end": "22:00"},
        {"name": "night", "start": "22:00", "end": "06:00",
         "breaks": [{"start": "23:50", "end": "00:20"}, {"start": "02:00", "end": "02:30"}]},
    ],
}  # fmt: skip


def _epoch(t: dt.datetime) -> float:
    return t.timestamp()


@pytest.mark.parametrize(
    ("definition", "timezone", "first", "days"),
    [
        (None, "Asia/Shanghai", dt.date(2026, 9, 20), 75),  # the demo plant, National Day
        (NIGHTS, "Europe/Berlin", dt.date(2026, 3, 20), 20),  # DST starts 2026-03-29
        (NIGHTS, "Europe/Berlin", dt.date(2026, 10, 20), 20),  # and ends 2026-10-25
    ],
)
def test_windows_equal_the_simulators_day_after_day(
    definition: dict[str, object] | None, timezone: str, first: dt.date, days: int
) -> None:
    if definition is None:
        cal = load_registry(DEMO).enterprises[0].calendars[0]
        definition = cal.model_dump(mode="json", exclude={"id"})
    else:
        cal = CalendarDef.model_validate(definition)
    tz = ZoneInfo(timezone)
    sim = ShiftCalendar(Calendar.model_validate(definition), tz)
    start = dt.datetime.combine(first, dt.time(), tzinfo=tz)
    end = start + dt.timedelta(days=days)
    mine = windows(cal, timezone, start, end)
    theirs = sim.between(start.timestamp(), end.timestamp())
    assert len(mine) > days
    assert [(w.shift, w.local_date, _epoch(w.start), _epoch(w.end)) for w in mine] == [
        (w.shift, w.local_date, w.start, w.end) for w in theirs
    ]
    assert [tuple((_epoch(a), _epoch(b)) for a, b in w.breaks) for w in mine] == [
        w.breaks for w in theirs
    ]


def test_holidays_extra_workdays_and_daylight_saving() -> None:
    cal = CalendarDef.model_validate(NIGHTS)
    tz = "Europe/Berlin"
    start = dt.datetime(2026, 3, 27, tzinfo=ZoneInfo(tz))
    by_date: dict[dt.date, list[float]] = {}
    for w in windows(cal, tz, start, start + dt.timedelta(days=3)):
        by_date.setdefault(w.local_date, []).append(w.seconds / 3600)
    assert dt.date(2026, 3, 27) not in by_date  # a holiday (Friday)
    assert by_date[dt.date(2026, 3, 28)] == [8, 8, 7]  # 调休 Saturday; its night loses an hour
    assert dt.date(2026, 3, 29) not in by_date  # Sunday


@pytest.mark.parametrize(("text", "minutes"), [("00:00", 0), ("08:30", 510), ("24:00", 1440)])
def test_hhmm(text: str, minutes: int) -> None:
    assert hhmm(text) == minutes


@pytest.mark.parametrize("text", ["24:30", "12:60", "25:00", "8:00", "noon"])
def test_a_registry_calendar_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time of day"):
        hhmm(text)
    with pytest.raises(ValidationError, match="is not a time of day: write HH:MM"):
        CalendarDef.model_validate(
            {"workdays": ["mon"], "shifts": [{"name": "s", "start": text, "end": "16:00"}]}
        )


def test_a_night_shift_belongs_to_its_start_day_and_is_split_at_midnight() -> None:
    """What docs/ingest.md#registry says: the shift happens if the day it starts on is a
    workday; each day's report counts the part of it inside that day."""
    from ingest_server.kpi.equipment import segments_of  # noqa: PLC0415
    from ingest_server.kpi.records import Site  # noqa: PLC0415
    from ingest_server.kpi.timemodel import _WORK  # noqa: PLC0415

    cal = CalendarDef.model_validate(NIGHTS)
    tz = ZoneInfo("Asia/Shanghai")

    def work_hours(day: dt.date) -> float:
        start = dt.datetime.combine(day, dt.time(), tzinfo=tz)
        end = start + dt.timedelta(days=1)
        site = Site("p", "P", "P", "Asia/Shanghai", "national", cal,
                    start.astimezone(dt.UTC), end.astimezone(dt.UTC))  # fmt: skip
        return sum(b - a for a, b, kind in segments_of(site) if kind == _WORK) / 3600

    # Friday 2026-03-20 (a workday): Thursday's night until 06:00 less its breaks
    # 00:00-00:20 and 02:00-02:30 (5h10), day 7h40, late 8h, night 22:00-24:00 less 10 min
    friday = (5 + 10 / 60) + (7 + 40 / 60) + 8 + (1 + 50 / 60)
    assert work_hours(dt.date(2026, 3, 20)) == pytest.approx(friday)
    # Saturday (no workday): no shift of its own, but Friday's night until 06:00 (5h10)
    assert work_hours(dt.date(2026, 3, 21)) == pytest.approx(5 + 10 / 60)
    # Sunday: nothing starts on Saturday, so nothing runs into Sunday
    assert work_hours(dt.date(2026, 3, 22)) == 0
    # Monday 2026-03-23 starts its own shifts but gets nothing from Sunday night
    assert work_hours(dt.date(2026, 3, 23)) == pytest.approx(friday - (5 + 10 / 60))
