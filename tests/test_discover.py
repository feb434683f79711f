"""`edge-agent discover` against the simulators: umati machines found, registers probed."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import parse_config
from edge_agent.discover import discover_opcua, probe_modbus
from simulators.agent_config import agent_config
from simulators.cli import free_ports
from simulators.scenario import default_scenario_path, load_scenario
from tests.agent_harness import running_sim


async def test_opcua_discovery_proposes_the_umati_roles(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        url = sim.opcua["opc-turning"].url
        fragment = await discover_opcua(url)
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
    # and the fragment is a valid part of an agent config
    parse_config(
        {
            "version": 1,
            "gateway": {"enterprise": "e", "site": "s", "id": "g"},
            "mqtt": {"url": "mqtt://127.0.0.1:1", "hmac_key_file": "k"},
            "outbox": {"path": "o.db"},
            **fragment,
        }
    )


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
