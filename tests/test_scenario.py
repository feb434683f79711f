"""Scenario files: the demo is what the issue asks for; bad files say what to fix.

Golden cases live in tests/scenarios/bad/: each patches minimal.yaml (`set` a dotted
path to a value, `delete` a path) and lists substrings the error must contain.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

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


def _walk(data: Any, path: str) -> tuple[Any, str | int]:
    *parents, last = path.split(".")
    for part in parents:
        data = data[int(part)] if isinstance(data, list) else data[part]
    return data, (int(last) if isinstance(data, list) else last)


def patched(case: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(load_yaml(MINIMAL.read_text(encoding="utf-8")))
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
    with pytest.raises(ScenarioError) as err:
        parse_scenario(patched(case), source=case_file.name)
    message = str(err.value)
    assert message.startswith(f"{case_file.name}: invalid scenario")
    for fragment in case["expect"]:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_there_are_enough_golden_cases() -> None:
    assert len(BAD) >= 20


def test_every_problem_is_reported_at_once() -> None:
    data = patched({"set": {"equipment.0.cycle_time_s": -1, "site.timezone": "Mars/Base"}})
    with pytest.raises(ScenarioError) as err:
        parse_scenario(data)
    paths = {p.split(":")[0] for p in err.value.problems}
    assert {"equipment[0].cycle_time_s", "site.timezone"} <= paths


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nequipment: [a, b\nseed: 1\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: invalid scenario")
    assert "line 3" in str(err.value)


def test_a_list_at_the_top_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.yaml"
    path.write_text("- name: x\n", encoding="utf-8")
    with pytest.raises(ScenarioError, match="mapping"):
        load_scenario(path)


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "nope.yaml")


def test_off_stays_a_state_name() -> None:
    # PyYAML's YAML 1.1 rules would read OFF as False; the loader follows YAML 1.2
    assert load_yaml("power: {OFF: 0, ON: 1}\nflag: true\nno: no") == {
        "power": {"OFF": 0, "ON": 1},
        "flag": True,
        "no": "no",
    }


def test_demo_is_a_credible_small_machining_plant() -> None:
    s = load_scenario(default_scenario_path())
    assert len(s.equipment) >= 12
    assert len(s.processes) >= 4
    assert any(p.key for p in s.processes)
    assert any(not p.key for p in s.processes)
    assert {e.nc for e in s.equipment} == {True, False}
    interfaces = {e.interface for e in s.equipment}
    assert {Interface.OPCUA, Interface.MODBUS_PLC, Interface.METER_ONLY} <= interfaces
    assert s.site.timezone == "Asia/Shanghai"
    carriers = {m.carrier for m in s.meters}
    assert carriers == {Carrier.ELECTRICITY, Carrier.WATER, Carrier.GAS}
    main = [m for m in s.meters if m.carrier is Carrier.ELECTRICITY and m.submeters]
    assert any(len(m.submeters) >= 3 for m in main), "a site main meter over line meters"
    assert len(s.modbus_servers) >= 2
    assert max(len(srv.units) for srv in s.modbus_servers) >= 4
    assert len(s.opcua_servers) >= 2
    assert all(len(o.machines) >= 2 for o in s.opcua_servers)
    regs = [r for srv in s.modbus_servers for u in srv.units for r in u.registers]
    kinds = {(r.type, r.order, r.scale != 1.0) for r in regs}
    assert ("f32", "ABCD", False) in kinds
    assert ("f32", "CDAB", False) in kinds
    assert any(t == "u32" and scaled for t, _, scaled in kinds)
    assert any(r.type == "u32" and r.order == "CDAB" for r in regs)
    assert any(r.type == "u16" and r.source == "energy_kwh" for r in regs), "a rollover counter"
    assert any(r.source == "state" for r in regs)
    for e in s.equipment:
        assert set(e.power_kw) == set(MachineState)
