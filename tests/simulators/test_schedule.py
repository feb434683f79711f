"""The seeded schedule: it tiles time, honours the calendar and repeats itself exactly.

Most tests use a hand-made calendar so that the expected shift and break times can be
read off the test itself; the demo is used where any credible machine will do.
"""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from simulators.calendar import ShiftCalendar
from simulators.scenario import (
    Behaviour,
    Calendar,
    Equipment,
    MachineState,
    Scenario,
    default_scenario_path,
    load_scenario,
)
from simulators.schedule import Span, day_spans, spans_from

SHANGHAI = ZoneInfo("Asia/Shanghai")
MONDAY = dt.date(2026, 11, 23)
SATURDAY, SUNDAY = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
WEDNESDAY = dt.date(2026, 11, 25)
DAY = dt.timedelta(days=1)

# Mon-Fri 08:00-16:00 (lunch 12:00-12:30) and 16:00-23:00 (supper 19:00-19:45);
# Wednesday 25 Nov is a holiday and Saturday 28 Nov a make-up working day.
TWO_SHIFTS = Calendar.model_validate(
    {
        "workdays": ["mon", "tue", "wed", "thu", "fri"],
        "holidays": [WEDNESDAY],
        "extra_workdays": [dt.date(2026, 11, 28)],
        "shifts": [
            {
                "name": "day",
                "start": "08:00",
                "end": "16:00",
                "breaks": [{"start": "12:00", "end": "12:30"}],
            },
            {
                "name": "late",
                "start": "16:00",
                "end": "23:00",
                "breaks": [{"start": "19:00", "end": "19:45"}],
            },
        ],
    }
)


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario(default_scenario_path())


@pytest.fixture(scope="module")
def two_shifts() -> ShiftCalendar:
    return ShiftCalendar(TWO_SHIFTS, SHANGHAI)


def at(day: dt.date, hh: int, mm: int = 0, tz: ZoneInfo = SHANGHAI) -> float:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=tz).timestamp()


def machine(demo: Scenario, eq_id: str, **behaviour: object) -> Equipment:
    eq = demo.equipment_by_id()[eq_id]
    if not behaviour:
        return eq
    merged = eq.behaviour.model_dump() | behaviour
    return eq.model_copy(update={"behaviour": Behaviour.model_validate(merged)})


def assert_tiles(spans: list[Span], start: float, end: float) -> None:
    assert spans[0].start == start
    assert spans[-1].end == end
    for a, b in itertools.pairwise(spans):
        assert a.end == b.start, (a, b)
    for s in spans:
        assert s.start < s.end, s
        assert s.start == int(s.start), s
        assert s.end == int(s.end), s


def covering(spans: list[Span], start: float, end: float) -> list[Span]:
    return [s for s in spans if s.start < end and s.end > start]


