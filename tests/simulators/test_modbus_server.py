"""The Modbus gateways of the demo scenario, read with a plain pymodbus client.

A stand-in plant supplies views the test controls (readings near rollover, negative
power, every machine state), so every register of every unit can be checked against
what it must show, decoded with pymodbus' own converters rather than our codec.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from simulators.modbus_server import ModbusGatewayServer
from simulators.scenario import (
    COUNTER_SOURCES,
    MachineState,
    ModbusUnit,
    Register,
    Scenario,
    default_scenario_path,
    load_scenario,
)
from simulators.views import MachineView, MeterView
from tests.simulators.test_registers import oracle

OFFLINE_DELAY_S = 0.4

# reading, rate: truncation edges, a u16 at 0.1 kWh just below its rollover, negative power
# (export) in signed and float registers, a negative and an oversized rate in u16s
METERS = {
    "em-main": (1873210.4, 31.5),
    "em-turning": (412330.75, -2.5),
    "em-milling": (298144.129, -3.5),
    "em-grd-02": (35522.3, 7.25),
    "em-ht": (6553.59, -2.25),
    "em-assembly": (88120.5, 12.75),
    "em-drill-01": (12004.8, -1.0),
    "wm-main": (35210.417, 700.0),
    "gm-main": (120455.2, 9.5),
}


class StandIn:
    """Views the test sets by hand; counts how often the server asked for a sync."""

    def __init__(self, scenario: Scenario) -> None:
        self.machines = {
            e.id: MachineView(
                e.id, MachineState.RUNNING, 0.0, 70_000 + i, 69_000 + i, 5.0, "O1", 1e3, 100.0, True
            )
            for i, e in enumerate(scenario.equipment)
        }
        self.meters = {
            m.id: MeterView(m.id, m.carrier, *METERS[m.id], True) for m in scenario.meters
        }
        self.syncs = 0

    def machine(self, equipment_id: str) -> MachineView:
        return self.machines[equipment_id]

    def meter(self, meter_id: str) -> MeterView:
        return self.meters[meter_id]

    def sync(self) -> None:
        self.syncs += 1

    def set_state(self, state: MachineState) -> None:
        self.machines = {k: replace(v, state=state) for k, v in self.machines.items()}


@dataclass
class Gateways:
    scenario: Scenario
    plant: StandIn
    servers: dict[str, ModbusGatewayServer]


@pytest.fixture
async def gw() -> AsyncIterator[Gateways]:
    demo = load_scenario(default_scenario_path())
    scenario = demo.model_copy(
        update={
            "modbus_servers": [
                s.model_copy(update={"port": 0, "offline_delay_s": OFFLINE_DELAY_S})
                for s in demo.modbus_servers
            ]
        }
    )
    plant = StandIn(scenario)
    servers = {s.id: ModbusGatewayServer(s, plant, plant.sync) for s in scenario.modbus_servers}
    try:
        for srv in servers.values():
            await srv.start()
        yield Gateways(scenario, plant, servers)
    finally:
        for srv in servers.values():
            await srv.stop()


async def connect(server: ModbusGatewayServer) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient(server.host, port=server.port, timeout=3, retries=0)
    assert await client.connect()
    return client


async def read_raw(
    client: AsyncModbusTcpClient, table: str, address: int, count: int, unit: int
) -> list[int]:
    """Words of a register table, or 0/1 per bit of a bit table; asserts no error."""
    fn = {
        "holding": client.read_holding_registers,
        "input": client.read_input_registers,
        "coil": client.read_coils,
        "discrete": client.read_discrete_inputs,
    }[table]
    rr = await fn(address, count=count, device_id=unit)
    assert not rr.isError(), (table, address, count, unit, rr)
    if table in ("coil", "discrete"):
        return [int(b) for b in rr.bits[:count]]
    return list(rr.registers)


def shown(r: Register, words: list[int]) -> float:
    """The engineering value a client decodes from the words, with pymodbus' converters."""
    if r.type == "bit":
        return float(words[0])
    return float(oracle(words, r.type, r.order)) * r.scale


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
        value = float(getattr(machine, r.source))
    else:
        assert meter is not None
        value = meter.reading if r.source in COUNTER_SOURCES else meter.rate
    if r.type in ("f32", "f64"):
        return value  # floats carry the value as measured
    bits = 16 * r.width
    lo = 0 if r.type.startswith("u") else -(1 << (bits - 1))
    hi = lo + (1 << bits) - 1
    if r.source in COUNTER_SOURCES:
        steps = math.floor(round(value / r.scale, 6))
        steps = (steps - lo) % (1 << bits) + lo
    else:
        steps = min(hi, max(lo, round(value / r.scale)))
    return steps * r.scale


