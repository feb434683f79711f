"""Scenario files: the demo is what the issue asks for; bad files say what to fix.

Golden cases live in tests/golden/scenarios/bad/: each ``<name>.yaml`` is a copy of
minimal.yaml with one defect (a comment on its first line says which), and
``<name>.expected`` lists substrings, one per line, that one reported problem must
contain together: where the defect is and what to do about it.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.contract.yaml12 import load_yaml
from simulators.scenario import (
    Carrier,
    Interface,
    MachineState,
    ScenarioError,
    default_scenario_path,
    load_scenario,
    parse_scenario,
)

HERE = Path(__file__).parents[1] / "golden" / "scenarios"
MINIMAL = HERE / "minimal.yaml"
BAD_DIR = HERE / "bad"
BAD = sorted(BAD_DIR.glob("*.yaml"))


def minimal() -> dict[str, Any]:
    return copy.deepcopy(load_yaml(MINIMAL.read_text(encoding="utf-8")))


def expected_of(case: Path) -> list[str]:
    text = case.with_suffix(".expected").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def _content(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


def test_minimal_scenario_loads() -> None:
    s = load_scenario(MINIMAL)
    assert [e.id for e in s.equipment] == ["cnc-a", "plc-b", "man-c"]
    assert [m.id for m in s.meters] == ["em-main", "em-c", "wm"]
    assert {e.interface for e in s.equipment} == {
        Interface.OPCUA,
        Interface.MODBUS_PLC,
        Interface.METER_ONLY,
    }


def test_every_bad_case_has_its_expectations() -> None:
    cases = {p.stem for p in BAD}
    expectations = {p.stem for p in BAD_DIR.glob("*.expected")}
    assert cases == expectations, "a .yaml without .expected, or the other way round"
    assert {p.suffix for p in BAD_DIR.iterdir()} == {".yaml", ".expected"}
    assert len(cases) >= 20


@pytest.mark.parametrize("case", BAD, ids=[p.stem for p in BAD])
def test_bad_case_is_minimal_with_one_defect(case: Path) -> None:
    text = case.read_text(encoding="utf-8")
    assert text.startswith("# "), "say on the first line what the defect is"
    try:
        data = load_yaml(text)
    except yaml.YAMLError:
        data = None  # the defect is the YAML itself: the text diff below still applies
    if isinstance(data, list):
        assert data == [minimal()], "minimal.yaml, written as a list item"
        return
    base = _content(MINIMAL.read_text(encoding="utf-8"))
    ops = difflib.SequenceMatcher(a=base, b=_content(text), autojunk=False).get_opcodes()
    hunks = [op for op in ops if op[0] != "equal"]
    assert 1 <= len(hunks) <= 2, f"not minimal.yaml with one defect: {hunks}"


@pytest.mark.parametrize("case", BAD, ids=[p.stem for p in BAD])
def test_bad_scenario_is_rejected_with_a_useful_message(case: Path) -> None:
    expected = expected_of(case)
    assert expected
    with pytest.raises(ScenarioError) as err:
        load_scenario(case)
    message = str(err.value)
    assert message.startswith(f"{case}: invalid scenario ")
    assert err.value.source == str(case)
    for problem in err.value.problems:
        assert f"  - {problem}" in message
    # the place and the fix belong to one problem, not scattered over several
    together = [p for p in err.value.problems if all(e in p for e in expected)]
    assert together, f"no single problem holds all of {expected}:\n{message}"


def test_every_problem_is_reported_at_once() -> None:
    data = minimal()
    data["equipment"][0]["cycle_time_s"] = -1
    data["site"]["timezone"] = "Mars/Base"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, "plant.yaml")
    assert str(err.value).startswith("plant.yaml: invalid scenario (2 problem(s)):\n  - ")
    paths = sorted(p.split(":")[0] for p in err.value.problems)
    assert paths == ["equipment[0].cycle_time_s", "site.timezone"]


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ScenarioError, match="cannot read the file") as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: ")


def test_off_stays_a_state_name() -> None:
    text = "power: {OFF: 0, ON: 1}\nflag: true\nno: no"
    # the trap: PyYAML's YAML 1.1 rules read OFF, ON and no as booleans
    assert yaml.safe_load(text)["power"] == {False: 0, True: 1}
    assert load_yaml(text) == {"power": {"OFF": 0, "ON": 1}, "flag": True, "no": "no"}


def test_off_in_a_scenario_file_is_the_off_state() -> None:
    s = load_scenario(MINIMAL)  # power_kw and the state codes are written with a bare OFF:
    plc = s.equipment_by_id()["plc-b"]
    assert plc.power_kw[MachineState.OFF] == 0
    assert plc.power_kw[MachineState.PLANNED_STOP] == 0.2
    codes = s.modbus_servers[0].units[0].registers[0].codes
    assert codes[MachineState.OFF] == 0
    assert codes[MachineState.RUNNING] == 2


def test_an_unquoted_time_stays_a_time(tmp_path: Path) -> None:
    # YAML 1.1 reads 16:00 as the base-60 number 960; the docs promise YAML 1.2 rules
    text = MINIMAL.read_text(encoding="utf-8").replace('"08:00"', "08:00")
    text = text.replace('end: "16:00"', "end: 16:00")
    assert "start: 08:00, end: 16:00" in text
    path = tmp_path / "unquoted.yaml"
    path.write_text(text, encoding="utf-8")
    shift = load_scenario(path).calendar.shifts[0]
    assert (shift.start, shift.end) == ("08:00", "16:00")
    assert yaml.safe_load("end: 16:00") == {"end": 960}, "the trap this avoids"


def test_a_meter_only_machine_needs_its_own_electricity_meter() -> None:
    data = minimal()
    data["meters"][0]["submeters"] = []
    data["meters"][1]["carrier"] = "water"  # em-c now measures man-c's water, not power
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    assert any("'man-c' is meter_only" in p for p in err.value.problems), err.value.problems


def test_demo_is_a_credible_small_machining_plant() -> None:
    s = load_scenario(default_scenario_path())
    assert len(s.equipment) >= 12
    assert len(s.processes) >= 4
    assert {p.key for p in s.processes} == {True, False}
    assert {e.nc for e in s.equipment} == {True, False}
    interfaces = {e.interface for e in s.equipment}
    assert {Interface.OPCUA, Interface.MODBUS_PLC, Interface.METER_ONLY} <= interfaces
    assert s.site.timezone == "Asia/Shanghai"
    for e in s.equipment:
        assert set(e.power_kw) == set(MachineState)


def test_demo_meters_form_a_tree_under_a_main_meter() -> None:
    s = load_scenario(default_scenario_path())
    meters = s.meters_by_id()
    by_carrier = {c: [m for m in s.meters if m.carrier is c] for c in Carrier}
    assert all(by_carrier.values()), "electricity, water and gas meters"
    assert all(m.covers for m in by_carrier[Carrier.WATER] + by_carrier[Carrier.GAS])
    children = {c for m in s.meters for c in m.submeters}
    roots = [m for m in by_carrier[Carrier.ELECTRICITY] if m.id not in children]
    assert len(roots) == 1, "one main incomer"
    main = roots[0]
    assert len(main.submeters) >= 3
    # every machine's electricity reaches the main meter exactly once
    reached: list[str] = []
    todo = [main.id]
    while todo:
        m = meters[todo.pop()]
        reached += m.covers
        todo += m.submeters
    assert sorted(reached) == sorted(e.id for e in s.equipment)


def test_demo_modbus_covers_the_encodings_a_gateway_meets() -> None:
    s = load_scenario(default_scenario_path())
    ports = [srv.port for srv in s.modbus_servers]
    assert len(set(ports)) >= 2, "two Modbus ports"
    assert 0 not in ports, "fixed port numbers a gateway config can name"
    assert max(len({u.unit for u in srv.units}) for srv in s.modbus_servers) >= 4
    assert len(s.opcua_servers) >= 2
    assert all(len(o.machines) >= 2 for o in s.opcua_servers)
    regs = [(u, r) for srv in s.modbus_servers for u in srv.units for r in u.registers]
    types = {(r.type, r.order) for _, r in regs}
    assert {("f32", "ABCD"), ("f32", "CDAB"), ("u32", "ABCD"), ("u32", "CDAB")} <= types
    assert any(r.type == "u32" and r.scale != 1 for _, r in regs)
    assert any(r.source == "state" for _, r in regs)
    assert any(r.type == "u16" and r.source == "parts_completed" for _, r in regs)
    # a 16-bit energy register close enough to its wrap to roll over in a demo run
    meters = s.meters_by_id()
    near_wrap = [
        (u.device, r)
        for u, r in regs
        if r.type == "u16"
        and r.source == "energy_kwh"
        and 0 < 2**16 * r.scale - meters[u.device].initial < 100
    ]
    assert near_wrap, "a u16 energy counter starting within 100 kWh of its wrap"
