"""Scenario files: the demo is what the issue asks for; bad files say what to fix.

Golden cases live in tests/scenarios/bad/: each patches minimal.yaml (`set` a dotted
path to a value, `delete` a path) and lists substrings (`expect`) that one reported
problem must contain together: the path of the field and what to do about it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulators.scenario import (
    Carrier,
    Interface,
    MachineState,
    ScenarioError,
    default_scenario_path,
    load_scenario,
    load_yaml,
    parse_scenario,
)

HERE = Path(__file__).parent / "scenarios"
MINIMAL = HERE / "minimal.yaml"
BAD = sorted((HERE / "bad").glob("*.yaml"))


def minimal() -> dict[str, Any]:
    return copy.deepcopy(load_yaml(MINIMAL.read_text(encoding="utf-8")))


def _walk(data: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data, (int(last) if isinstance(data, list) else last)


def patched(case: dict[str, Any]) -> dict[str, Any]:
    data = minimal()
    for path in case.get("delete", []):
        parent, key = _walk(data, path)
        del parent[key]
    for path, value in case.get("set", {}).items():
        parent, key = _walk(data, path)
        if isinstance(parent, list) and key == len(parent):
            parent.append(value)
        else:
            parent[key] = value
    return data


def test_minimal_scenario_loads() -> None:
    s = load_scenario(MINIMAL)
    assert [e.id for e in s.equipment] == ["cnc-a", "plc-b", "man-c"]


@pytest.mark.parametrize("case_file", BAD, ids=[p.stem for p in BAD])
def test_bad_scenario_is_rejected_with_a_useful_message(case_file: Path) -> None:
    case = load_yaml(case_file.read_text(encoding="utf-8"))
    assert set(case) <= {"set", "delete", "expect"}, "a typo in the case file itself"
    data = patched(case)
    assert data != minimal(), "the patch changed nothing"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data, source=case_file.name)
    message = str(err.value)
    assert message.startswith(f"{case_file.name}: invalid scenario")
    # the path and the fix belong to one problem, not scattered over several
    together = [p for p in err.value.problems if all(f in p for f in case["expect"])]
    assert together, f"no single problem holds all of {case['expect']}:\n{message}"


def test_there_are_enough_golden_cases() -> None:
    assert len(BAD) >= 40


def test_every_problem_is_reported_at_once() -> None:
    data = patched({"set": {"equipment.0.cycle_time_s": -1, "site.timezone": "Mars/Base"}})
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    paths = {p.split(":")[0] for p in err.value.problems}
    assert {"equipment[0].cycle_time_s", "site.timezone"} <= paths
    assert "(2 problem(s))" in str(err.value)


def test_a_file_error_starts_with_the_file_path(tmp_path: Path) -> None:
    data = patched({"set": {"equipment.1.process": "forging"}})
    path = tmp_path / "plant.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: invalid scenario (1 problem(s)):")
    assert err.value.problems[0].startswith("(top level): equipment[1].process: 'forging'")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    # the flow sequence opened on line 2 is still open at the colon on line 3
    path.write_text("name: x\nequipment: [a, b\nseed: 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: invalid scenario")
    [problem] = err.value.problems  # not the message: tmp_path holds the test's name
    assert problem.startswith("line 3, column 5: not valid YAML")  # the colon of seed:


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="must hold a mapping") as err:
        load_scenario(path)
    assert str(err.value).startswith(str(path))


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "nope.yaml")


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


def test_an_unquoted_time_is_read_as_a_time_or_the_error_says_to_quote_it(
    tmp_path: Path,
) -> None:
    text = MINIMAL.read_text(encoding="utf-8").replace('end: "16:00"', "end: 16:00")
    assert "end: 16:00" in text
    path = tmp_path / "unquoted.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        s = load_scenario(path)
    except ScenarioError as err:
        message = "\n".join(err.problems)  # not the path: tmp_path holds the test's name
    else:
        assert s.calendar.shifts[0].end == "16:00"
        return
    assert "quote" in message, message


def test_a_meter_only_machine_needs_its_own_electricity_meter() -> None:
    data = patched(
        {
            "set": {
                "meters.0.submeters": [],
                "meters.1.carrier": "water",  # em-c now measures man-c's water, not power
            }
        }
    )
    try:
        parse_scenario(data)
    except ScenarioError as err:
        problems = err.problems
    else:
        problems = []
    assert any("'man-c'" in p for p in problems), "accepted without an electricity meter"


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