def check(r: Register, words: list[int], plant: StandIn, unit: ModbusUnit) -> None:
    want = expected(r, plant.machines.get(unit.device), plant.meters.get(unit.device))
    tol = abs(want) * 2**-23 if r.type == "f32" else 1e-6  # f32: 24-bit mantissa
    assert shown(r, words) == pytest.approx(want, abs=max(tol, 1e-6)), (unit.unit, r, words)


def spans(unit: ModbusUnit) -> list[tuple[str, int, int]]:
    """Contiguous runs of defined addresses per table: (table, first address, count)."""
    cells = sorted((r.table, r.address + i) for r in unit.registers for i in range(r.width))
    out = []
    for table, group in itertools.groupby(cells, key=lambda c: c[0]):
        addrs = [a for _, a in group]
        for _, run in itertools.groupby(enumerate(addrs), key=lambda ia: ia[1] - ia[0]):
            run_addrs = [a for _, a in run]
            out.append((table, run_addrs[0], len(run_addrs)))
    return out


async def test_every_register_of_every_unit_in_every_state(
    gw: Gateways, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pymodbus")
    checked = 0
    for state in MachineState:
        gw.plant.set_state(state)
        for cfg in gw.scenario.modbus_servers:
            client = await connect(gw.servers[cfg.id])
            try:
                for unit in cfg.units:
                    for r in unit.registers:
                        words = await read_raw(client, r.table, r.address, r.width, unit.unit)
                        check(r, words, gw.plant, unit)
                        checked += 1
            finally:
                client.close()
    per_state = sum(len(u.registers) for s in gw.scenario.modbus_servers for u in s.units)
    assert checked == per_state * len(MachineState)
    assert not [rec for rec in caplog.records if rec.name.startswith("pymodbus")]


async def test_one_request_reads_each_whole_block(gw: Gateways) -> None:
    gw.plant.set_state(MachineState.DOWN)  # running off, alarm on: bits differ inside a block
    for cfg in gw.scenario.modbus_servers:
        client = await connect(gw.servers[cfg.id])
        try:
            for unit in cfg.units:
                for table, first, count in spans(unit):
                    before = gw.plant.syncs
                    block = await read_raw(client, table, first, count, unit.unit)
                    assert gw.plant.syncs == before + 1, "one sync per request, at read time"
                    assert len(block) == count
                    for r in unit.registers:
                        if r.table == table and first <= r.address < first + count:
                            at = r.address - first
                            check(r, block[at : at + r.width], gw.plant, unit)
        finally:
            client.close()


async def test_values_are_computed_at_read_time(gw: Gateways) -> None:
    client = await connect(gw.servers["meter-gateway"])
    try:
        # em-ht: u16 at 0.1 kWh. 6553.59 shows 65535; after the wrap 6553.65 shows 0.
        assert await read_raw(client, "holding", 0, 1, 4) == [65535]
        gw.plant.meters["em-ht"] = replace(gw.plant.meters["em-ht"], reading=6553.65)
        assert await read_raw(client, "holding", 0, 1, 4) == [0]
        # em-milling power: i32 CDAB at 1 W; export shows negative
        words = await read_raw(client, "holding", 2, 2, 3)
        assert oracle(words, "i32", "CDAB") == -3500
        gw.plant.meters["em-milling"] = replace(gw.plant.meters["em-milling"], rate=4.25)
        words = await read_raw(client, "holding", 2, 2, 3)
        assert oracle(words, "i32", "CDAB") == 4250
    finally:
        client.close()


async def test_undefined_addresses_gaps_and_writes_answer_illegal_address(gw: Gateways) -> None:
    plc = await connect(gw.servers["plc-gateway"])
    meters = await connect(gw.servers["meter-gateway"])
    try:
        refused = [
            await plc.read_holding_registers(0, count=11, device_id=1),  # 1..9 undefined
            await plc.read_holding_registers(5, count=1, device_id=1),  # inside the gap
            await plc.read_holding_registers(500, count=1, device_id=1),  # past the block
            await plc.read_input_registers(0, count=1, device_id=1),  # no input table
            await plc.read_discrete_inputs(0, count=3, device_id=1),  # bit 2 undefined
            await plc.read_discrete_inputs(2, count=1, device_id=1),
            await plc.read_coils(0, count=1, device_id=1),  # ht-01 has no coils
            await plc.read_discrete_inputs(7, count=2, device_id=4),  # press-01 defines 8 only
            await plc.write_coil(0, True, device_id=3),  # wash-01's running coil
            await plc.write_register(0, 7, device_id=1),
            await meters.write_register(0, 7, device_id=3),  # em-milling energy
            await meters.write_registers(0, [1, 2, 3, 4], device_id=3),
        ]
        assert [rr.exception_code if rr.isError() else None for rr in refused] == [2] * 12
        # the refused writes changed nothing
        assert oracle(await read_raw(meters, "holding", 0, 2, 3), "u32", "ABCD") == 29814412
        assert await read_raw(plc, "coil", 0, 1, 3) == [1]
    finally:
        plc.close()
        meters.close()


async def test_unknown_unit_answers_0x0b_after_the_delay(gw: Gateways) -> None:
    client = await connect(gw.servers["plc-gateway"])
    try:
        for unit in (99, 0):
            t0 = time.monotonic()
            rr = await client.read_holding_registers(0, count=1, device_id=unit)
            assert rr.isError()
            assert rr.exception_code == 0x0B
            assert time.monotonic() - t0 >= OFFLINE_DELAY_S * 0.9
    finally:
        client.close()


def set_online(plant: StandIn, device: str, online: bool) -> None:
    if device in plant.machines:
        plant.machines[device] = replace(plant.machines[device], online=online)
    else:
        plant.meters[device] = replace(plant.meters[device], online=online)


@pytest.mark.parametrize(
    "case",
    [("plc-gateway", "ht-02", 2, "input", 100), ("meter-gateway", "em-ht", 4, "holding", 0)],
    ids=["plc", "meter"],
)
async def test_offline_unit_answers_0x0b_while_the_others_answer(
    gw: Gateways, case: tuple[str, str, int, str, int]
) -> None:
    server, device, unit, table, address = case
    set_online(gw.plant, device, False)
    slow = await connect(gw.servers[server])
    fast = await connect(gw.servers[server])
    try:
        fn = slow.read_input_registers if table == "input" else slow.read_holding_registers
        t0 = time.monotonic()
        pending = asyncio.ensure_future(fn(address, count=1, device_id=unit))
        await asyncio.sleep(0.05)
        # another unit on the same port answers while the offline one keeps the gateway waiting
        assert await read_raw(fast, "holding", 0, 1, 1)
        assert not pending.done()
        rr = await pending
        assert rr.isError()
        assert rr.exception_code == 0x0B
        assert time.monotonic() - t0 >= OFFLINE_DELAY_S * 0.9
        # the gateway hears nothing whatever it forwards: a gap address, a write
        if table == "input":
            rr = await slow.read_input_registers(105, count=1, device_id=unit)
        else:
            rr = await slow.write_register(address, 1, device_id=unit)
        assert rr.exception_code == 0x0B
        set_online(gw.plant, device, True)
        assert await read_raw(slow, table, address, 1, unit)
    finally:
        slow.close()
        fast.close()


async def test_restart_drops_connections_and_listens_again(gw: Gateways) -> None:
    srv = gw.servers["meter-gateway"]
    port = srv.port
    client = await connect(srv)
    try:
        assert await read_raw(client, "holding", 0, 2, 1)
        restart = asyncio.create_task(srv.restart(0.5))
        await asyncio.sleep(0.2)
        # the gateway dropped the connection: the request cannot go out
        with pytest.raises(ModbusException):
            await client.read_holding_registers(0, count=2, device_id=1)
        await restart
        assert srv.port == port
        # the same client object reconnects and reads again
        assert await client.connect()
        words = await read_raw(client, "holding", 0, 2, 1)
        assert oracle(words, "u32", "CDAB") == 18_732_104
    finally:
        client.close()


async def test_stop_during_a_restart_pause_stays_stopped(gw: Gateways) -> None:
    srv = gw.servers["plc-gateway"]
    restart = asyncio.create_task(srv.restart(0.3))
    await asyncio.sleep(0.1)
    await srv.stop()
    await restart
    client = AsyncModbusTcpClient(srv.host, port=srv.port, timeout=1, retries=0)
    assert not await client.connect()
    client.close()


def test_describe_lists_each_unit_and_its_address_spans(gw: Gateways) -> None:
    plc = gw.servers["plc-gateway"]
    lines = plc.describe()
    assert len(lines) == 4
    assert lines[0] == (
        f"plc-gateway 127.0.0.1:{plc.port} unit 1 ht-01: "
        "discrete 0-1 (2 bits); holding 0, 10-13 (5 registers)"
    )
    assert lines[2].endswith("wash-01: coil 0 (1 bit); holding 0-2 (3 registers)")
    assert (
        gw.servers["meter-gateway"].describe()[2].endswith("em-milling: holding 0-3 (4 registers)")
    )
