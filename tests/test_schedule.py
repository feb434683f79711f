"""The seeded schedule: it tiles time, honours the calendar and repeats itself exactly."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from simulators.calendar import ShiftCalendar
from simulators.scenario import (
    Calendar,
    MachineState,
    Scenario,
    default_scenario_path,
    load_scenario,
)
from simulators.schedule import day_spans, spans_from

MONDAY = dt.date(2026, 11, 23)


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario(default_scenario_path())


def local(s: Scenario, day: dt.date, hh: int, mm: int = 0) -> float:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=s.tz).timestamp()


def test_a_day_tiles_exactly_on_whole_seconds(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    for eq in demo.equipment:
        spans = day_spans(eq, cal, demo.seed, MONDAY)
        assert spans[0].start == local(demo, MONDAY, 0)
        assert spans[-1].end == local(demo, MONDAY + dt.timedelta(days=1), 0)
        for a, b in itertools.pairwise(spans):
            assert a.end == b.start
        for s in spans:
            assert s.start < s.end
            assert s.start == int(s.start)
            assert s.end == int(s.end)


def test_off_outside_shifts_on_weekends_and_holidays(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    eq = demo.equipment_by_id()["cnc-05"]
    for s in day_spans(eq, cal, demo.seed, MONDAY):
        if s.end <= local(demo, MONDAY, 8):
            assert s.state is MachineState.OFF
    sunday = dt.date(2026, 11, 22)
    national_day = dt.date(2026, 10, 1)  # a Thursday, declared a holiday
    for day in (sunday, national_day):
        assert {s.state for s in day_spans(eq, cal, demo.seed, day)} == {MachineState.OFF}


def test_breaks_are_planned_stops(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    lunch = (local(demo, MONDAY, 12), local(demo, MONDAY, 12, 30))
    supper = (local(demo, MONDAY, 19, 30), local(demo, MONDAY, 20))
    for eq in demo.equipment:
        spans = day_spans(eq, cal, demo.seed, MONDAY)
        for start, end in (lunch, supper):
            covering = [s for s in spans if s.start < end and s.end > start]
            assert [s.state for s in covering] == [MachineState.PLANNED_STOP], eq.id
            assert covering[0].start <= start
            assert covering[0].end >= end


def test_the_same_seed_gives_the_same_day(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    eq = demo.equipment_by_id()["cnc-03"]
    assert day_spans(eq, cal, 11, MONDAY) == day_spans(
        eq, ShiftCalendar(demo.calendar, demo.tz), 11, MONDAY
    )
    assert day_spans(eq, cal, 11, MONDAY) != day_spans(eq, cal, 12, MONDAY)


def test_a_night_shift_runs_past_midnight(demo: Scenario) -> None:
    calendar = Calendar.model_validate(
        {
            "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "shifts": [{"name": "night", "start": "22:00", "end": "06:00"}],
        }
    )
    cal = ShiftCalendar(calendar, demo.tz)
    eq = demo.equipment_by_id()["cnc-01"]
    spans = day_spans(eq, cal, 3, MONDAY)
    tuesday = MONDAY + dt.timedelta(days=1)
    assert spans[0].start == local(demo, MONDAY, 6)  # Sunday's night shift ended here
    assert spans[-1].end == local(demo, tuesday, 6)
    night = [s for s in spans if s.start >= local(demo, MONDAY, 22)]
    assert night
    assert all(s.state is not MachineState.OFF for s in night)
    assert any(s.state is MachineState.RUNNING for s in night)
    day = [s for s in spans if s.end <= local(demo, MONDAY, 22)]
    assert {s.state for s in day} == {MachineState.OFF}


def test_spans_from_merges_a_weekend_and_starts_at_t(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    eq = demo.equipment_by_id()["cnc-01"]
    sunday_10 = local(demo, MONDAY - dt.timedelta(days=1), 10)
    it = spans_from(eq, cal, demo.seed, sunday_10)
    first = next(it)
    assert first.start == sunday_10
    assert first.state is MachineState.OFF
    assert first.end == local(demo, MONDAY, 8), "one OFF span from Saturday night to Monday"
    second = next(it)
    assert second.start == first.end
    assert second.state is not MachineState.OFF
