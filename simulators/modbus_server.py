"""Modbus TCP gateways: PLCs and meters behind one port each, several unit ids per port.

    client --request--> pymodbus ModbusTcpServer --action(unit)--> sync(); view -> encode

Registers are computed at the moment they are read, in the ``action`` hook of pymodbus'
SimDevice, from the plant advanced to "now" by ``sync``; nothing polls. What a real
RS-485 to Ethernet gateway does, this one does:

- a unit whose device is offline answers exception 0x0B (gateway target device failed
  to respond) after ``offline_delay_s``, whatever it was asked; the other units on the
  port keep answering meanwhile (pymodbus runs each request as its own task);
- a unit id nobody configured answers 0x0B after the same delay. pymodbus 3.16 sends
  every unknown id to device 0 and, without one, answers 0x04 (device failure) and logs
  an error; so device 0 here is that silent bus, and a request to id 0 gets 0x0B too;
- an address the device does not define answers exception 2 (illegal address), and so
  does a read that spans a gap between two defined registers or bits;
- every register is read-only: a write answers exception 2.

Each table of a unit is one pymodbus block from its lowest to its highest defined
address; the action refuses the gaps. pymodbus refuses addresses outside the block with
exception 2 itself, before the action runs (so even while the device is offline). It
hands the action the number of 16-bit words a coil or discrete-input read touches, not
the number of bits asked for; two request classes pass that number on.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from collections.abc import Callable, Collection
from typing import Protocol

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import ReadCoilsRequest, ReadDiscreteInputsRequest
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from simulators.ports import pick_free_port
from simulators.registers import encode, register_value
from simulators.scenario import EQUIPMENT_SOURCES, ModbusServer, ModbusUnit, Register
from simulators.views import MachineView, MeterView

logger = logging.getLogger(__name__)

# function code -> table; pymodbus maps them the same way (SimRuntime._fx_mapper)
_TABLE_OF_FC = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 4: "input"}
_TABLE_OF_FC |= dict.fromkeys((3, 6, 16, 22, 23), "holding")
_BIT_TABLES = ("coil", "discrete")
_TABLES = ("coil", "discrete", "holding", "input")

_bits_requested: contextvars.ContextVar[int] = contextvars.ContextVar("bits_requested")


class PlantSource(Protocol):
    def machine(self, equipment_id: str) -> MachineView: ...

    def meter(self, meter_id: str) -> MeterView: ...


class _BitCountRequest(ReadCoilsRequest):
    """A bit read that tells the action how many bits were asked for (it runs in this task).

    The shared base of both bit reads: ReadDiscreteInputsRequest only changes the
    function code, so one datastore_update serves both.
    """

    async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
        token = _bits_requested.set(self.count)
        try:
            return await super().datastore_update(context, device_id)
        finally:
            _bits_requested.reset(token)


class _ReadCoils(_BitCountRequest):
    """Read coils (function 1)."""


class _ReadDiscreteInputs(_BitCountRequest, ReadDiscreteInputsRequest):
    """Read discrete inputs (function 2)."""


class _Unit:
    """One unit id: its register map, as pymodbus blocks and as an address lookup."""

    def __init__(self, unit: ModbusUnit) -> None:
        self.unit = unit
        # (table, address) -> (register, word index), for every defined address
        self.cells: dict[tuple[str, int], tuple[Register, int]] = {
            (r.table, r.address + i): (r, i) for r in unit.registers for i in range(r.width)
        }

    def addresses(self, table: str) -> list[int]:
        return sorted(a for t, a in self.cells if t == table)

    def simdata(self) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
        def block(table: str) -> list[SimData]:
            addrs = self.addresses(table)
            if table in _BIT_TABLES:
                # pymodbus wants a BITS block in every bit table; the action refuses the rest
                lo, hi = (addrs[0], addrs[-1]) if addrs else (0, 0)
                return [SimData(lo, values=[False] * (hi - lo + 1), datatype=DataType.BITS)]
            if not addrs:
                return [SimData(0, datatype=DataType.INVALID)]
            count = addrs[-1] - addrs[0] + 1
            return [SimData(addrs[0], count=count, values=0, datatype=DataType.REGISTERS)]

        coils, discretes, holdings, inputs = (block(t) for t in _TABLES)
        return coils, discretes, holdings, inputs

    def defined(self, table: str, address: int, count: int) -> bool:
        return all((table, a) in self.cells for a in range(address, address + count))

    def spans(self, table: str) -> list[tuple[int, int]]:
        """Contiguous runs of defined addresses, as (first, last)."""
        runs = itertools.groupby(enumerate(self.addresses(table)), lambda ia: ia[1] - ia[0])
        out = []
        for _, run in runs:
            addrs = [a for _, a in run]
            out.append((addrs[0], addrs[-1]))
        return out


class ModbusGatewayServer:
    """One Modbus TCP port with the units of one `ModbusServer` entry behind it."""

    def __init__(
        self,
        config: ModbusServer,
        source: PlantSource,
        sync: Callable[[], None],
        *,
        host: str = "127.0.0.1",
        meter_ids: Collection[str] | None = None,
    ) -> None:
        """`meter_ids` says which devices are meters; by default a unit whose registers
        carry no equipment source is a meter (the scenario allows no mixing)."""
        self.config = config
        self.source = source
        self.sync = sync
        self.host = host
        self.port = config.port
        self._units = [_Unit(u) for u in config.units]
        self._is_meter = {
            u.device: (
                u.device in meter_ids
                if meter_ids is not None
                else not any(r.source in EQUIPMENT_SOURCES for r in u.registers)
            )
            for u in config.units
        }
        self._server: ModbusTcpServer | None = None
        self._serving = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _view(self, device: str) -> tuple[MachineView | None, MeterView | None]:
        if self._is_meter[device]:
            return None, self.source.meter(device)
        return self.source.machine(device), None

    def _action_for(self, unit: _Unit) -> SimAction:
        async def action(  # noqa: PLR0917 - pymodbus calls it positionally
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            current_registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            self.sync()
            machine, meter = self._view(unit.unit.device)
            view = machine or meter
            if view is None or not view.online:
                await asyncio.sleep(self.config.offline_delay_s)
                return ExcCodes.GATEWAY_NO_RESPONSE
            table = _TABLE_OF_FC.get(function_code)
            if table is None or set_values is not None:
                return ExcCodes.ILLEGAL_ADDRESS  # read-only, like every meter
            bits = table in _BIT_TABLES
            # for bits pymodbus passes the words touched; the request classes pass the bits
            n = _bits_requested.get(1) if bits else count
            if not unit.defined(table, address, n):
                return ExcCodes.ILLEGAL_ADDRESS
            for a in range(address, address + n):
                register, word = unit.cells[(table, a)]
                value = encode(register, register_value(register, machine, meter))[word]
                if bits:
                    # current_registers is the whole block, 16 bits a word, bit 0 first
                    idx, mask = a // 16 - start_address, 1 << (a % 16)
                    old = current_registers[idx]
                    current_registers[idx] = (old | mask) if value else (old & ~mask)
                else:
                    current_registers[a - start_address] = value
            return None

        return action

    def _devices(self) -> list[SimDevice]:
        devices = [
            SimDevice(id=u.unit.unit, simdata=u.simdata(), action=self._action_for(u))
            for u in self._units
        ]
        # Device 0 stands for every unit id not configured: nobody answers on the bus.
        bits = [SimData(0, values=[False] * 65536, datatype=DataType.BITS)]
        regs = [SimData(0, count=65536, values=0, datatype=DataType.REGISTERS)]
        devices.append(SimDevice(id=0, simdata=(bits, bits, regs, regs), action=self._silent))
        return devices

    async def _silent(  # noqa: PLR0917 - pymodbus calls it positionally
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        del function_code, start_address, address, count, current_registers, set_values
        await asyncio.sleep(self.config.offline_delay_s)
        return ExcCodes.GATEWAY_NO_RESPONSE

    async def _listen(self) -> None:
        server = ModbusTcpServer(
            context=self._devices(),
            address=(self.host, self.port),
            custom_pdu=[_ReadCoils, _ReadDiscreteInputs],
        )
        await server.serve_forever(background=True)
        self._server = server

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # closes the listener and every connection

    async def start(self) -> None:
        if not self.port:
            self.port = pick_free_port(self.host)
        await self._listen()
        self._serving = True
        logger.info(
            "Modbus %s listening on %s (%d units)", self.config.id, self.address, len(self._units)
        )

    async def stop(self) -> None:
        self._serving = False
        await self._close()

    async def restart(self, down_s: float) -> None:
        """Close the listener and every connection, stay away down_s, listen on the same port."""
        await self._close()
        logger.info("Modbus %s down for %.1f s", self.config.id, down_s)
        await asyncio.sleep(down_s)
        if self._serving:  # a stop() during the pause wins
            await self._listen()
            logger.info("Modbus %s listening again on %s", self.config.id, self.address)

    def describe(self) -> list[str]:
        """One line per unit: "plc-gateway 127.0.0.1:15020 unit 1 ht-01: holding 0, 10-13 ..."."""
        lines = []
        for u in self._units:
            parts = []
            for table in _TABLES:
                spans = u.spans(table)
                if not spans:
                    continue
                n = sum(last - first + 1 for first, last in spans)
                what = ("bit" if table in _BIT_TABLES else "register") + ("s" if n > 1 else "")
                text = ", ".join(f"{f}" if f == last else f"{f}-{last}" for f, last in spans)
                parts.append(f"{table} {text} ({n} {what})")
            lines.append(
                f"{self.config.id} {self.address} unit {u.unit.unit} {u.unit.device}: "
                + "; ".join(parts)
            )
        return lines
