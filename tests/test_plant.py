"""The plant model: same seed, same truth; truth adds up; rollovers and faults are exact."""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from simulators.calendar import ShiftCalendar
from simulators.plant import Plant, PlantError
from simulators.scenario import (
    MachineState,
    Scenario,
    default_scenario_path,
    load_scenario,
    load_yaml,
    parse_scenario,
)
from simulators.truth import parse_iso

MINIMAL = Path(__file__).parent / "scenarios" / "minimal.yaml"


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario(default_scenario_path())


def monday(s: Scenario, hh: int = 7) -> float:
    return dt.datetime(2026, 11, 23, hh, tzinfo=s.tz).timestamp()


def run(
    s: Scenario, start: float, until: list[float], seed: int | None = None
) -> list[dict[str, Any]]:
    """Advance to each of the `until` instants (absolute), then finish."""
    plant = Plant(s, start, seed=seed)
    for t in until:
        plant.advance_to(t)
    return plant.drain_truth() + plant.finish()


@pytest.fixture(scope="module")
def two_days(demo: Scenario) -> list[dict[str, Any]]:
    return run(demo, monday(demo), [monday(demo) + 2 * 86_400])


def of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r for r in records if r["type"] == kind]


def test_stepping_does_not_change_the_truth(demo: Scenario) -> None:
    start = monday(demo)
    total = 26 * 3600 + 17
    one_jump = run(demo, start, [start + total])
    instants, t = [], start
    for step in itertools.cycle([7.3, 611.0, 0.25, 3599.9]):
        t += step
        if t >= start + total:
            break
        instants.append(t)
    stepped = run(demo, start, [*instants, start + total])
    assert len(instants) > 40
    for kind in ("state", "rollover"):
        assert of_type(one_jump, kind) == of_type(stepped, kind), kind
    hours_a, hours_b = of_type(one_jump, "meter_hour"), of_type(stepped, "meter_hour")
    assert [(h["device"], h["start"]) for h in hours_a] == [
        (h["device"], h["start"]) for h in hours_b
    ]
    for a, b in zip(hours_a, hours_b, strict=True):
        assert a["consumed"] == pytest.approx(b["consumed"], rel=1e-9, abs=1e-9)


def test_another_seed_gives_another_run(demo: Scenario) -> None:
    start = monday(demo)
    a = of_type(run(demo, start, [start + 12 * 3600]), "state")
    b = of_type(run(demo, start, [start + 12 * 3600], seed=demo.seed + 1), "state")
    assert a != b


def test_spans_tile_the_run_and_sum_to_the_summary(
    demo: Scenario, two_days: list[dict[str, Any]]
) -> None:
    summary = two_days[-1]
    run_start, run_end = two_days[0]["start"], summary["end"]
    for eq in demo.equipment:
        spans = sorted(
            (r for r in of_type(two_days, "state") if r["device"] == eq.id),
            key=lambda r: r["start"],
        )
        assert spans[0]["start"] == run_start
        assert spans[-1]["end"] == run_end
        for a, b in itertools.pairwise(spans):
            assert a["end"] == b["start"], eq.id
        totals = summary["equipment"][eq.id]
        seconds: dict[str, float] = defaultdict(float)
        for s in spans:
            seconds[s["state"]] += s["seconds"]
            assert s["seconds"] == parse_iso(s["end"]) - parse_iso(s["start"])
            assert s["energy_kwh"] == pytest.approx(s["power_kw"] * s["seconds"] / 3600)
            if s["state"] != "RUNNING":
                assert s["parts_completed"] == 0, "parts are made only while running"
        assert dict(seconds) == {k: v for k, v in totals["seconds"].items() if v}
        parts = sum(s["parts_completed"] for s in spans)
        good = sum(s["parts_good"] for s in spans)
        assert parts == totals["parts_completed"]
        assert good == totals["parts_good"] <= parts
        assert parts == math.floor(seconds["RUNNING"] / eq.cycle_time_s + 1e-9)


def test_scrap_is_near_the_scrap_rate(demo: Scenario, two_days: list[dict[str, Any]]) -> None:
    totals = two_days[-1]["equipment"]["wash-01"]  # ~2,500 parts in two days, rate 0
    assert totals["parts_good"] == totals["parts_completed"] > 1000
    ht = two_days[-1]["equipment"]["cnc-03"]  # scrap_rate 0.025
    scrap = 1 - ht["parts_good"] / ht["parts_completed"]
    assert 0.0 < scrap < 0.08


