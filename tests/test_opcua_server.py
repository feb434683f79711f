"""The umati CNC endpoint, read by a plain asyncua client.

A stand-in plant supplies views the test controls; the address space must be where
OPC 40501-1 puts it, every canonical state must survive the trip through umati, and
security and operation limits must hold against a real client.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Client, ua
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from asyncua.ua.uaerrors import UaStatusCodeError
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.cli import free_ports
from simulators.opcua_server import OpcUaMachineServer
from simulators.scenario import MachineState, Scenario, default_scenario_path, load_scenario
from simulators.umati import (
    NS_DI,
    NS_MACHINE_TOOL,
    NS_MACHINERY,
    MachineOperationMode,
    canonical_state,
)
from simulators.views import MachineView

pytestmark = pytest.mark.asyncio(loop_scope="module")
T0 = dt.datetime(2026, 11, 23, 1, 30, tzinfo=dt.UTC).timestamp()


class StandIn:
    def __init__(self, machines: list[str]) -> None:
        self.views = {
            m: MachineView(
                m, MachineState.RUNNING, T0, 1000 + i, 990 + i, 11.0, "O1001", 2200.0, 100.0, True
            )
            for i, m in enumerate(machines)
        }

    def machine(self, equipment_id: str) -> MachineView:
        return self.views[equipment_id]


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return free_ports(load_scenario(default_scenario_path()))


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def served(scenario: Scenario) -> AsyncIterator[tuple[OpcUaMachineServer, StandIn]]:
    config = scenario.opcua_servers[0]
    plant = StandIn(config.machines)
    server = OpcUaMachineServer(config, scenario, plant)
    await server.start()
    await server.update(T0)
    try:
        yield server, plant
    finally:
        await server.stop()


async def machine_node(client: Client, machine: str) -> Any:
    ns = await client.get_namespace_index(NS_MACHINERY)
    machines = await client.nodes.objects.get_child(f"{ns}:Machines")
    for child in await machines.get_children():
        if (await child.read_browse_name()).Name == machine:
            return child
    raise AssertionError(f"{machine} is not under Objects/Machines")


async def test_nodes_are_where_opc_40501_puts_them(
    served: tuple[OpcUaMachineServer, StandIn], scenario: Scenario
) -> None:
    server, plant = served
    eq = scenario.equipment_by_id()["cnc-03"]
    async with Client(server.url, timeout=5) as client:
        di = await client.get_namespace_index(NS_DI)
        mt = await client.get_namespace_index(NS_MACHINE_TOOL)
        mach = await client.get_namespace_index(NS_MACHINERY)
        root = await machine_node(client, "cnc-03")
        view = plant.views["cnc-03"]

        async def at(*path: str) -> Any:
            return await (await root.get_child(list(path))).read_value()

        assert (await at(f"{di}:Identification", f"{di}:Manufacturer")).Text == eq.vendor
        assert (await at(f"{di}:Identification", f"{di}:Model")).Text == eq.model
        assert await at(f"{di}:Identification", f"{di}:SerialNumber") == eq.serial
        assert await at(f"{di}:Identification", f"{di}:YearOfConstruction") == eq.year
        mon = f"{mt}:Monitoring"
        assert await at(mon, f"{mt}:MachineTool", f"{mt}:OperationMode") == (
            MachineOperationMode.Automatic
        )
        item = await at(mon, f"{mt}:MachineTool", f"{mach}:MachineryItemState", "0:CurrentState")
        assert item.Text == "Executing"
        channels = [
            (await c.read_browse_name()).Name
            for c in await (await root.get_child([mon])).get_children()
        ]
        assert {"MachineTool", "Channel1", "Spindle1"} <= set(channels)
        channel = await root.get_child([mon, f"{server._ns['vendor']}:Channel1"])
        assert await (await channel.get_child(f"{mt}:ChannelState")).read_value() == 0
        assert await (await channel.get_child(f"{mt}:FeedOverride")).read_value() == 100.0
        spindle = await root.get_child([mon, f"{server._ns['vendor']}:Spindle1"])
        assert await (await spindle.get_child(f"{mt}:IsRotating")).read_value() is True
        prod = f"{mt}:Production"
        assert await at(prod, f"{mt}:ActiveProgram", f"{mt}:Name") == view.program
        state = await at(prod, f"{mt}:ActiveProgram", f"{mt}:State", "0:CurrentState")
        assert state.Text == "Running"
        job = [prod, f"{mt}:ProductionPlan", f"{server._ns['vendor']}:Job1"]
        assert await at(*job, f"{mt}:PartsCompleted") == view.parts_completed
        assert await at(*job, f"{mt}:PartsGood") == view.parts_good
        assert await at(prod, f"{mt}:Statistics", f"{mt}:PartsProducedInLifetime") == (
            view.parts_completed
        )
        assert await (await root.get_child(f"{mt}:Equipment")).read_browse_name()


async def test_every_state_survives_the_trip_through_umati(
    served: tuple[OpcUaMachineServer, StandIn],
) -> None:
    server, plant = served
    async with Client(server.url, timeout=5) as client:
        item = client.get_node(server.node_id("cnc-01", "item_state"))
        mode = client.get_node(server.node_id("cnc-01", "operation_mode"))
        for i, state in enumerate(MachineState):
            plant.views["cnc-01"] = replace(
                plant.views["cnc-01"], state=state, state_since=T0 + 60 * (i + 1)
            )
            await server.update(T0 + 60 * (i + 1) + 5)
            got = canonical_state((await item.read_value()).Text, await mode.read_value())
            assert got is state


async def test_a_subscription_sees_the_change_stamped_with_its_time(
    served: tuple[OpcUaMachineServer, StandIn],
) -> None:
    server, plant = served
    changes: asyncio.Queue[ua.DataValue] = asyncio.Queue()

    class Handler:
        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            changes.put_nowait(data.monitored_item.Value)

    plant.views["cnc-02"] = replace(
        plant.views["cnc-02"], state=MachineState.IDLE, state_since=T0 + 1000
    )
    await server.update(T0 + 1001)
    async with Client(server.url, timeout=5) as client:
        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_data_change(client.get_node(server.node_id("cnc-02", "item_state")))
        first = await asyncio.wait_for(changes.get(), 5)
        assert first.Value.Value.Text == "NotExecuting"
        plant.views["cnc-02"] = replace(
            plant.views["cnc-02"], state=MachineState.DOWN, state_since=T0 + 1234
        )
        await server.update(T0 + 1240)
        change = await asyncio.wait_for(changes.get(), 5)
        assert change.Value.Value.Text == "OutOfService"
        assert change.SourceTimestamp.timestamp() == T0 + 1234
        await sub.delete()


async def test_an_offline_machine_reads_bad_no_communication(
    served: tuple[OpcUaMachineServer, StandIn],
) -> None:
    server, plant = served
    plant.views["cnc-04"] = replace(plant.views["cnc-04"], online=False)
    await server.update(T0 + 2000)
    async with Client(server.url, timeout=5) as client:
        node = client.get_node(server.node_id("cnc-04", "parts_completed"))
        dv = await node.read_data_value(raise_on_bad_status=False)
        assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
        plant.views["cnc-04"] = replace(plant.views["cnc-04"], online=True, parts_completed=5000)
        await server.update(T0 + 2100)
        dv = await node.read_data_value()
        assert dv.StatusCode.is_good()
        assert dv.Value.Value == 5000


async def test_operation_limits_are_advertised_and_enforced(scenario: Scenario) -> None:
    config = scenario.opcua_servers[1].model_copy(
        update={"max_nodes_per_read": 5, "max_monitored_items_per_call": 3}
    )
    plant = StandIn(config.machines)
    server = OpcUaMachineServer(config, scenario, plant)
    await server.start()
    await server.update(T0)
    try:
        async with Client(server.url, timeout=5) as client:
            limits = client.get_node(
                ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
            )
            assert await limits.read_value() == 5
            keys = itertools.cycle(["item_state", "operation_mode", "parts_completed"])
            nodes = [client.get_node(server.node_id("cnc-05", next(keys))) for _ in range(6)]
            assert len(await client.read_values(nodes[:5])) == 5
            with pytest.raises(UaStatusCodeError) as err:
                await client.read_values(nodes)
            assert err.value.code == ua.StatusCodes.BadTooManyOperations
            sub = await client.create_subscription(100, None)
            await sub.subscribe_data_change(nodes[:3])
            with pytest.raises(UaStatusCodeError) as err:
                await sub.subscribe_data_change(nodes[:4])
            assert err.value.code == ua.StatusCodes.BadTooManyOperations
    finally:
        await server.stop()


async def test_sign_and_encrypt_only(scenario: Scenario, tmp_path: Path) -> None:
    config = scenario.opcua_servers[1]
    server = OpcUaMachineServer(
        config,
        scenario,
        StandIn(config.machines),
        cert_dir=tmp_path / "server",
        security=["sign_encrypt"],
    )
    await server.start()
    await server.update(T0)
    try:
        assert server.certificate_path.exists()
        assert server.private_key_path.exists()
        cert, key = tmp_path / "client_cert.der", tmp_path / "client_key.pem"
        uri = "urn:factory-evidence:test-client"
        await setup_self_signed_certificate(
            key, cert, uri, "127.0.0.1", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "t"}
        )
        client = Client(server.url, timeout=5)
        client.application_uri = uri
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{cert},{key}")
        async with client:
            node = client.get_node(server.node_id("cnc-05", "item_state"))
            assert (await node.read_value()).Text == "Executing"
        plain = Client(server.url, timeout=5)
        with pytest.raises((UaStatusCodeError, ua.UaError, ConnectionError, TimeoutError)):
            async with plain:
                await plain.get_node(server.node_id("cnc-05", "item_state")).read_value()
    finally:
        await server.stop()
