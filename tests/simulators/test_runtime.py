"""The whole simulator in one process: plant, OPC UA and Modbus servers, faults, truth.

A ManualClock makes instants exact: what a plain client reads must equal the plant's
view at that instant, and the truth file must say what the registers showed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from asyncua import Client, ua
from pymodbus.client import AsyncModbusTcpClient

from simulators.cli import free_ports
from simulators.clock import ManualClock
from simulators.faults import Fault, FaultError
from simulators.runtime import FactorySim
from simulators.scenario import Scenario, default_scenario_path, load_scenario
from simulators.truth import parse_iso, read_truth

MACHINERY = "http://opcfoundation.org/UA/Machinery/"
MACHINE_TOOL = "http://opcfoundation.org/UA/MachineTool/"
ITEM_STATE = {
    "RUNNING": "Executing",
    "IDLE": "NotExecuting",
    "SETUP": "NotExecuting",
    "DOWN": "OutOfService",
    "PLANNED_STOP": "NotExecuting",
    "OFF": "NotAvailable",
}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return free_ports(load_scenario(default_scenario_path()))


def monday_0930(scenario: Scenario) -> float:
    # A working Monday morning in Hefei: machines are in shift.
    return dt.datetime(2026, 11, 23, 9, 30, tzinfo=scenario.tz).timestamp()


@pytest.fixture
async def sim(scenario: Scenario, tmp_path: Path) -> AsyncIterator[FactorySim]:
    clock = ManualClock(monday_0930(scenario))
    factory = FactorySim(scenario, clock, truth_path=tmp_path / "truth.jsonl", tick_s=3600)
    await factory.start()
    try:
        yield factory
    finally:
        await factory.stop()


async def advance(sim: FactorySim, seconds: float) -> None:
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(seconds)
    await sim.step()


async def item_state_node(client: Client, machine: str) -> object:
    mach = await client.get_namespace_index(MACHINERY)
    mt = await client.get_namespace_index(MACHINE_TOOL)
    machines = await client.nodes.objects.get_child(f"{mach}:Machines")
    for child in await machines.get_children():
        if (await child.read_browse_name()).Name == machine:
            return await child.get_child(
                [
                    f"{mt}:Monitoring",
                    f"{mt}:MachineTool",
                    f"{mach}:MachineryItemState",
                    "0:CurrentState",
                ]
            )
    raise AssertionError(f"machine {machine} not found under Machines")


def mb_host_port(sim: FactorySim, server_id: str) -> tuple[str, int]:
    host, port = sim.modbus[server_id].address.rsplit(":", 1)
    return host, int(port)


async def read_u16(sim: FactorySim, server: str, unit: int, address: int) -> int:
    host, port = mb_host_port(sim, server)
    client = AsyncModbusTcpClient(host, port=port, timeout=2, retries=0)
    await client.connect()
    try:
        rr = await client.read_holding_registers(address, count=1, device_id=unit)
        assert not rr.isError(), rr
        return int(rr.registers[0])
    finally:
        client.close()


async def test_opcua_state_follows_the_plant(sim: FactorySim) -> None:
    url = sim.opcua["opc-turning"].url
    async with Client(url, timeout=5) as client:
        node = await item_state_node(client, "cnc-01")
        seen = set()
        for _ in range(12):
            view = sim.plant.machine("cnc-01")
            value = await node.read_value()  # type: ignore[attr-defined]
            assert value.Text == ITEM_STATE[view.state.value], (view, value)
            seen.add(view.state.value)
            await advance(sim, 17 * 60)
        assert len(seen) >= 2, "three hours of a working morning should show a state change"


async def test_meter_register_is_what_the_plant_reads(sim: FactorySim) -> None:
    # em-ht: u16 at 0.1 kWh on meter-gateway unit 4, holding 0
    for _ in range(5):
        raw = await read_u16(sim, "meter-gateway", 4, 0)
        reading = sim.plant.meter("em-ht").reading
        assert raw == int(reading / 0.1) % 65536
        await advance(sim, 7 * 60 + 3)


async def test_rollover_appears_in_register_and_truth(sim: FactorySim, tmp_path: Path) -> None:
    # initial 6546.0 kWh, modulus 6553.6: at 9:30 on a Monday the line draws > 80 kW
    before = await read_u16(sim, "meter-gateway", 4, 0)
    assert before > 65000
    for _ in range(60):
        await advance(sim, 60)
        if sim.plant.meter("em-ht").reading >= 6553.6:
            break
    after = await read_u16(sim, "meter-gateway", 4, 0)
    assert after < before, "the 16-bit register must wrap"
    await sim.stop()
    rollovers = [r for r in read_truth(tmp_path / "truth.jsonl") if r["type"] == "rollover"]
    assert [r["device"] for r in rollovers] == ["em-ht"]
    assert rollovers[0]["register"] == "meter-gateway/4/holding:0"
    t = parse_iso(rollovers[0]["ts"])
    assert sim.plant.start < t <= sim.plant.now


async def test_offline_fault_reaches_both_protocols(sim: FactorySim, tmp_path: Path) -> None:
    await sim.inject(Fault("offline", "cnc-02", 120))
    await sim.inject(Fault("offline", "em-milling", 120))
    await sim.step()
    async with Client(sim.opcua["opc-turning"].url, timeout=5) as client:
        node = await item_state_node(client, "cnc-02")
        dv = await node.read_data_value(raise_on_bad_status=False)  # type: ignore[attr-defined]
        assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
        other = await item_state_node(client, "cnc-01")
        assert (await other.read_data_value()).StatusCode.is_good()  # type: ignore[attr-defined]

    host, port = mb_host_port(sim, "meter-gateway")
    client = AsyncModbusTcpClient(host, port=port, timeout=3, retries=0)
    await client.connect()
    try:
        rr = await client.read_holding_registers(0, count=2, device_id=3)
        assert rr.isError()
        assert rr.exception_code == 0x0B
        ok = await client.read_holding_registers(0, count=1, device_id=4)
        assert not ok.isError(), "other units on the same port keep answering"
        await advance(sim, 121)
        back = await client.read_holding_registers(0, count=2, device_id=3)
        assert not back.isError()
    finally:
        client.close()
    await sim.stop()
    faults = [r for r in read_truth(tmp_path / "truth.jsonl") if r["type"] == "fault"]
    offline = {r["device"]: r for r in faults if r["kind"] == "offline"}
    assert set(offline) == {"cnc-02", "em-milling"}
    assert parse_iso(offline["cnc-02"]["end"]) - parse_iso(offline["cnc-02"]["start"]) == 120


async def test_freeze_and_reset_a_meter(sim: FactorySim) -> None:
    # em-milling: u32 ABCD at 0.01 kWh, unit 3, holding 0-1
    host, port = mb_host_port(sim, "meter-gateway")
    client = AsyncModbusTcpClient(host, port=port, timeout=3, retries=0)
    await client.connect()

    async def reading() -> float:
        rr = await client.read_holding_registers(0, count=2, device_id=3)
        assert not rr.isError()
        return (rr.registers[0] << 16 | rr.registers[1]) * 0.01

    try:
        await sim.inject(Fault("freeze", "em-milling", 600))
        frozen = await reading()
        await advance(sim, 300)
        assert await reading() == frozen
        await advance(sim, 301)
        thawed = await reading()
        assert thawed > frozen
        assert thawed == pytest.approx(sim.plant.meter("em-milling").reading, abs=0.011)
        await sim.inject(Fault("reset", "em-milling"))
        assert await reading() == 0
        await advance(sim, 600)
        assert 0 < await reading() < thawed
    finally:
        client.close()


async def test_restart_needs_a_new_session(sim: FactorySim, tmp_path: Path) -> None:
    url = sim.opcua["opc-milling"].url
    client = Client(url, timeout=2)
    await client.connect()
    try:
        await sim.inject(Fault("restart", "opc-milling", 1.0))
        await asyncio.sleep(0.3)
        with pytest.raises((ConnectionError, ua.UaError, asyncio.TimeoutError, OSError)):
            await client.nodes.server_state.read_value()
    finally:
        # the server already dropped us, which is the point
        with contextlib.suppress(TimeoutError, ConnectionError, ua.UaError, OSError):
            await client.disconnect()
    for _ in range(50):
        await asyncio.sleep(0.1)
        try:
            async with Client(url, timeout=2) as fresh:
                node = await item_state_node(fresh, "cnc-05")
                assert (await node.read_value()).Text  # type: ignore[attr-defined]
                break
        except (TimeoutError, ConnectionError, OSError):
            continue
    else:
        raise AssertionError("the OPC UA server did not come back")
    await sim.stop()
    restarts = [
        r
        for r in read_truth(tmp_path / "truth.jsonl")
        if r["type"] == "fault" and r["kind"] == "server_restart"
    ]
    assert [r["device"] for r in restarts] == ["opc-milling"]


async def test_unknown_fault_targets_are_refused(sim: FactorySim) -> None:
    with pytest.raises(FaultError, match="not an equipment or meter id"):
        await sim.inject(Fault("offline", "cnc-99", 10))
    with pytest.raises(FaultError, match="not a meter id"):
        await sim.inject(Fault("freeze", "cnc-01", 10))
    with pytest.raises(FaultError, match="not a server id"):
        await sim.inject(Fault("restart", "em-main", 10))


async def test_truth_file_ends_with_a_summary_that_adds_up(sim: FactorySim, tmp_path: Path) -> None:
    await advance(sim, 3 * 3600 + 17)
    await sim.stop()
    records = list(read_truth(tmp_path / "truth.jsonl"))
    assert records[0]["type"] == "run"
    assert records[-1]["type"] == "summary"
    summary = records[-1]
    for eq, totals in summary["equipment"].items():
        spans = sorted(
            (r for r in records if r["type"] == "state" and r["device"] == eq),
            key=lambda r: r["start"],
        )
        assert spans[0]["start"] == records[0]["start"]
        assert spans[-1]["end"] == summary["end"]
        for a, b in itertools.pairwise(spans):
            assert a["end"] == b["start"], f"{eq}: gap or overlap at {a['end']}"
        assert sum(s["parts_completed"] for s in spans) == totals["parts_completed"]
