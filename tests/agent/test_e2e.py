"""The agent against the real simulators and a real Mosquitto, end to end.

The simulator runs on a ManualClock, so the plant stands still between steps and every
value the agent publishes can be compared exactly with what the plant shows: each
encoding and word order of the demo's registers, the umati states, and a 16-bit energy
register that rolls over.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from edge_agent.config import load_config
from simulators.cli import free_ports
from simulators.registers import decode, encode, register_value
from simulators.runtime import FactorySim
from simulators.scenario import Scenario, default_scenario_path, load_scenario
from tests.harness.agent import Collector, advance, running_agent, running_sim, sim_agent_config
from tests.harness.broker import Broker

pytestmark = pytest.mark.slow
_UINT32 = 2**32


def expected_values(scenario: Scenario, sim: FactorySim) -> dict[tuple[str, str], Any]:
    """What the plant shows now, decoded the way a correct gateway decodes it."""
    out: dict[tuple[str, str], Any] = {}
    meters = {m.id for m in scenario.meters}
    for srv in scenario.opcua_servers:
        for mid in srv.machines:
            v = sim.plant.machine(mid)
            out[(mid, "state")] = v.state.value
            out[(mid, "program")] = v.program
            out[(mid, "parts_completed")] = float(v.parts_completed % _UINT32)
            out[(mid, "parts_good")] = float(v.parts_good % _UINT32)
            out[(mid, "spindle_rpm")] = float(v.spindle_rpm)
            out[(mid, "feed_override_pct")] = float(v.feed_override_pct)
    for mb in scenario.modbus_servers:
        for unit in mb.units:
            machine = None if unit.device in meters else sim.plant.machine(unit.device)
            meter = sim.plant.meter(unit.device) if unit.device in meters else None
            for r in unit.registers:
                raw = decode(r, encode(r, register_value(r, machine, meter)))
                if r.source == "state":
                    assert machine is not None
                    out[(unit.device, "state")] = machine.state.value
                elif r.type == "bit":
                    out[(unit.device, r.source)] = 1.0 if raw else 0.0
                else:
                    out[(unit.device, r.source)] = float(raw) * r.scale
    return out


def matches(got: dict[tuple[str, str], dict[str, Any]], want: dict[tuple[str, str], Any]) -> bool:
    for key, value in want.items():
        s = got.get(key)
        if s is None or s.get("q", "good") != "good":
            return False
        if isinstance(value, float):
            if not isinstance(s["v"], float | int) or s["v"] != pytest.approx(value, abs=1e-9):
                return False
        elif s["v"] != value:
            return False
    return True


async def test_published_values_equal_the_plant_for_every_encoding_and_a_rollover(
    mosquitto: Broker, tmp_path: Path
) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        config, key = sim_agent_config(scenario, sim, mosquitto, tmp_path / "agent")
        collector = Collector(mosquitto, key)
        try:
            async with running_agent(config) as agent:
                want = expected_values(scenario, sim)
                assert len(want) == 8 * 6 + 34  # six tags per CNC, every demo register
                await collector.wait_for(lambda c: matches(c.latest(), want), 30, "first values")
                before = collector.latest()[("em-ht", "energy_kwh")]["v"]
                # two hours on: heat treatment runs at ~90 kW and the u16 register at
                # 0.1 kWh wraps at 6553.6 kWh, a few minutes after 6546.0
                for _ in range(8):
                    await advance(sim, 900)
                want = expected_values(scenario, sim)
                await collector.wait_for(
                    lambda c: matches(c.latest(), want), 30, "values after two hours"
                )
                after = collector.latest()[("em-ht", "energy_kwh")]["v"]
                assert after < before, "the u16 energy register must have rolled over"
                assert agent.sources
        finally:
            collector.close()
        assert collector.errors == []
        # OPC UA values keep both clocks: the machine's (ts) and the server's (sts)
        cnc = [s for s in collector.samples() if s["d"] == "cnc-01" and s["t"] == "program"]
        assert cnc
        assert all("sts" in s for s in cnc)
        births = collector.of("birth")
        assert births, "a retained birth message"
        assert {d["id"] for d in births[-1]["devices"]} == {
            d.id for d in load_config(config).devices
        }
        statuses = [m["state"] for m in collector.of("status")]
        assert statuses[0] == "online"
        assert statuses[-1] == "offline"  # said on a clean stop


async def test_heartbeats_keep_unchanged_values_coming_and_metrics_are_published(
    mosquitto: Broker, tmp_path: Path
) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        config, key = sim_agent_config(
            scenario,
            sim,
            mosquitto,
            tmp_path / "agent",
            only={"em-main", "cnc-05"},
            top={"heartbeat_s": 1.0, "metrics_interval_s": 1.0},
        )
        collector = Collector(mosquitto, key)
        try:
            async with running_agent(config):
                # the plant stands still: every value after the first is a heartbeat
                await asyncio.sleep(4.5)
        finally:
            collector.close()
    energy = [s for s in collector.samples() if (s["d"], s["t"]) == ("em-main", "energy_kwh")]
    assert len({s["v"] for s in energy}) == 1
    assert 4 <= len(energy) <= 7, len(energy)  # the first read and about one a second
    program = [s for s in collector.samples() if (s["d"], s["t"]) == ("cnc-05", "program")]
    assert len(program) >= 4, "a subscribed value that never changes is repeated too"
    metrics = collector.of("metrics")
    assert len(metrics) >= 3
    last = metrics[-1]
    assert last["samples_read"] >= last["samples_sealed"] > 0
    assert last["devices"]["em-main"]["online"] is True
    assert last["devices"]["cnc-05"]["sessions"] == 1
    assert last["samples_suppressed"] > 0  # em-main was polled every 0.2 s, sent every 1 s
