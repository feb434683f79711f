"""`edge-agent discover` against the simulators: umati machines found, registers probed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_agent.config import parse_config
from edge_agent.discover import _Machine, _Var, discover_opcua, probe_modbus, propose
from simulators.agent_config import agent_config
from simulators.cli import free_ports
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.agent import running_sim


async def test_opcua_discovery_proposes_the_umati_roles(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        url = sim.opcua["opc-turning"].url
        proposal = await discover_opcua(url)
        node_ids = sim.opcua["opc-turning"].node_ids()
    fragment = proposal.fragment
    devices = fragment["devices"]
    assert [d["id"] for d in devices] == ["cnc-01", "cnc-02", "cnc-03", "cnc-04"]
    # what discovery proposes is what the generator (which knows the layout) writes
    generated = agent_config(scenario, opcua_urls={"opc-turning": url})
    by_id = {d["id"]: d for d in generated["devices"]}
    for d in devices:
        proposed = {n["tag"]: n for n in d["nodes"]}
        expected = {n["tag"]: n for n in by_id[d["id"]]["nodes"]}
        for tag in ("state", "program", "parts_completed", "parts_good"):
            assert proposed[tag]["node"] == expected[tag]["node"], (d["id"], tag)
            assert proposed[tag]["role"] == expected[tag]["role"]
        assert (
            proposed["state"]["umati_operation_mode"] == expected["state"]["umati_operation_mode"]
        )
        # ProductionPlan/Job1/RunsCompleted: found; generic here, since this machine's
        # PartsCompleted is already its part_count_total (the two would add up)
        runs = proposed["runs_completed"]
        assert runs["node"].endswith(";s=" + node_ids[d["id"]]["runs_completed"].split(";s=")[1])
        assert runs["role"] == "generic"
    notes = [n for n in proposal.notes if ".runs_completed:" in n]
    assert len(notes) == len(devices)
    assert all("per-job counter" in n and "PartsCompleted" in n for n in notes)
    # and the fragment is a valid part of an agent config
    valid(fragment)


def valid(fragment: dict[str, Any]) -> None:
    parse_config(
        {
            "version": 1,
            "gateway": {"enterprise": "e", "site": "s", "id": "g"},
            "mqtt": {"url": "mqtt://127.0.0.1:1", "hmac_key_file": "k"},
            "outbox": {"path": "o.db"},
            **fragment,
        }
    )


def machine(name: str, *paths: tuple[str, ...]) -> _Machine:
    return _Machine(name, [_Var(p, f"nsu=urn:x;s={name}." + ".".join(p)) for p in paths])


ITEM = ("Monitoring", "MachineTool", "MachineryItemState", "CurrentState")


def test_runs_completed_is_the_part_counter_of_a_machine_without_parts_counters() -> None:
    # OPC 40501 as specified: a machine's jobs count runs, not parts
    m = machine(
        "Lathe 7",
        ITEM,
        ("Monitoring", "MachineTool", "OperationMode"),
        ("Production", "ProductionPlan", "PO-1001", "RunsCompleted"),
        ("Production", "ProductionPlan", "PO-1001", "RunsPlanned"),
    )
    proposal = propose([m], "opc.tcp://127.0.0.1:4840/")
    nodes = {n["tag"]: n for n in proposal.fragment["devices"][0]["nodes"]}
    assert nodes["runs_completed"] == {
        "tag": "runs_completed",
        "role": "part_count_total",
        "node": "nsu=urn:x;s=Lathe 7.Production.ProductionPlan.PO-1001.RunsCompleted",
        "unit": "runs",
    }
    [note] = proposal.notes
    assert note.startswith("lathe-7.runs_completed: ProductionPlan/PO-1001/RunsCompleted")
    assert "per-job counter" in note
    assert "PartsPerRun" in note
    valid(proposal.fragment)


def test_every_job_gets_its_counter() -> None:
    jobs = ("J-1", "J-2")
    m = machine(
        "m1",
        ITEM,
        ("Monitoring", "MachineTool", "OperationMode"),
        *(("Production", "ProductionPlan", j, "RunsCompleted") for j in jobs),
    )
    proposal = propose([m], "opc.tcp://127.0.0.1:4840/")
    nodes = proposal.fragment["devices"][0]["nodes"]
    assert [(n["tag"], n["role"]) for n in nodes[1:]] == [
        ("runs_completed_j-1", "part_count_total"),
        ("runs_completed_j-2", "part_count_total"),
    ]
    valid(proposal.fragment)


def test_the_state_takes_the_machinery_mode_or_else_maps_the_item_state_alone() -> None:
    mode = ("Monitoring", "MachineTool", "MachineryOperationMode", "CurrentState")
    with_mode = propose([machine("a", ITEM, mode)], "opc.tcp://h:4840/")
    state = with_mode.fragment["devices"][0]["nodes"][0]
    assert state["umati_operation_mode"].endswith("MachineryOperationMode.CurrentState")
    assert with_mode.notes == []
    alone = propose([machine("b", ITEM)], "opc.tcp://h:4840/")
    state = alone.fragment["devices"][0]["nodes"][0]
    assert state["state_map"] == {
        "NotAvailable": "OFF",
        "OutOfService": "DOWN",
        "NotExecuting": "IDLE",
        "Executing": "RUNNING",
    }
    assert "cannot be told" in alone.notes[0]
    # either way `edge-agent check` accepts it: the state has a mapping
    valid(with_mode.fragment)
    valid(alone.fragment)


async def test_modbus_probe_finds_exactly_the_defined_registers(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        host, _, port = sim.modbus["plc-gateway"].address.rpartition(":")
        found = await probe_modbus(host, int(port), 1, 0, 30)
    # ht-01: holding 0 (state), 10-13 (two u32 counters), discrete 0-1
    assert list(found["holding"]) == [0, 10, 11, 12, 13]
    assert found["input"] == {}
    assert found["coil"] == {}
    assert list(found["discrete"]) == [0, 1]
