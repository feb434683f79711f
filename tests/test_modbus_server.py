"""The Modbus gateways of the demo scenario, read with a plain pymodbus client.

A stand-in plant supplies views the test controls (readings near rollover, negative
power), so every register of every unit can be checked against what it must show.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.cli import free_ports
from simulators.modbus_server import ModbusGatewayServer
from simulators.scenario import (
    COUNTER_SOURCES,
    MachineState,
    Register,
    Scenario,
    default_scenario_path,
    load_scenario,
)
from simulators.views import MachineView, MeterView
from tests.test_registers import oracle


class StandIn:
    """Views the test sets by hand; counts how often the server asked for a sync."""

    def __init__(self, scenario: Scenario) -> None:
        self.machines = {
            e.id: MachineView(
                e.id,
                MachineState.RUNNING,
                0.0,
                70_000 + i,
                69_000 + i,
                5.0,
                "O1",
                1000.0,
                100.0,
                True,
            )
            for i, e in enumerate(scenario.equipment)
        }
        self.meters = {
            m.id: MeterView(m.id, m.carrier, 6553.55 + i * 1000.123, -1.25 + i, True)
            for i, m in enumerate(scenario.meters)
        }
        self.syncs = 0

    def machine(self, equipment_id: str) -> MachineView:
        return self.machines[equipment_id]

    def meter(self, meter_id: str) -> MeterView:
        return self.meters[meter_id]

    def sync(self) -> None:
        self.syncs += 1


@pytest.fixture
async def gateways() -> AsyncIterator[tuple[Scenario, StandIn, dict[str, ModbusGatewayServer]]]:
    scenario = free_ports(load_scenario(default_scenario_path()))
    plant = StandIn(scenario)
    meters = {m.id for m in scenario.meters}
    servers = {
        s.id: ModbusGatewayServer(s, plant, plant.sync, meter_ids=meters)
        for s in scenario.modbus_servers
    }
    for srv in servers.values():
        await srv.start()
    try:
        yield scenario, plant, servers
    finally:
        for srv in servers.values():
            await srv.stop()


async def connect(server: ModbusGatewayServer) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(server.host, port=server.port, timeout=2, retries=0)
    assert await client.connect()
    return client


async def read(client: AsyncModbusTcpClient, r: Register, unit: int) -> list[int] | list[bool]:
    fn = {
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }[r.table]
    rr = await fn(r.address, count=r.width, device_id=unit)
    assert not rr.isError(), (r, rr)
    return list(rr.bits[:1]) if r.type == "bit" else list(rr.registers)


def expected(r: Register, machine: MachineView | None, meter: MeterView | None) -> float:
    """What the register must show, worked out from the view independently of the codec."""
    if r.source == "state":
        assert machine is not None
        return r.codes[machine.state]
    if r.source in ("running", "alarm"):
        assert machine is not None
        want = MachineState.RUNNING if r.source == "running" else MachineState.DOWN
        return float(machine.state is want)
    if machine is not None:
        value: float = getattr(machine, r.source)
    else:
        assert meter is not None
        value = meter.reading if r.source in COUNTER_SOURCES else meter.rate
    if r.type in ("f32", "f64"):
        return value  # floats carry the value as measured
    steps = (
        math.floor(round(value / r.scale, 6))
        if r.source in COUNTER_SOURCES
        else round(value / r.scale)
    )
    if r.type.startswith("u"):
        steps = steps % 2 ** (16 * r.width) if r.source in COUNTER_SOURCES else max(0, steps)
    return steps * r.scale


async def test_every_register_of_every_unit(gateways: tuple) -> None:  # type: ignore[type-arg]
    scenario, plant, servers = gateways
    checked = 0
    for cfg in scenario.modbus_servers:
        client = await connect(servers[cfg.id])
        try:
            for unit in cfg.units:
                machine = plant.machines.get(unit.device)
                meter = plant.meters.get(unit.device)
                for r in unit.registers:
                    words = await read(client, r, unit.unit)
                    want = expected(r, machine, meter)
                    if r.type == "bit":
                        got: float = float(bool(words[0]))
                    else:
                        got = oracle([int(w) for w in words], r.type, r.order) * r.scale
                    tol = abs(want) * 2**-23 if r.type == "f32" else 1e-6  # f32: 24-bit mantissa
                    assert got == pytest.approx(want, abs=max(tol, 1e-6)), (cfg.id, unit.unit, r)
                    checked += 1
        finally:
            client.close()
    assert checked == sum(len(u.registers) for s in scenario.modbus_servers for u in s.units)


async def test_rollover_and_negative_values_are_encoded_as_devices_do(gateways: tuple) -> None:  # type: ignore[type-arg]
    _, plant, servers = gateways
    client = await connect(servers["meter-gateway"])
    try:
        # em-ht: u16 at 0.1 kWh. 6553.55 shows 65535; after the wrap 6553.65 shows 0.
        plant.meters["em-ht"] = replace(plant.meters["em-ht"], reading=6553.55)
        rr = await client.read_holding_registers(0, count=1, device_id=4)
        assert rr.registers == [65535]
        plant.meters["em-ht"] = replace(plant.meters["em-ht"], reading=6553.65)
        rr = await client.read_holding_registers(0, count=1, device_id=4)
        assert rr.registers == [0]
        # em-milling power: i32 CDAB at 1 W; -1.25 + 2 = 0.75 kW; make it negative (export)
        plant.meters["em-milling"] = replace(plant.meters["em-milling"], rate=-3.5)
        rr = await client.read_holding_registers(2, count=2, device_id=3)
        assert oracle(rr.registers, "i32", "CDAB") == -3500
    finally:
        client.close()


async def test_one_request_reads_a_whole_block(gateways: tuple) -> None:  # type: ignore[type-arg]
    _, plant, servers = gateways
    client = await connect(servers["plc-gateway"])
    try:
        before = plant.syncs
        # ht-01: holding 10-13 are two u32 CDAB counters, read in one request
        rr = await client.read_holding_registers(10, count=4, device_id=1)
        assert not rr.isError()
        assert oracle(rr.registers[0:2], "u32", "CDAB") == plant.machines["ht-01"].parts_completed
        assert oracle(rr.registers[2:4], "u32", "CDAB") == plant.machines["ht-01"].parts_good
        assert plant.syncs == before + 1, "values are computed once per request, at read time"
    finally:
        client.close()


async def test_undefined_addresses_gaps_and_writes_are_refused(gateways: tuple) -> None:  # type: ignore[type-arg]
    _, _, servers = gateways
    client = await connect(servers["plc-gateway"])
    try:
        gap = await client.read_holding_registers(0, count=11, device_id=1)  # 1..9 undefined
        assert gap.isError()
        assert gap.exception_code == 2
        beyond = await client.read_holding_registers(500, count=1, device_id=1)
        assert beyond.isError()
        assert beyond.exception_code == 2
        bit = await client.read_discrete_inputs(2, count=1, device_id=1)
        assert bit.isError()
        assert bit.exception_code == 2
        write = await client.write_register(0, 7, device_id=1)
        assert write.isError()
        assert write.exception_code == 2
        unknown = await client.read_holding_registers(0, count=1, device_id=99)
        assert unknown.isError()
        assert unknown.exception_code == 0x0B
    finally:
        client.close()


async def test_offline_unit_answers_0x0b_and_the_others_keep_answering(gateways: tuple) -> None:  # type: ignore[type-arg]
    _, plant, servers = gateways
    plant.machines["ht-02"] = replace(plant.machines["ht-02"], online=False)
    client = await connect(servers["plc-gateway"])
    try:
        rr = await client.read_input_registers(100, count=1, device_id=2)
        assert rr.isError()
        assert rr.exception_code == 0x0B
        ok = await client.read_holding_registers(0, count=1, device_id=1)
        assert not ok.isError()
        plant.machines["ht-02"] = replace(plant.machines["ht-02"], online=True)
        back = await client.read_input_registers(100, count=1, device_id=2)
        assert not back.isError()
        assert back.registers == [20]
    finally:
        client.close()


async def test_restart_drops_connections_and_listens_again(gateways: tuple) -> None:  # type: ignore[type-arg]
    _, _, servers = gateways
    srv = servers["meter-gateway"]
    port = srv.port
    client = await connect(srv)
    try:
        restart = asyncio.create_task(srv.restart(0.5))
        await asyncio.sleep(0.2)
        # the gateway dropped the connection: the request cannot go out
        with pytest.raises(ModbusException):
            await client.read_holding_registers(0, count=2, device_id=1)
        await restart
    finally:
        client.close()
    assert srv.port == port
    again = await connect(srv)
    try:
        rr = await again.read_holding_registers(0, count=2, device_id=1)
        assert not rr.isError()
    finally:
        again.close()