def test_meter_hours_add_up_and_the_main_meter_balances(
    demo: Scenario, two_days: list[dict[str, Any]]
) -> None:
    summary = two_days[-1]
    hours: dict[str, float] = defaultdict(float)
    for h in of_type(two_days, "meter_hour"):
        hours[h["device"]] += h["consumed"]
    for mid, m in summary["meters"].items():
        assert hours[mid] == pytest.approx(m["consumed"], rel=1e-9)

    # em-main by hand: its submeters, plus its own base load from the shift windows
    main = demo.meters_by_id()["em-main"]
    start, end = parse_iso(two_days[0]["start"]), parse_iso(summary["end"])
    cal = ShiftCalendar(demo.calendar, demo.tz)
    in_shift_h = sum(min(w.end, end) - max(w.start, start) for w in cal.between(start, end)) / 3600
    total_h = (end - start) / 3600
    assert main.base_off_shift_kw is not None
    base = main.base_kw * in_shift_h + main.base_off_shift_kw * (total_h - in_shift_h)
    subs = sum(summary["meters"][s]["consumed"] for s in main.submeters)
    assert summary["meters"]["em-main"]["consumed"] == pytest.approx(subs + base, rel=1e-9)

    # em-turning by hand: the machines it covers plus its base load (no off-shift value)
    turning = demo.meters_by_id()["em-turning"]
    machines = sum(summary["equipment"][e]["energy_kwh"] for e in turning.covers)
    assert summary["meters"]["em-turning"]["consumed"] == pytest.approx(
        machines + turning.base_kw * total_h, rel=1e-9
    )
    # no faults: the reading is the initial value plus what went through
    assert summary["meters"]["em-turning"]["reading"] == pytest.approx(
        turning.initial + summary["meters"]["em-turning"]["consumed"]
    )


def test_em_ht_rolls_over_exactly_when_the_register_wraps(demo: Scenario) -> None:
    start = monday(demo, 8)
    plant = Plant(demo, start)
    plant.advance_to(start + 4 * 3600)
    rollovers = of_type(plant.drain_truth(), "rollover")
    assert [r["device"] for r in rollovers] == ["em-ht"]
    assert rollovers[0]["modulus"] == pytest.approx(6553.6)
    t = parse_iso(rollovers[0]["ts"])
    initial = demo.meters_by_id()["em-ht"].initial
    fresh = Plant(demo, start)
    fresh.advance_to(t - 0.01)
    assert initial + fresh.consumed("em-ht") < 6553.6
    fresh.advance_to(t + 0.01)
    assert initial + fresh.consumed("em-ht") > 6553.6


def test_a_16_bit_part_counter_wraps_at_the_right_part() -> None:
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    data["equipment"][1]["counters"] = {"completed": 65530, "good": 100}
    data["modbus_servers"][0]["units"][0]["registers"][1].update(type="u16", order="ABCD")
    s = parse_scenario(data)
    start = monday(s, 8)
    plant = Plant(s, start)
    plant.advance_to(start + 3 * 3600)
    truth = plant.drain_truth()
    [rollover] = of_type(truth, "rollover")
    assert rollover["device"] == "plc-b"
    # the 6th part (65530 + 6 = 65536) completes after 6 x 30 s of running time
    running = 0.0
    for span in of_type(truth, "state"):
        if span["device"] == "plc-b" and span["state"] == "RUNNING":
            if running + span["seconds"] >= 180:
                expected = parse_iso(span["start"]) + (180 - running)
                break
            running += span["seconds"]
    assert parse_iso(rollover["ts"]) == pytest.approx(expected)
    assert plant.machine("plc-b").parts_completed > 65536


def test_offline_is_measured_not_guessed(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.set_offline("cnc-02", 90)
    assert not plant.machine("cnc-02").online
    assert plant.machine("cnc-01").online
    plant.advance_to(start + 89.5)
    assert not plant.machine("cnc-02").online
    plant.advance_to(start + 90)
    assert plant.machine("cnc-02").online
    [fault] = of_type(plant.drain_truth(), "fault")
    assert fault == {
        "type": "fault",
        "kind": "offline",
        "device": "cnc-02",
        "start": plant_iso(start),
        "end": plant_iso(start + 90),
    }


def plant_iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_frozen_meter_stands_still_then_catches_up(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.freeze_meter("em-milling", 600)
    frozen = plant.meter("em-milling").reading
    plant.advance_to(start + 300)
    assert plant.meter("em-milling").reading == frozen
    plant.advance_to(start + 601)
    m = demo.meters_by_id()["em-milling"]
    assert plant.meter("em-milling").reading == pytest.approx(
        m.initial + plant.consumed("em-milling")
    )
    assert plant.meter("em-milling").reading > frozen


def test_a_reset_meter_starts_again_from_zero(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.advance_to(start + 60)
    before = plant.meter("wm-main").reading
    plant.reset_meter("wm-main")
    assert plant.meter("wm-main").reading == 0
    plant.advance_to(start + 3600)
    assert 0 < plant.meter("wm-main").reading < before
    resets = [r for r in plant.drain_truth() if r.get("kind") == "counter_reset"]
    assert resets[0]["reading_before"] == pytest.approx(before)


def test_unknown_devices_are_refused(demo: Scenario) -> None:
    plant = Plant(demo, monday(demo))
    with pytest.raises(PlantError, match="no device 'cnc-99'"):
        plant.set_offline("cnc-99", 10)
    with pytest.raises(PlantError, match="no meter 'cnc-01'"):
        plant.freeze_meter("cnc-01", 10)
    with pytest.raises(PlantError, match="no equipment"):
        plant.machine("em-main")


def test_a_running_machine_draws_its_running_power(demo: Scenario) -> None:
    plant = Plant(demo, monday(demo, 10))
    for e in demo.equipment:
        view = plant.machine(e.id)
        nominal = e.power_kw[view.state]
        if view.state is MachineState.RUNNING:
            assert abs(view.power_kw - nominal) <= nominal * e.power_jitter + 1e-9
            assert view.spindle_rpm == e.spindle_rpm
        else:
            assert view.power_kw == nominal
            assert view.spindle_rpm == 0
