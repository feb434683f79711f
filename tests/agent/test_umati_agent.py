"""The agent's umati mapping, against the simulator's tables and its real OPC UA server.

Pure: the agent's mapping inverts the simulator's for every canonical state. Against the
server: the agent's OpcUaSource reads a machine in planned maintenance (NotExecuting,
OperationMode Service, MachineryOperationMode Maintenance) and publishes PLANNED_STOP
through either mode node, and a device's umati_states override is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from edge_agent.config import OpcUaDeviceConfig
from edge_agent.contract.sample import MachineState, Quality, Sample
from edge_agent.opcua_source import OpcUaSource
from edge_agent.umati import umati_state
from simulators.cli import free_ports
from simulators.opcua_server import OpcUaMachineServer
from simulators.scenario import default_scenario_path, load_scenario
from simulators.umati import UMATI_OF
from simulators.views import MachineView

T0 = dt.datetime(2026, 11, 23, 1, 30, tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize("state", list(UMATI_OF))
def test_round_trip(state) -> None:  # type: ignore[no-untyped-def]
    u = UMATI_OF[state]
    assert umati_state(u.item_state, int(u.operation_mode)) == MachineState(state.value)
    # OPC UA Int32 arrives as a float after normalisation
    assert umati_state(u.item_state, float(u.operation_mode)) == MachineState(state.value)
    # a machine exposing OPC 40001's MachineryOperationMode instead
    assert umati_state(u.item_state, u.machinery_mode) == MachineState(state.value)


def test_unknown_item_state_names_the_expected_ones() -> None:
    with pytest.raises(ValueError, match="expected NotAvailable, OutOfService"):
        umati_state("Running", 1)


class OnePlant:
    """The views the server encodes: one machine whose state the test sets."""

    def __init__(self, machines: list[str]) -> None:
        self.views = {
            m: MachineView(m, MachineState.RUNNING, T0, 10, 10, 11.0, "O1", 2200.0, 100.0, True)
            for m in machines
        }

    def machine(self, equipment_id: str) -> MachineView:
        return self.views[equipment_id]


class Received:
    """What the sources emitted, and an event set whenever more arrives."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.more = asyncio.Event()

    def emit(self, batch: list[Sample]) -> None:
        self.samples.extend(batch)
        self.more.set()

    def last(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        """The last value of each (device, tag): the state, or the status of a bad one."""
        out: dict[tuple[str, str], Any] = {}
        for s in self.samples:
            if (s.device, s.tag) in keys:
                out[(s.device, s.tag)] = s.value if s.quality is Quality.GOOD else s.status
        return out

    async def until(self, want: dict[tuple[str, str], str]) -> dict[tuple[str, str], Any]:
        """Wait (at most 15 s) until the last values are the wanted ones; the last values."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                while self.last(set(want)) != want:
                    self.more.clear()
                    await self.more.wait()
        return self.last(set(want))


@contextlib.asynccontextmanager
async def reading(devices: list[OpcUaDeviceConfig], got: Received) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(OpcUaSource(d, got.emit).run()) for d in devices]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def test_the_agent_publishes_planned_maintenance_as_planned_stop() -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    config = scenario.opcua_servers[0]
    # one machine read through its OPC 40501 OperationMode (Int32), the other through its
    # OPC 40001 MachineryOperationMode (text); both in planned maintenance
    tool, machinery = config.machines[:2]
    plant = OnePlant(config.machines)
    for m in (tool, machinery):
        plant.views[m] = replace(plant.views[m], state=MachineState.PLANNED_STOP)
    server = OpcUaMachineServer(config, scenario, plant)
    await server.start()
    try:
        await server.update(T0)
        ids = server.node_ids()

        def device(dev_id: str, **extra: Any) -> OpcUaDeviceConfig:
            return OpcUaDeviceConfig.model_validate(
                {
                    "id": dev_id,
                    "protocol": "opcua",
                    "endpoint": server.url,
                    "publishing_interval_ms": 50,
                    "sampling_interval_ms": 0,
                    "nodes": [
                        {
                            "tag": "state",
                            "role": "machine_state",
                            "node": ids[tool]["state"],
                            "umati_operation_mode": ids[tool]["operation_mode"],
                        },
                        {
                            "tag": "state_40001",
                            "role": "machine_state",
                            "node": ids[machinery]["state"],
                            "umati_operation_mode": ids[machinery]["machinery_operation_mode"],
                        },
                    ],
                    **extra,
                }
            )

        # a site that counts all maintenance against availability (TPM practice)
        tpm = {"NotExecuting/Service": "DOWN", "NotExecuting/Maintenance": "DOWN"}
        devices = [device("default"), device("tpm", umati_states=tpm)]
        got = Received()
        async with reading(devices, got):
            maintenance = {
                ("default", "state"): "PLANNED_STOP",
                ("default", "state_40001"): "PLANNED_STOP",
                ("tpm", "state"): "DOWN",
                ("tpm", "state_40001"): "DOWN",
            }
            assert await got.until(maintenance) == maintenance
            # maintenance over: the same item state, back in Automatic / Processing
            for m in (tool, machinery):
                plant.views[m] = replace(
                    plant.views[m], state=MachineState.IDLE, state_since=T0 + 60
                )
            await server.update(T0 + 61)
            idle = dict.fromkeys(maintenance, "IDLE")
            assert await got.until(idle) == idle
    finally:
        await server.stop()