def test_a_day_tiles_exactly_on_whole_seconds(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    for eq in demo.equipment:
        spans = day_spans(eq, cal, demo.seed, MONDAY)
        assert_tiles(spans, at(MONDAY, 0), at(MONDAY + DAY, 0))


def test_consecutive_days_join_without_gaps(demo: Scenario, two_shifts: ShiftCalendar) -> None:
    # a week with a holiday, a weekend and a make-up Saturday, for every demo machine
    for eq in demo.equipment:
        week = [s for d in range(8) for s in day_spans(eq, two_shifts, 5, MONDAY + d * DAY)]
        assert_tiles(week, at(MONDAY, 0), at(MONDAY + 8 * DAY, 0))


def test_off_outside_shifts_and_on_days_off(demo: Scenario, two_shifts: ShiftCalendar) -> None:
    eq = demo.equipment_by_id()["cnc-05"]
    assert eq.behaviour.outside_shift == "off"
    for seed in range(5):
        monday = day_spans(eq, two_shifts, seed, MONDAY)
        early = covering(monday, at(MONDAY, 0), at(MONDAY, 8))
        late = covering(monday, at(MONDAY, 23), at(MONDAY + DAY, 0))
        assert [(s.start, s.end, s.state) for s in early] == [
            (at(MONDAY, 0), at(MONDAY, 8), MachineState.OFF)
        ]
        assert [(s.start, s.end, s.state) for s in late] == [
            (at(MONDAY, 23), at(MONDAY + DAY, 0), MachineState.OFF)
        ]
        in_shift = covering(monday, at(MONDAY, 8), at(MONDAY, 23))
        assert MachineState.OFF not in {s.state for s in in_shift}
        assert MachineState.RUNNING in {s.state for s in in_shift}
        for day in (SATURDAY, SUNDAY, WEDNESDAY):  # weekend and holiday
            spans = day_spans(eq, two_shifts, seed, day)
            assert [(s.start, s.end, s.state) for s in spans] == [
                (at(day, 0), at(day + DAY, 0), MachineState.OFF)
            ]
            assert spans[0].power_kw == eq.power_kw[MachineState.OFF]


def test_a_make_up_saturday_is_worked(demo: Scenario, two_shifts: ShiftCalendar) -> None:
    eq = demo.equipment_by_id()["cnc-05"]
    make_up = dt.date(2026, 11, 28)
    assert make_up.weekday() == 5
    states = {
        s.state
        for s in covering(day_spans(eq, two_shifts, 1, make_up), at(make_up, 8), at(make_up, 23))
    }
    assert MachineState.RUNNING in states
    assert MachineState.OFF not in states


def test_a_machine_left_powered_idles_outside_shifts(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = machine(demo, "ht-02", outside_shift="idle")
    spans = day_spans(eq, two_shifts, 1, SUNDAY)
    assert [(s.state, s.power_kw) for s in spans] == [
        (MachineState.IDLE, eq.power_kw[MachineState.IDLE])
    ]
    night = covering(day_spans(eq, two_shifts, 1, MONDAY), at(MONDAY, 0), at(MONDAY, 8))
    assert {s.state for s in night} == {MachineState.IDLE}


def test_breaks_are_planned_stops_at_exactly_the_break_times(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    breaks = [
        (at(MONDAY, 12), at(MONDAY, 12, 30)),
        (at(MONDAY, 19), at(MONDAY, 19, 45)),
    ]
    for eq_id in ("cnc-01", "cnc-05", "ht-01", "wash-01", "drill-01"):
        # without random maintenance stops, nothing else can be PLANNED_STOP
        eq = machine(demo, eq_id, planned_stop_per_shift=0.0)
        for seed in range(3):
            spans = day_spans(eq, two_shifts, seed, MONDAY)
            stops = [(s.start, s.end) for s in spans if s.state is MachineState.PLANNED_STOP]
            assert stops == breaks, (eq_id, seed)
            for s in spans:
                if s.state is MachineState.PLANNED_STOP:
                    assert s.power_kw == eq.power_kw[MachineState.PLANNED_STOP]


def test_breaks_win_over_a_random_maintenance_stop(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = machine(demo, "cnc-05", planned_stop_per_shift=1.0)
    for seed in range(40):
        spans = day_spans(eq, two_shifts, seed, MONDAY)
        for start, end in (
            (at(MONDAY, 12), at(MONDAY, 12, 30)),
            (at(MONDAY, 19), at(MONDAY, 19, 45)),
        ):
            cover = covering(spans, start, end)
            assert {s.state for s in cover} == {MachineState.PLANNED_STOP}, seed
            assert cover[0].start <= start
            assert cover[-1].end >= end


def test_a_maintenance_stop_over_a_break_is_one_stop(demo: Scenario) -> None:
    cal = ShiftCalendar(demo.calendar, demo.tz)
    eq = machine(demo, "cnc-05", planned_stop_per_shift=1.0)
    for seed in range(150):
        spans = day_spans(eq, cal, seed, MONDAY)
        for a, b in itertools.pairwise(spans):
            assert not a.state is b.state is MachineState.PLANNED_STOP, (seed, a, b)


def test_a_night_shift_runs_past_midnight(demo: Scenario) -> None:
    calendar = Calendar.model_validate(
        {
            "workdays": ["mon", "tue", "wed", "thu", "fri"],
            "shifts": [
                {
                    "name": "night",
                    "start": "22:00",
                    "end": "06:00",
                    "breaks": [{"start": "02:00", "end": "02:30"}],
                }
            ],
        }
    )
    cal = ShiftCalendar(calendar, SHANGHAI)
    eq = machine(demo, "cnc-01", planned_stop_per_shift=0.0)
    tuesday = MONDAY + DAY
    for seed in range(3):
        # Sunday has no shift, so Monday's block starts at midnight and ends when
        # Monday's night shift ends on Tuesday morning
        spans = day_spans(eq, cal, seed, MONDAY)
        assert_tiles(spans, at(MONDAY, 0), at(tuesday, 6))
        assert {s.state for s in covering(spans, at(MONDAY, 0), at(MONDAY, 22))} == {
            MachineState.OFF
        }
        night = covering(spans, at(MONDAY, 22), at(tuesday, 6))
        assert night[0].start == at(MONDAY, 22)
        assert MachineState.OFF not in {s.state for s in night}
        assert MachineState.RUNNING in {s.state for s in night}
        stops = [(s.start, s.end) for s in night if s.state is MachineState.PLANNED_STOP]
        assert stops == [(at(tuesday, 2), at(tuesday, 2, 30))], "the break is after midnight"
        # Tuesday's block picks up where Monday's ended
        assert day_spans(eq, cal, seed, tuesday)[0].start == at(tuesday, 6)
    # Friday's night shift ends on Saturday morning; then the weekend is OFF
    friday, saturday = MONDAY + 4 * DAY, MONDAY + 5 * DAY
    assert day_spans(eq, cal, 1, friday)[-1].end == at(saturday, 6)
    weekend = day_spans(eq, cal, 1, saturday)
    assert_tiles(weekend, at(saturday, 6), at(saturday + DAY, 0))
    assert {s.state for s in weekend} == {MachineState.OFF}


def test_a_day_with_a_clock_change_tiles_its_23_or_25_hours(demo: Scenario) -> None:
    berlin = ZoneInfo("Europe/Berlin")
    calendar = Calendar.model_validate(
        {
            "workdays": ["sat", "sun"],
            "shifts": [{"name": "early", "start": "06:00", "end": "14:00"}],
        }
    )
    cal = ShiftCalendar(calendar, berlin)
    eq = demo.equipment_by_id()["cnc-05"]
    for day, hours in ((dt.date(2026, 3, 29), 23), (dt.date(2026, 10, 25), 25)):
        spans = day_spans(eq, cal, 1, day)
        assert_tiles(spans, at(day, 0, tz=berlin), at(day + DAY, 0, tz=berlin))
        assert (spans[-1].end - spans[0].start) / 3600 == hours
        # the shift is eight wall-clock hours after the change, at 06:00 local
        shift = [s for s in spans if s.state is not MachineState.OFF]
        assert shift[0].start == at(day, 6, tz=berlin)
        assert shift[-1].end == at(day, 14, tz=berlin)


def test_the_same_seed_gives_the_same_day(demo: Scenario) -> None:
    eq = demo.equipment_by_id()["cnc-03"]
    cal = ShiftCalendar(demo.calendar, demo.tz)
    again = ShiftCalendar(demo.calendar, demo.tz)  # no shared memo
    assert day_spans(eq, cal, 11, MONDAY) == day_spans(eq, again, 11, MONDAY)
    for other in (12, 13, 14):
        assert day_spans(eq, cal, 11, MONDAY) != day_spans(eq, cal, other, MONDAY)
    # the machine's id is part of the draw: two identical lathes have different days
    twin = eq.model_copy(update={"id": "cnc-99"})
    assert [(s.start, s.state) for s in day_spans(eq, cal, 11, MONDAY)] != [
        (s.start, s.state) for s in day_spans(twin, cal, 11, MONDAY)
    ]


def test_spans_from_starts_at_t_and_follows_the_days(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = demo.equipment_by_id()["cnc-05"]
    t = at(MONDAY, 10, 17) + 0.5  # inside a shift, not on a second
    until = at(MONDAY + 2 * DAY, 0)
    got = list(itertools.takewhile(lambda s: s.start < until, spans_from(eq, two_shifts, 3, t)))
    assert got[0].start == t
    for a, b in itertools.pairwise(got):
        assert a.end == b.start
    # the same states as day_spans gives for Monday and Tuesday, minute by minute
    days = [s for d in (MONDAY, MONDAY + DAY) for s in day_spans(eq, two_shifts, 3, d)]
    for minute in range(int(t) + 1, int(until), 60):
        assert state_at(got, minute) == state_at(days, minute), minute
    # inside Monday's shifts no day boundary can merge anything: the spans are identical
    monday = [s for s in days if t < s.end and s.start < at(MONDAY, 23)]
    assert got[1 : len(monday)] == monday[1:]


def state_at(spans: list[Span], t: float) -> tuple[MachineState, float, str]:
    [s] = [s for s in spans if s.start <= t < s.end]
    return s.state, s.power_kw, s.program


def test_spans_from_later_agrees_with_spans_from_earlier(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = demo.equipment_by_id()["cnc-01"]
    t1, t2 = at(MONDAY, 9), at(MONDAY + DAY, 13, 5)
    early = list(
        itertools.takewhile(lambda s: s.start < t2 + 2 * 86_400, spans_from(eq, two_shifts, 2, t1))
    )
    late = list(
        itertools.takewhile(lambda s: s.start < t2 + 2 * 86_400, spans_from(eq, two_shifts, 2, t2))
    )
    tail = [s for s in early if s.start >= t2]
    assert late[1:] == tail[-len(late) + 1 :]
    [containing] = [s for s in early if s.start <= t2 < s.end]
    assert (late[0].end, late[0].state) == (containing.end, containing.state)


def test_spans_from_merges_a_weekend_of_a_one_program_machine(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = demo.equipment_by_id()["grd-01"]
    assert len(eq.programs) == 1
    saturday_10 = at(SATURDAY, 10)
    for seed in range(5):
        it = spans_from(eq, two_shifts, seed, saturday_10)
        first = next(it)
        assert (first.start, first.end, first.state) == (
            saturday_10,
            at(MONDAY, 8),
            MachineState.OFF,
        ), "one OFF span from Saturday morning to Monday's first shift"
        second = next(it)
        assert second.start == first.end
        assert second.state is not MachineState.OFF


def test_spans_from_merges_a_weekend_whatever_the_programs(
    demo: Scenario, two_shifts: ShiftCalendar
) -> None:
    eq = demo.equipment_by_id()["cnc-05"]
    assert len(eq.programs) == 3
    saturday_10 = at(SATURDAY, 10)
    ends = {seed: next(spans_from(eq, two_shifts, seed, saturday_10)).end for seed in range(10)}
    assert ends == dict.fromkeys(range(10), at(MONDAY, 8))
