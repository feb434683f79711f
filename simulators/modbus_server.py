"""Modbus TCP gateways: PLCs and meters behind one port each, several unit ids per port.

    client --read--> pymodbus ModbusTcpServer --action--> sync(); views -> registers.encode

Registers are computed at the moment they are read (the `action` hook of pymodbus'
SimDevice), from the plant advanced to "now", so a test reads exact values. What a
real RS-485 gateway does, this one does:

- an address the device does not define answers exception 2 (illegal address), and so
  does a read that spans a gap between two defined registers;
- every register is read-only (writes answer exception 2);
- a unit whose device is offline answers exception 0x0B (gateway target device failed
  to respond) after `offline_delay_s`; an unknown unit id answers 0x0B at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from simulators.ports import pick_free_port
from simulators.registers import encode, register_value
from simulators.scenario import ModbusServer, ModbusUnit, Register
from simulators.views import MachineView, MeterView

logger = logging.getLogger(__name__)

# pymodbus function codes by table
_TABLE_OF_FC = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 4: "input"}
_TABLES = ("coil", "discrete", "holding", "input")


class PlantSource(Protocol):
    def machine(self, equipment_id: str) -> MachineView: ...

    def meter(self, meter_id: str) -> MeterView: ...


class _Unit:
    """One unit id: its register map and how to fill it from the plant."""

    def __init__(self, unit: ModbusUnit, is_meter: bool) -> None:
        self.unit = unit
        self.is_meter = is_meter
        self.by_table: dict[str, list[Register]] = {t: [] for t in _TABLES}
        for r in unit.registers:
            self.by_table[r.table].append(r)
        # address -> (register, word index) for every defined address
        self.cells: dict[str, dict[int, tuple[Register, int]]] = {t: {} for t in _TABLES}
        for r in unit.registers:
            for i in range(r.width):
                self.cells[r.table][r.address + i] = (r, i)

    def simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        def regs(table: str) -> list[SimData]:
            out = [
                SimData(
                    r.address, count=r.width, values=0, datatype=DataType.REGISTERS, readonly=True
                )
                for r in self.by_table[table]
            ]
            # pymodbus needs a block per table; an INVALID one answers exception 2
            return out or [SimData(0, datatype=DataType.INVALID)]

        def bits(table: str) -> list[SimData]:
            # One BITS block from the lowest to the highest defined bit (pymodbus wants a
            # block per table); the action refuses the addresses nobody defined.
            addrs = [r.address for r in self.by_table[table]] or [0]
            lo, hi = min(addrs), max(addrs)
            return [
                SimData(lo, values=[False] * (hi - lo + 1), datatype=DataType.BITS, readonly=True)
            ]

        return bits("coil"), bits("discrete"), regs("holding"), regs("input")

    def defined(self, table: str, address: int, count: int) -> bool:
        cells = self.cells[table]
        return all(a in cells for a in range(address, address + count))


class ModbusGatewayServer:
    def __init__(
        self,
        config: ModbusServer,
        source: PlantSource,
        sync: Callable[[], None],
        *,
        meter_ids: set[str],
        host: str = "127.0.0.1",
    ) -> None:
        self.config = config
        self.source = source
        self.sync = sync
        self.host = host
        self.port = config.port
        self._meter_ids = meter_ids
        self._server: ModbusTcpServer | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _devices(self) -> list[SimDevice]:
        devices = []
        for u in self.config.units:
            unit = _Unit(u, u.device in self._meter_ids)
            coils, discretes, holdings, inputs = unit.simdata()
            devices.append(
                SimDevice(
                    id=u.unit,
                    simdata=(coils, discretes, holdings, inputs),
                    action=self._action_for(unit),
                )
            )
        # Unit id 0 stands for every unit not configured: nobody answers behind the gateway.
        everything_bits = [SimData(0, values=[False] * 65536, datatype=DataType.BITS)]
        everything_regs = [SimData(0, count=65536, values=0, datatype=DataType.REGISTERS)]
        devices.append(
            SimDevice(
                id=0,
                simdata=(everything_bits, everything_bits, everything_regs, everything_regs),
                action=_no_response,
            )
        )
        return devices

    def _action_for(self, unit: _Unit) -> SimAction:
        async def action(  # noqa: PLR0917 - pymodbus calls it positionally
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            current_registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            table = _TABLE_OF_FC.get(function_code)
            if table is None or set_values is not None or not unit.defined(table, address, count):
                return ExcCodes.ILLEGAL_ADDRESS
            self.sync()
            machine = None if unit.is_meter else self.source.machine(unit.unit.device)
            meter = self.source.meter(unit.unit.device) if unit.is_meter else None
            view: MachineView | MeterView | None = meter or machine
            if view is None or not view.online:
                await asyncio.sleep(self.config.offline_delay_s)
                return ExcCodes.GATEWAY_NO_RESPONSE
            bit_table = table in ("coil", "discrete")
            for a in range(address, address + count):
                register, word = unit.cells[table][a]
                value = encode(register, register_value(register, machine, meter))[word]
                if bit_table:
                    idx, mask = a // 16 - start_address, 1 << (a % 16)
                    current = current_registers[idx]
                    current_registers[idx] = (current | mask) if value else (current & ~mask)
                else:
                    current_registers[a - start_address] = value
            return None

        return action

    async def start(self) -> None:
        if not self.port:
            self.port = pick_free_port(self.host)
        self._server = ModbusTcpServer(context=self._devices(), address=(self.host, self.port))
        await self._server.serve_forever(background=True)
        logger.info("Modbus %s listening on %s", self.config.id, self.address)

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None

    async def restart(self, down_s: float) -> None:
        """Close the listener and every connection, stay away for down_s, listen again."""
        await self.stop()
        await asyncio.sleep(down_s)
        await self.start()

    def describe(self) -> list[str]:
        lines = []
        for u in self.config.units:
            tables = sorted({r.table for r in u.registers})
            lines.append(
                f"{self.config.id} {self.address} unit {u.unit} {u.device}: "
                f"{len(u.registers)} registers in {', '.join(tables)}"
            )
        return lines


async def _no_response(  # noqa: PLR0917 - pymodbus calls it positionally
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    del function_code, start_address, address, count, current_registers, set_values
    return ExcCodes.GATEWAY_NO_RESPONSE
