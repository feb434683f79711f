"""The plant model: same seed, same truth; truth adds up; rollovers and faults are exact.

Expectations are worked out by hand from the scenario (rates, shift hours, counter
widths) and from the truth's own state spans, never copied from an earlier run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from edge_agent.contract.yaml12 import load_yaml
from simulators.plant import Plant, PlantError
from simulators.scenario import (
    Carrier,
    MachineState,
    Scenario,
    default_scenario_path,
    load_scenario,
    parse_scenario,
)
from simulators.truth import iso, parse_iso

MINIMAL = Path(__file__).parents[1] / "golden" / "scenarios" / "minimal.yaml"
HOUR = 3600.0
Record = dict[str, Any]


@pytest.fixture(scope="module")
def demo() -> Scenario:
    return load_scenario(default_scenario_path())


def monday(s: Scenario, hh: int = 7) -> float:
    return dt.datetime(2026, 11, 23, hh, tzinfo=s.tz).timestamp()


def run(s: Scenario, start: float, until: list[float], seed: int | None = None) -> list[Record]:
    """Advance to each of the `until` instants (absolute), then finish."""
    plant = Plant(s, start, seed=seed)
    for t in until:
        plant.advance_to(t)
    return plant.drain_truth() + plant.finish()


@pytest.fixture(scope="module")
def two_days(demo: Scenario) -> list[Record]:
    """Monday 07:00 to Wednesday 07:00, local time, in one jump."""
    return run(demo, monday(demo), [monday(demo) + 2 * 86_400])


def of_type(records: list[Record], kind: str, device: str | None = None) -> list[Record]:
    return [r for r in records if r["type"] == kind and device in (None, r.get("device"))]


def spans_of(records: list[Record], device: str) -> list[Record]:
    return sorted(of_type(records, "state", device), key=lambda r: parse_iso(r["start"]))


def rate_of(s: Scenario, eq_id: str, carrier: Carrier, span: Record) -> float:
    """What the scenario says a machine draws in a span (kW or m3/h)."""
    eq = s.equipment_by_id()[eq_id]
    if carrier is Carrier.ELECTRICITY:
        return float(span["power_kw"])
    table = eq.water_m3_per_h if carrier is Carrier.WATER else eq.gas_m3_per_h
    return table.get(MachineState(span["state"]), 0.0)


def minimal(**equipment_b: Any) -> Scenario:
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    data["equipment"][1].update(equipment_b)
    return parse_scenario(data)


# --- determinism ------------------------------------------------------------------------


def test_stepping_does_not_change_the_truth(demo: Scenario) -> None:
    start = monday(demo)
    total = 26 * 3600 + 17
    one_jump = run(demo, start, [start + total])
    instants, t = [], start
    for step in itertools.cycle([7.3, 611.0, 0.25, 3599.9, 7.3, 7.3, 1234.5]):
        t += step
        if t >= start + total:
            break
        instants.append(t)
    stepped = run(demo, start, [*instants, start + total])
    assert len(instants) > 60
    for kind in ("state", "rollover"):
        assert of_type(one_jump, kind) == of_type(stepped, kind), kind
    assert of_type(one_jump, "rollover"), "em-ht wraps in this window"
    hours_a, hours_b = of_type(one_jump, "meter_hour"), of_type(stepped, "meter_hour")
    key = [(h["device"], h["start"], h["end"]) for h in hours_a]
    assert key == [(h["device"], h["start"], h["end"]) for h in hours_b]
    for a, b in zip(hours_a, hours_b, strict=True):
        assert a["consumed"] == pytest.approx(b["consumed"], rel=1e-9, abs=1e-12)
    sum_a, sum_b = one_jump[-1], stepped[-1]
    for eq_id, totals in sum_a["equipment"].items():
        other = sum_b["equipment"][eq_id]
        assert totals["parts_completed"] == other["parts_completed"]
        assert totals["parts_good"] == other["parts_good"]


def test_another_seed_gives_another_run(demo: Scenario) -> None:
    start = monday(demo)
    a = run(demo, start, [start + 12 * 3600])
    b = run(demo, start, [start + 12 * 3600], seed=demo.seed + 1)
    assert of_type(a, "state") != of_type(b, "state")
    assert a[0]["seed"] == demo.seed
    assert b[0]["seed"] == demo.seed + 1
    em_main = [h["consumed"] for h in of_type(a, "meter_hour", "em-main")]
    assert em_main != [h["consumed"] for h in of_type(b, "meter_hour", "em-main")]


def test_a_later_start_sees_the_same_schedule(demo: Scenario) -> None:
    # the schedule depends on (seed, machine, day) only, not on when the run began
    end = monday(demo) + 2 * 86_400
    later = monday(demo, 10) + 86_400  # Tuesday 10:00
    a = run(demo, monday(demo), [end])
    b = run(demo, later, [end])
    for eq in demo.equipment:
        after = [r for r in spans_of(a, eq.id) if parse_iso(r["end"]) > later]
        mine = spans_of(b, eq.id)
        assert mine[0]["start"] == iso(later)
        assert (mine[0]["end"], mine[0]["state"]) == (after[0]["end"], after[0]["state"])
        strip = ("start", "end", "state", "power_kw", "program", "truncated")
        assert [{k: r.get(k) for k in strip} for r in mine[1:]] == [
            {k: r.get(k) for k in strip} for r in after[1:]
        ]


# --- the truth adds up ------------------------------------------------------------------


def test_spans_tile_the_run_and_sum_to_the_summary(demo: Scenario, two_days: list[Record]) -> None:
    summary = two_days[-1]
    assert summary["type"] == "summary"
    run_start, run_end = two_days[0]["start"], summary["end"]
    assert parse_iso(run_end) - parse_iso(run_start) == 2 * 86_400
    for eq in demo.equipment:
        spans = spans_of(two_days, eq.id)
        assert spans[0]["start"] == run_start
        assert spans[-1]["end"] == run_end
        for a, b in itertools.pairwise(spans):
            assert a["end"] == b["start"], eq.id
        # Wednesday 07:00 is before the first shift: the run ends inside an OFF span
        assert [bool(s.get("truncated")) for s in spans] == [False] * (len(spans) - 1) + [True]
        totals = summary["equipment"][eq.id]
        seconds: dict[str, float] = defaultdict(float)
        for s in spans:
            state = MachineState(s["state"])
            seconds[state.value] += s["seconds"]
            assert s["seconds"] == parse_iso(s["end"]) - parse_iso(s["start"])
            assert s["energy_kwh"] == pytest.approx(s["power_kw"] * s["seconds"] / HOUR)
            water = eq.water_m3_per_h.get(state, 0.0) * s["seconds"] / HOUR
            gas = eq.gas_m3_per_h.get(state, 0.0) * s["seconds"] / HOUR
            assert s["water_m3"] == pytest.approx(water, abs=1e-12)
            assert s["gas_m3"] == pytest.approx(gas, abs=1e-12)
            if state is not MachineState.RUNNING:
                assert s["parts_completed"] == 0, "parts are made only while running"
                assert s["power_kw"] == eq.power_kw[state]
            else:
                nominal = eq.power_kw[state]
                assert abs(s["power_kw"] - nominal) <= nominal * eq.power_jitter + 1e-9
            assert 0 <= s["parts_good"] <= s["parts_completed"]
        assert dict(seconds) == {k: v for k, v in totals["seconds"].items() if v}
        assert sum(totals["seconds"].values()) == 2 * 86_400
        for q in ("energy_kwh", "water_m3", "gas_m3"):
            assert totals[q] == pytest.approx(sum(s[q] for s in spans), rel=1e-9, abs=1e-12)
        parts = sum(s["parts_completed"] for s in spans)
        good = sum(s["parts_good"] for s in spans)
        assert parts == totals["parts_completed"]
        assert good == totals["parts_good"] <= parts
        # a part every cycle_time_s of running time, carried across interruptions
        assert parts == math.floor(seconds["RUNNING"] / eq.cycle_time_s + 1e-9), eq.id
        assert parts > 0, eq.id


def test_scrap_share_follows_the_scrap_rate() -> None:
    # a fast machine making thousands of parts in one shift, one in ten scrap
    s = minimal(cycle_time_s=5, ideal_cycle_time_s=5, scrap_rate=0.1)
    start = monday(s, 8)
    truth = run(s, start, [start + 8 * HOUR])
    totals = truth[-1]["equipment"]["plc-b"]
    assert totals["parts_completed"] > 2000
    scrap = 1 - totals["parts_good"] / totals["parts_completed"]
    # the binomial standard deviation is under 0.7 points here; allow more than four
    assert scrap == pytest.approx(0.1, abs=0.03)
    no_scrap = run(minimal(scrap_rate=0.0), start, [start + 8 * HOUR])[-1]["equipment"]["plc-b"]
    assert no_scrap["parts_good"] == no_scrap["parts_completed"] > 0


def test_meter_hours_tile_the_run_and_add_up(demo: Scenario, two_days: list[Record]) -> None:
    summary = two_days[-1]
    start, end = parse_iso(two_days[0]["start"]), parse_iso(summary["end"])
    assert start % HOUR == 0  # Monday 07:00 in Shanghai is a whole UTC hour
    for m in demo.meters:
        hours = sorted(of_type(two_days, "meter_hour", m.id), key=lambda h: parse_iso(h["start"]))
        assert len(hours) == 48
        assert parse_iso(hours[0]["start"]) == start
        assert parse_iso(hours[-1]["end"]) == end
        for a, b in itertools.pairwise(hours):
            assert a["end"] == b["start"]
        for h in hours:
            assert parse_iso(h["end"]) - parse_iso(h["start"]) == HOUR
            assert "partial" not in h
            assert (h["carrier"], h["unit"]) == (m.carrier.value, m.carrier.unit)
            assert h["consumed"] >= 0
        total = sum(h["consumed"] for h in hours)
        assert total == pytest.approx(summary["meters"][m.id]["consumed"], rel=1e-9)


def test_partial_hours_at_the_edges_of_a_run(demo: Scenario) -> None:
    start = monday(demo, 9) + 1234
    truth = run(demo, start, [start + 2 * HOUR])
    hours = of_type(truth, "meter_hour", "em-main")
    assert [(h["start"], h["end"], h.get("partial", False)) for h in hours] == [
        (iso(start), iso(monday(demo, 10)), True),
        (iso(monday(demo, 10)), iso(monday(demo, 11)), False),
        (iso(monday(demo, 11)), iso(start + 2 * HOUR), True),
    ]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def test_each_hour_of_a_single_machine_meter_comes_from_its_spans(
    demo: Scenario, two_days: list[Record]
) -> None:
    # gm-main measures ht-02's gas and em-grd-02 grd-02's power, with no base load
    for meter_id in ("gm-main", "em-grd-02"):
        m = demo.meters_by_id()[meter_id]
        [eq_id] = m.covers
        assert not m.submeters
        assert m.base_rate(True) == m.base_rate(False) == 0
        spans = spans_of(two_days, eq_id)
        for h in of_type(two_days, "meter_hour", meter_id):
            h0, h1 = parse_iso(h["start"]), parse_iso(h["end"])
            expected = sum(
                rate_of(demo, eq_id, m.carrier, s)
                * _overlap(h0, h1, parse_iso(s["start"]), parse_iso(s["end"]))
                / HOUR
                for s in spans
            )
            assert h["consumed"] == pytest.approx(expected, rel=1e-9, abs=1e-12), h


def test_every_meter_balances_by_hand(demo: Scenario, two_days: list[Record]) -> None:
    # Monday 07:00 to Wednesday 07:00 under the demo calendar (shifts 08:00-16:00 and
    # 16:00-24:00, Monday to Saturday): in shift Monday and Tuesday 08:00-24:00.
    assert [(s.start, s.end) for s in demo.calendar.shifts] == [
        ("08:00", "16:00"),
        ("16:00", "24:00"),
    ]
    assert {"mon", "tue"} <= set(demo.calendar.workdays)
    in_shift_h, total_h = 2 * 16.0, 48.0
    summary = two_days[-1]
    consumed = {mid: m["consumed"] for mid, m in summary["meters"].items()}

    def machines(carrier: Carrier, eq_ids: list[str]) -> float:
        return sum(
            rate_of(demo, e, carrier, s) * s["seconds"] / HOUR
            for e in eq_ids
            for s in spans_of(two_days, e)
        )

    for m in demo.meters:
        base = m.base_rate(True) * in_shift_h + m.base_rate(False) * (total_h - in_shift_h)
        expected = base + machines(m.carrier, m.covers) + sum(consumed[s] for s in m.submeters)
        assert consumed[m.id] == pytest.approx(expected, rel=1e-9), m.id
        # no faults: the reading is the initial value plus what went through
        assert summary["meters"][m.id]["reading"] == pytest.approx(
            m.initial + consumed[m.id], abs=1e-6
        )

    # the main incomer by name, as a reader would check it on paper
    main = demo.meters_by_id()["em-main"]
    assert (main.base_kw, main.base_off_shift_kw) == (24.0, 7.5)
    assert consumed["em-main"] == pytest.approx(
        sum(consumed[s] for s in main.submeters) + 24.0 * 32 + 7.5 * 16, rel=1e-9
    )
    water = demo.meters_by_id()["wm-main"]
    assert (water.base_m3_per_h, water.base_off_shift_m3_per_h) == (0.6, 0.1)
    assert consumed["wm-main"] == pytest.approx(
        machines(Carrier.WATER, water.covers) + 0.6 * 32 + 0.1 * 16, rel=1e-9
    )


def test_views_show_initial_plus_consumed_and_the_summed_rates(demo: Scenario) -> None:
    start = monday(demo, 7)
    plant = Plant(demo, start)
    meters = demo.meters_by_id()

    def expected_rate(mid: str, in_shift: bool) -> float:
        m = meters[mid]
        own = 0.0
        for e in m.covers:
            v = plant.machine(e)
            own += rate_of(demo, e, m.carrier, {"power_kw": v.power_kw, "state": v.state})
        return m.base_rate(in_shift) + own + sum(expected_rate(s, in_shift) for s in m.submeters)

    # before the first shift, in the morning, in the lunch break, in the late shift
    for t, in_shift in (
        (start, False),
        (monday(demo, 8) + 7.5, True),
        (monday(demo, 12) + 900, True),
        (monday(demo, 17) + 1, True),
    ):
        plant.advance_to(t)
        for mid, m in meters.items():
            view = plant.meter(mid)
            assert view.online
            assert view.carrier is m.carrier
            assert view.reading == pytest.approx(m.initial + plant.consumed(mid), abs=1e-9)
            assert view.rate == pytest.approx(expected_rate(mid, in_shift)), (mid, t)


# --- counters wrap ----------------------------------------------------------------------


def test_em_ht_rolls_over_exactly_when_the_register_wraps(demo: Scenario) -> None:
    em_ht = demo.meters_by_id()["em-ht"]
    modulus = 2**16 * 0.1  # a u16 register at 0.1 kWh per count
    assert em_ht.initial == 6546.0
    start = monday(demo, 8)
    plant = Plant(demo, start)
    plant.advance_to(start + 4 * 3600)
    rollovers = of_type(plant.drain_truth(), "rollover")
    assert [r["device"] for r in rollovers] == ["em-ht"]
    assert rollovers[0]["register"] == "meter-gateway/4/holding:0"
    assert rollovers[0]["modulus"] == pytest.approx(modulus)
    t = parse_iso(rollovers[0]["ts"])  # printed to the millisecond
    fresh = Plant(demo, start)
    fresh.advance_to(t - 0.01)
    assert em_ht.initial + fresh.consumed("em-ht") < modulus
    fresh.advance_to(t + 0.01)
    assert em_ht.initial + fresh.consumed("em-ht") > modulus


def test_rollovers_count_every_wrap_of_every_unsigned_meter_register(
    demo: Scenario, two_days: list[Record]
) -> None:
    summary = two_days[-1]
    meters = demo.meters_by_id()
    expected: dict[str, int] = defaultdict(int)
    for srv in demo.modbus_servers:
        for u in srv.units:
            for r in u.registers:
                if u.device in meters and r.source != "power_kw" and r.type in ("u16", "u32"):
                    modulus = 2 ** {"u16": 16, "u32": 32}[r.type] * r.scale
                    initial = meters[u.device].initial
                    final = initial + summary["meters"][u.device]["consumed"]
                    expected[u.device] += math.floor(final / modulus) - math.floor(
                        initial / modulus
                    )
    got: dict[str, int] = defaultdict(int)
    for r in of_type(two_days, "rollover"):
        if r["device"] in meters:
            got[r["device"]] += 1
    assert dict(got) == {k: v for k, v in expected.items() if v}
    assert got["em-ht"] >= 1
    for mid in meters:
        assert summary["meters"][mid]["rollovers"] == got.get(mid, 0)


def test_a_16_bit_part_counter_wraps_at_the_right_part() -> None:
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    data["equipment"][1]["counters"] = {"completed": 65530, "good": 100}
    data["modbus_servers"][0]["units"][0]["registers"][1].update(type="u16", order="ABCD")
    s = parse_scenario(data)
    start = monday(s, 8)  # the first shift starts here: no part is under way
    plant = Plant(s, start)
    plant.advance_to(start + 3 * 3600)
    truth = plant.drain_truth()
    [rollover] = of_type(truth, "rollover")
    assert rollover["device"] == "plc-b"
    assert rollover["register"] == "gw/1/holding:1"
    assert rollover["modulus"] == 65536
    # the 6th part (65530 + 6 = 65536) completes after 6 x 30 s of running time
    running, expected = 0.0, None
    for span in spans_of(truth, "plc-b"):
        if span["state"] == "RUNNING":
            if running + span["seconds"] >= 180:
                expected = parse_iso(span["start"]) + (180 - running)
                break
            running += span["seconds"]
    assert expected is not None
    assert parse_iso(rollover["ts"]) == pytest.approx(expected, abs=1e-3)
    assert plant.machine("plc-b").parts_completed > 65536


# --- faults -----------------------------------------------------------------------------


def test_offline_is_measured_not_guessed(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.set_offline("cnc-02", 90)
    plant.set_offline("em-milling", 30)
    assert not plant.machine("cnc-02").online
    assert not plant.meter("em-milling").online
    assert plant.machine("cnc-01").online
    plant.advance_to(start + 29.9)
    assert not plant.meter("em-milling").online
    plant.advance_to(start + 89.5)
    assert plant.meter("em-milling").online
    assert not plant.machine("cnc-02").online
    plant.advance_to(start + 90)
    assert plant.machine("cnc-02").online
    faults = of_type(plant.drain_truth(), "fault")
    assert faults == [
        {
            "type": "fault",
            "kind": "offline",
            "device": "em-milling",
            "start": iso(start),
            "end": iso(start + 30),
        },
        {
            "type": "fault",
            "kind": "offline",
            "device": "cnc-02",
            "start": iso(start),
            "end": iso(start + 90),
        },
    ]
    assert iso(start).endswith(":00:00Z")


def test_an_open_fault_is_closed_at_the_end_of_the_run(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.set_offline("cnc-02", 3600)
    plant.advance_to(start + 60)
    [fault] = of_type(plant.finish(), "fault")
    assert (fault["start"], fault["end"]) == (iso(start), iso(start + 60))


def test_a_frozen_meter_stands_still_then_catches_up(demo: Scenario) -> None:
    start = monday(demo, 9)
    m = demo.meters_by_id()["em-milling"]
    plant = Plant(demo, start)
    plant.advance_to(start + 10)
    plant.freeze_meter("em-milling", 600)
    frozen = plant.meter("em-milling").reading
    assert frozen == pytest.approx(m.initial + plant.consumed("em-milling"), abs=1e-6)
    for t in (start + 11, start + 300.5, start + 609):
        plant.advance_to(t)
        assert plant.meter("em-milling").reading == frozen
        assert plant.consumed("em-milling") > frozen - m.initial, "the energy still flows"
    plant.advance_to(start + 610)
    caught_up = plant.meter("em-milling").reading
    assert caught_up == pytest.approx(m.initial + plant.consumed("em-milling"), abs=1e-6)
    assert caught_up > frozen
    faults = of_type(plant.drain_truth(), "fault")
    assert faults == [
        {
            "type": "fault",
            "kind": "freeze",
            "device": "em-milling",
            "start": iso(start + 10),
            "end": iso(start + 610),
        }
    ]


def test_a_reset_meter_starts_again_from_zero(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.advance_to(start + 60)
    before = plant.meter("wm-main").reading
    since = plant.consumed("wm-main")
    plant.reset_meter("wm-main")
    assert plant.meter("wm-main").reading == 0
    for t in (start + 600, start + 3600):
        plant.advance_to(t)
        grown = plant.consumed("wm-main") - since
        assert grown > 0
        assert plant.meter("wm-main").reading == pytest.approx(grown, rel=1e-9)
    [reset] = of_type(plant.drain_truth(), "fault")
    assert reset["kind"] == "counter_reset"
    assert reset["device"] == "wm-main"
    assert reset["ts"] == iso(start + 60)
    assert reset["reading_before"] == pytest.approx(before, abs=1e-9)
    # the other meters do not notice
    em = demo.meters_by_id()["em-main"]
    assert plant.meter("em-main").reading == pytest.approx(
        em.initial + plant.consumed("em-main"), abs=1e-6
    )


def test_unknown_devices_are_refused(demo: Scenario) -> None:
    plant = Plant(demo, monday(demo))
    with pytest.raises(PlantError, match="no device 'cnc-99'"):
        plant.set_offline("cnc-99", 10)
    with pytest.raises(PlantError, match="no meter 'cnc-01'"):
        plant.freeze_meter("cnc-01", 10)
    with pytest.raises(PlantError, match="no meter 'em-nope'"):
        plant.reset_meter("em-nope")
    with pytest.raises(PlantError, match="no equipment 'em-main'"):
        plant.machine("em-main")
    with pytest.raises(PlantError, match="no meter 'cnc-01'"):
        plant.meter("cnc-01")
    assert of_type(plant.drain_truth(), "fault") == []


def test_consumed_of_an_unknown_meter_is_refused(demo: Scenario) -> None:
    plant = Plant(demo, monday(demo))
    with pytest.raises(PlantError, match="em-nope"):
        plant.consumed("em-nope")


def test_time_never_runs_backwards(demo: Scenario) -> None:
    start = monday(demo, 9)
    plant = Plant(demo, start)
    plant.advance_to(start + 600)
    reading = plant.meter("em-main").reading
    plant.advance_to(start + 10)
    assert plant.now == start + 600
    assert plant.meter("em-main").reading == reading


def test_a_running_machine_draws_its_running_power(demo: Scenario) -> None:
    plant = Plant(demo, monday(demo, 10))
    states = set()
    for e in demo.equipment:
        view = plant.machine(e.id)
        states.add(view.state)
        nominal = e.power_kw[view.state]
        if view.state is MachineState.RUNNING:
            assert abs(view.power_kw - nominal) <= nominal * e.power_jitter + 1e-9
            assert view.spindle_rpm == e.spindle_rpm
        else:
            assert view.power_kw == nominal
            assert view.spindle_rpm == 0
        assert view.parts_completed == e.counters.completed
        assert view.parts_good == e.counters.good
    assert MachineState.RUNNING in states


def test_a_reset_during_a_freeze_ends_the_freeze_record() -> None:
    s = load_scenario(default_scenario_path())
    start = dt.datetime(2026, 11, 23, 9, tzinfo=s.tz).timestamp()
    plant = Plant(s, start)
    plant.freeze_meter("em-milling", 600)
    plant.advance_to(start + 120)
    plant.reset_meter("em-milling")
    assert plant.meter("em-milling").reading == 0
    plant.advance_to(start + 300)
    assert plant.meter("em-milling").reading > 0, "a reset meter counts again at once"
    records = plant.drain_truth() + plant.finish()
    [freeze] = [r for r in records if r.get("kind") == "freeze"]
    assert parse_iso(freeze["end"]) - parse_iso(freeze["start"]) == 120
