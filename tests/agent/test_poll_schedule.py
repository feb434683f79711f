"""The fixed polling schedule, on a fake clock: ticks stay on the grid, overruns skip."""

from __future__ import annotations

import itertools
import logging

import pytest

from edge_agent.poll_schedule import PollSchedule, next_tick


def run_loop(period_s: float, read_s: list[float], start: float = 1000.0) -> list[float]:
    """What a polling loop does with the schedule: each read starts when its tick is due
    (or at once if the clock is already past it) and takes its time; returns the reads'
    start times."""
    schedule = PollSchedule(period_s, start, name="dev-1")
    now, starts = start, []
    for duration in read_s:
        now = max(now, schedule.due)  # sleep until due
        starts.append(now)
        now += duration
        schedule.finished(now)
    return starts


def test_reads_start_on_the_grid_whatever_they_take() -> None:
    # a loop that slept the period after each read would start read 9 at 9 x 1.3 s
    starts = run_loop(1.0, [0.3, 0.05, 0.9, 0.3, 0.6, 0.3, 0.3, 0.99, 0.3, 0.3])
    assert starts == [1000.0 + k for k in range(10)]


def test_an_overrun_skips_the_missed_ticks_and_never_bursts() -> None:
    schedule = PollSchedule(1.0, 0.0, name="dev-1")
    assert schedule.finished(0.4) == 0
    assert schedule.due == 1.0
    assert schedule.finished(3.5) == 2  # read at tick 1 ended after ticks 2 and 3
    assert schedule.due == 4.0  # the next tick still ahead, on the same grid
    assert schedule.finished(4.2) == 0
    assert schedule.due == 5.0
    assert schedule.skipped == 2

    starts = run_loop(0.5, [0.1, 1.2, 0.1, 0.7, 0.1], start=0.0)
    assert starts == [0.0, 0.5, 2.0, 2.5, 3.5]
    assert all(b - a >= 0.5 for a, b in itertools.pairwise(starts))


def test_a_read_ending_exactly_when_a_tick_is_due_runs_that_tick_now() -> None:
    assert next_tick(0, 1.0, 1.0) == 1
    assert next_tick(0, 1.0 + 1e-6, 1.0) == 2
    # 3 x 0.1 is 0.30000000000000004 in floating point: still tick 3, not a skip
    assert next_tick(2, 3 * 0.1, 0.1) == 3
    schedule = PollSchedule(0.1, 0.0)
    for k in range(1, 50):
        assert schedule.finished(schedule.due + 0.1) == 0  # each read takes a whole period
        assert schedule.tick == k
    assert schedule.skipped == 0


def test_a_clock_behind_the_last_tick_never_goes_back() -> None:
    assert next_tick(5, 2.0, 1.0) == 6


def test_overruns_are_logged_once_per_streak(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="edge_agent.poll_schedule")
    schedule = PollSchedule(1.0, 0.0, name="cnc-05")
    for end in (1.5, 3.5, 5.5):  # three overruns in a row, one skipped tick each
        schedule.finished(end)
    schedule.finished(6.2)  # on time again
    schedule.finished(7.1)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0][0] == logging.WARNING
    assert "cnc-05: a poll took 1.5 s, longer than poll_interval_s 1 s" in lines[0][1]
    assert lines[1] == (logging.INFO, "cnc-05: polls are back on time after skipping 3")
    assert schedule.skipped == 3


@pytest.mark.parametrize("period", [0.0, -1.0, float("nan")])
def test_a_period_that_is_not_positive_is_refused_by_name(period: float) -> None:
    with pytest.raises(ValueError, match="cnc-05: poll_interval_s must be positive"):
        PollSchedule(period, 0.0, name="cnc-05")
    with pytest.raises(ValueError, match="poll period must be positive"):
        next_tick(0, 1.0, period)
