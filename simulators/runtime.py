"""FactorySim: the plant model served over OPC UA and Modbus, in (scaled) real time.

    clock --tick--> Plant.advance_to(now) --> OpcUaMachineServer.update()  (push, per tick)
                                         \\-> ModbusGatewayServer           (computed per read)
                                         \\-> TruthWriter                   (JSONL)

One asyncio task ticks the plant; Modbus reads also advance it first, so a register
is exact at the moment it is read. Faults come from the command line (scheduled),
the control API or `inject()`; each leaves a truth record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from simulators.clock import Clock
from simulators.faults import Fault, FaultError
from simulators.modbus_server import ModbusGatewayServer
from simulators.opcua_server import OpcUaMachineServer
from simulators.plant import Plant, PlantError
from simulators.scenario import Scenario, SecurityMode
from simulators.truth import TruthWriter, iso

logger = logging.getLogger(__name__)


class FactorySim:
    def __init__(
        self,
        scenario: Scenario,
        clock: Clock,
        *,
        truth_path: str | Path | None = None,
        host: str = "127.0.0.1",
        tick_s: float = 0.5,
        opcua_security: list[SecurityMode] | None = None,
        cert_dir: Path | None = None,
        faults: list[Fault] | None = None,
        opcua_trusted_clients: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.clock = clock
        self.tick_s = tick_s
        self.plant = Plant(scenario, clock.now())
        self._truth = TruthWriter(truth_path) if truth_path else None
        self.opcua = {
            s.id: OpcUaMachineServer(
                s,
                scenario,
                self.plant,
                host=host,
                # one folder per endpoint: each server has its own certificate
                cert_dir=cert_dir / s.id if cert_dir else None,
                security=opcua_security,
                trusted_clients=opcua_trusted_clients,
            )
            for s in scenario.opcua_servers
        }
        self.modbus = {
            s.id: ModbusGatewayServer(
                s, self.plant, self.sync, meter_ids={m.id for m in scenario.meters}, host=host
            )
            for s in scenario.modbus_servers
        }
        self._scheduled = sorted(
            (f for f in faults or [] if f.at_s is not None), key=lambda f: f.at_s or 0.0
        )
        self._immediate = [f for f in faults or [] if f.at_s is None]
        for f in faults or []:
            self._check_target(f)
        self._ticker: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._running = False

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        try:
            for srv in self.opcua.values():
                await srv.start()
            for mb in self.modbus.values():
                await mb.start()
            await self.step()
        except BaseException:
            await self._stop_servers()
            raise
        self._running = True
        for f in self._immediate:
            await self.inject(f)
        self._ticker = asyncio.create_task(self._tick_loop(), name="factory-sim-tick")
        for line in self.endpoints():
            logger.debug("serving %s", line)

    async def stop(self) -> None:
        """Stop ticking, write the rest of the truth (summary last), stop every server."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._running:
            self.sync()
            self._write(self.plant.finish())
            self._running = False
        await self._stop_servers()
        if self._truth is not None:
            self._truth.close()

    async def _stop_servers(self) -> None:
        for srv in self.opcua.values():
            with contextlib.suppress(Exception):
                await srv.stop()
        for mb in self.modbus.values():
            with contextlib.suppress(Exception):
                await mb.stop()

    async def __aenter__(self) -> FactorySim:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- time -----------------------------------------------------------------------

    def sync(self) -> None:
        """Advance the plant to the clock's now and write the truth it produced."""
        self.plant.advance_to(self.clock.now())
        self._write(self.plant.drain_truth())

    async def step(self) -> None:
        """One tick: advance, fire due faults, push OPC UA values."""
        self.sync()
        elapsed = self.plant.now - self.plant.start
        while self._scheduled and (self._scheduled[0].at_s or 0.0) <= elapsed:
            await self.inject(self._scheduled.pop(0))
        for srv in self.opcua.values():
            await srv.update(self.plant.now)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.step()
            except Exception:
                # One bad tick must not stop the factory; the next tick retries.
                logger.exception("simulator tick failed")

    def _write(self, records: list[dict[str, Any]]) -> None:
        if self._truth is not None and records:
            self._truth.write(records)

    # --- faults ---------------------------------------------------------------------

    def _check_target(self, f: Fault) -> None:
        devices = {e.id for e in self.scenario.equipment} | {m.id for m in self.scenario.meters}
        meters = {m.id for m in self.scenario.meters}
        servers = set(self.opcua) | set(self.modbus)
        if f.kind == "offline" and f.target not in devices:
            raise FaultError(f"offline: {f.target!r} is not an equipment or meter id")
        if f.kind in ("freeze", "reset") and f.target not in meters:
            raise FaultError(
                f"{f.kind}: {f.target!r} is not a meter id; use one of {sorted(meters)}"
            )
        if f.kind == "restart" and f.target not in servers:
            raise FaultError(
                f"restart: {f.target!r} is not a server id; use one of {sorted(servers)}"
            )

    async def inject(self, f: Fault) -> None:
        """Carry out a fault now (restarts run in the background and return at once)."""
        self._check_target(f)
        self.sync()
        logger.warning("fault: %s %s %s", f.kind, f.target, f.seconds or "")
        try:
            if f.kind == "offline":
                self.plant.set_offline(f.target, f.seconds)
            elif f.kind == "freeze":
                self.plant.freeze_meter(f.target, f.seconds)
            elif f.kind == "reset":
                self.plant.reset_meter(f.target)
            else:
                task = asyncio.create_task(self._restart(f.target, f.seconds))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        except PlantError as exc:
            raise FaultError(str(exc)) from None
        self._write(self.plant.drain_truth())

    async def _restart(self, server_id: str, down_s: float) -> None:
        start = self.clock.now()
        if server_id in self.opcua:
            await self.opcua[server_id].restart(down_s)
        else:
            await self.modbus[server_id].restart(down_s)
        self.plant.record(
            {
                "type": "fault",
                "kind": "server_restart",
                "device": server_id,
                "start": iso(start),
                "end": iso(self.clock.now()),
            }
        )

    # --- reporting ------------------------------------------------------------------

    def endpoints(self) -> list[str]:
        lines = []
        for sid, srv in self.opcua.items():
            machines = ", ".join(self.scenario.opcua_servers[self._index(sid)].machines)
            lines.append(f"OPC UA {sid}: {srv.url} ({machines})")
        for mb in self.modbus.values():
            lines.extend(f"Modbus {line}" for line in mb.describe())
        return lines

    def _index(self, server_id: str) -> int:
        return [s.id for s in self.scenario.opcua_servers].index(server_id)

    def summary_line(self) -> str:
        """One line for a console: sim time and how many machines are in each state."""
        counts: dict[str, int] = {}
        for e in self.scenario.equipment:
            state = self.plant.machine(e.id).state.value
            counts[state] = counts.get(state, 0) + 1
        local = dt.datetime.fromtimestamp(self.plant.now, self.scenario.tz)
        states = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        return f"{local:%a %H:%M:%S} {self.scenario.site.timezone}: {states}"

    def status(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "now": iso(self.plant.now),
            "speed": self.clock.speed,
            "endpoints": self.endpoints(),
            "machines": {
                e.id: self.plant.machine(e.id).state.value for e in self.scenario.equipment
            },
        }
