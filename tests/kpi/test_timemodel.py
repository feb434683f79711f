"""The ISO 22400-2 time model on hand-worked cases (every figure computed by hand)."""

from __future__ import annotations

import datetime as dt

import pytest

from ingest_server.kpi.timemodel import Interval, performance, plan_segments, time_model

D = dt.datetime(2026, 11, 16, tzinfo=dt.UTC).timestamp()


def at(h: float) -> float:
    return D + h * 3600


def iv(a: float, b: float, state: str) -> Interval:
    return Interval(at(a), at(b), state)


# one shift 08:00-16:00 with a break 12:00-12:30; the period is the whole day
SEGMENTS = plan_segments(at(0), at(24), [(at(8), at(16))], [(at(12), at(12.5))])


def test_segments_cut_the_day_into_outside_work_break() -> None:
    kinds = [((a - D) / 3600, (b - D) / 3600, k) for a, b, k in SEGMENTS]
    assert kinds == [(0, 8, 0), (8, 12, 2), (12, 12.5, 1), (12.5, 16, 2), (16, 24, 0)]


def test_a_day_of_states_falls_into_the_right_buckets() -> None:
    intervals = [
        iv(0, 8, "OFF"),
        iv(8, 8.5, "SETUP"),
        iv(8.5, 10, "RUNNING"),
        iv(10, 10.25, "DOWN"),  # a failure
        iv(10.25, 11, "RUNNING"),
        iv(11, 11.5, "PLANNED_STOP"),  # planned maintenance in work time
        iv(11.5, 12.25, "RUNNING"),  # runs 15 min into the break
        iv(12.25, 13, "IDLE"),
        iv(13, 14, "OFFLINE"),  # unknown: neither running nor stopped
        iv(14, 15, "RUNNING"),
        iv(15, 15.5, "DOWN"),
        iv(15.5, 16, "OFF"),  # switched off in planned time
        iv(16, 17, "RUNNING"),  # overtime outside the shift
        # 17:00-24:00 no data at all
    ]
    t = time_model(at(0), at(24), intervals, SEGMENTS)
    h = 3600
    assert t.calendar_s == 24 * h
    assert t.pot_s == 8 * h
    # breaks 0.5 h + PLANNED_STOP 0.5 h
    assert t.planned_downtime_s == 1.0 * h
    assert t.pbt_s == 7 * h
    assert t.apt_s == (1.5 + 0.75 + 0.5 + 1) * h
    assert t.setup_s == 0.5 * h
    assert t.idle_s == 0.5 * h  # 12:30-13:00 (12:25-12:30 is break)
    assert t.down_s == 0.75 * h
    assert t.off_in_plan_s == 0.5 * h
    assert t.unknown_s == 1 * h
    assert t.running_outside_s == (0.25 + 1) * h
    assert t.running_s == (1.5 + 0.75 + 0.75 + 1 + 1) * h
    assert t.unknown_period_s == (1 + 7) * h
    assert t.down_events == 2
    # every second of PBT is in exactly one bucket
    buckets = t.apt_s + t.setup_s + t.idle_s + t.down_s + t.off_in_plan_s + t.unknown_s
    assert buckets == t.pbt_s
    assert t.coverage == pytest.approx(7 / 8)

    p = performance(t, ideal_cycle_time_s=60, produced=200, good=190)
    assert p.availability == pytest.approx(3.75 / 6)  # APT / (PBT - unknown)
    assert p.effectiveness == pytest.approx(60 * 200 / (5 * h))
    assert p.quality_ratio == pytest.approx(0.95)
    assert p.oee == pytest.approx(3.75 / 6 * 60 * 200 / (5 * h) * 0.95)
    assert p.utilisation == pytest.approx(5 / 24)
    assert p.mtbf_s == pytest.approx(5 * h / 2)
    assert p.mttr_s == pytest.approx(0.75 * h / 2)


def test_an_interval_from_before_the_period_counts_only_inside_and_not_as_an_event() -> None:
    # the day's segments, a window of two hours: only the window counts
    t = time_model(at(9), at(11), [iv(7, 10, "DOWN"), iv(10, 12, "RUNNING")], SEGMENTS)
    assert t.pot_s == t.pbt_s == 7200
    assert t.down_s == 3600
    assert t.apt_s == 3600
    assert t.down_events == 0  # it began before the period
    assert t.calendar_s == 7200


def test_nothing_known_means_no_availability_and_zero_coverage() -> None:
    t = time_model(at(0), at(24), [], SEGMENTS)
    assert t.unknown_s == t.pbt_s == 7.5 * 3600
    assert t.coverage == 0
    p = performance(t, ideal_cycle_time_s=60, produced=None, good=None)
    assert p.availability is None
    assert p.oee is None


def test_a_night_shift_across_midnight_and_no_calendar() -> None:
    segs = plan_segments(at(0), at(24), [(at(-2), at(6)), (at(22), at(30))], [])
    t = time_model(at(0), at(24), [iv(0, 24, "RUNNING")], segs)
    assert t.pot_s == 8 * 3600  # 00-06 and 22-24
    assert t.apt_s == 8 * 3600
    assert t.running_outside_s == 16 * 3600
    none = time_model(at(0), at(24), [iv(0, 24, "IDLE")], plan_segments(at(0), at(24), [], []))
    assert none.pot_s == 0
    assert none.coverage == 1.0  # of the calendar time, nothing being planned
