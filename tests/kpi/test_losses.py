"""The loss Pareto and MTBF/MTTR by cause (kpi/losses.py), against figures computed by hand
and, for the time it counts, against a second-by-second count."""

from __future__ import annotations

import random

import pytest

from ingest_server.kpi.losses import Stop, by_cause, loss_pareto

# the period [0, 1000)
STOPS = [
    Stop("m1", "a", "DOWN", -100, 50, "brk"),  # 50 s inside, started before: no event
    Stop("m1", "a", "DOWN", 100, 300, "brk"),  # 200 s, an event
    Stop("m1", "a", "IDLE", 300, 400, None),  # 100 s, no reason
    Stop("m1", "a", "RUNNING", 400, 500, None),  # not a loss
    Stop("m2", "a", "DOWN", 500, 550, None),  # 50 s, an event
    Stop("m2", "a", "IDLE", 600, 900, "mat"),  # 300 s
    Stop("m3", "b", "DOWN", 950, 1100, "tool"),  # 50 s inside, an event
    Stop("m3", "b", "IDLE", 1000, 1200, "mat"),  # after the period: nothing
]


def bars(p: object) -> list[tuple[object, ...]]:
    return [
        (b.reason, b.down_s, b.idle_s, b.stops, round(b.share, 6), round(b.cumulative_share, 6))
        for b in p.bars  # type: ignore[attr-defined]
    ]


def test_the_pareto_of_every_stop() -> None:
    (p,) = loss_pareto(STOPS, start=0, end=1000)
    assert p.group is None
    assert p.loss_s == 750  # 250 + 150 + 300 + 50
    assert bars(p) == [
        ("mat", 0, 300, 1, 0.4, 0.4),
        ("brk", 250, 0, 2, round(250 / 750, 6), round(550 / 750, 6)),
        (None, 50, 100, 2, 0.2, round(700 / 750, 6)),
        ("tool", 50, 0, 1, round(50 / 750, 6), 1.0),
    ]
    assert [b.loss_s for b in p.bars] == [300, 250, 150, 50]


def test_per_process_and_per_machine() -> None:
    by_process = loss_pareto(STOPS, start=0, end=1000, by="process")
    assert [(p.group, p.loss_s) for p in by_process] == [("a", 700), ("b", 50)]
    assert [b.reason for b in by_process[0].bars] == ["mat", "brk", None]
    by_machine = loss_pareto(STOPS, start=0, end=1000, by="equipment")
    # m1 and m2 both lost 350 s: by id
    assert [(p.group, p.loss_s) for p in by_machine] == [("m1", 350), ("m2", 350), ("m3", 50)]
    assert bars(by_machine[0]) == [
        ("brk", 250, 0, 2, round(250 / 350, 6), round(250 / 350, 6)),
        (None, 0, 100, 1, round(100 / 350, 6), 1.0),
    ]
    assert [(b.reason, b.loss_s) for b in by_machine[1].bars] == [("mat", 300), (None, 50)]


def test_ties_go_by_reason_id_and_the_unassigned_bar_last() -> None:
    stops = [
        Stop("m", "a", "IDLE", 0, 10, None),
        Stop("m", "a", "IDLE", 10, 20, "zeta"),
        Stop("m", "a", "DOWN", 20, 30, "alpha"),
    ]
    (p,) = loss_pareto(stops, start=0, end=30)
    assert [b.reason for b in p.bars] == ["alpha", "zeta", None]
    assert [round(b.cumulative_share, 6) for b in p.bars] == [0.333333, 0.666667, 1.0]


def test_nothing_to_count() -> None:
    assert loss_pareto([], start=0, end=10) == []
    # only running, or stops outside the period: no Pareto at all, not one of zero time
    running = [Stop("m", "a", "RUNNING", 0, 10, None), Stop("m", "a", "DOWN", 10, 20, "x")]
    assert loss_pareto(running, start=0, end=10, by="equipment") == []
    assert by_cause(running, start=0, end=10, running_s=10) == []


def test_mtbf_and_mttr_by_cause() -> None:
    rows = by_cause(STOPS, start=0, end=1000, running_s=600)
    assert [(r.reason, r.events, r.down_s, r.mtbf_s, r.mttr_s) for r in rows] == [
        ("brk", 1, 250, 600, 250),  # the 50 s of the interval begun before count, not it
        ("tool", 1, 50, 600, 50),  # 50 s in the period, the event in it
        (None, 1, 50, 600, 50),  # tied with tool: unassigned after the reasons
    ]
    # the causes partition DOWN: events and time add up, and so do the failure rates
    assert sum(r.events for r in rows) == 3
    assert sum(r.down_s for r in rows) == 350
    assert sum(1 / r.mtbf_s for r in rows if r.mtbf_s) == pytest.approx(3 / 600)


def test_a_cause_with_time_but_no_event_has_no_mtbf() -> None:
    stops = [Stop("m", "a", "DOWN", -50, 30, "x"), Stop("m", "a", "DOWN", 100, 100.5, "y")]
    rows = by_cause(stops, start=0, end=100, running_s=70)
    # y starts at the period's end: neither time nor event in [0, 100)
    assert [(r.reason, r.events, r.down_s, r.mtbf_s, r.mttr_s) for r in rows] == [
        ("x", 0, 30, None, None)
    ]
    at_start = by_cause([Stop("m", "a", "DOWN", 0, 20, "z")], start=0, end=100, running_s=80)
    assert [(r.events, r.mtbf_s, r.mttr_s) for r in at_start] == [(1, 80, 20)]


def test_the_bars_add_up_to_the_loss_seconds_counted_one_by_one() -> None:
    rng = random.Random(7)
    for _ in range(30):
        stops = []
        for m in ("m1", "m2"):
            t = rng.randrange(-50, 20)
            while t < 250:
                d = rng.randrange(1, 40)
                stops.append(Stop(m, "p", rng.choice(["DOWN", "IDLE", "RUNNING"]), t, t + d,
                                  rng.choice(["r1", "r2", None])))  # fmt: skip
                t += d
        start, end = 0, 200
        lost = {(s.reason, s.state): 0 for s in stops}
        for s in stops:
            for second in range(int(s.start), int(s.end)):
                if start <= second < end and s.state != "RUNNING":
                    lost[s.reason, s.state] += 1
        (p,) = loss_pareto(stops, start=start, end=end)
        for b in p.bars:
            assert (b.down_s, b.idle_s) == (lost.get((b.reason, "DOWN"), 0),
                                            lost.get((b.reason, "IDLE"), 0))  # fmt: skip
        assert p.loss_s == sum(lost.values())
        assert p.bars[-1].cumulative_share == pytest.approx(1.0)
        shares = [b.loss_s for b in p.bars]
        assert shares == sorted(shares, reverse=True)
