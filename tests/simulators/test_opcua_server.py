"""The umati CNC endpoint, read by a plain asyncua client.

A stand-in plant supplies views the test controls; the address space must be where
OPC 40501-1 puts it, every canonical state must survive the trip through umati, and
security and operation limits must hold against a real client.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    ChannelMode,
    ChannelState,
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


async def test_nodes_are_where_opc_40501_puts_them(
    served: tuple[OpcUaMachineServer, StandIn], scenario: Scenario
) -> None:
    server, plant = served
    eq = scenario.equipment_by_id()["cnc-03"]
    view = plant.views["cnc-03"]
    async with Client(server.url, timeout=5) as client:
        di = await client.get_namespace_index(NS_DI)
        mt = await client.get_namespace_index(NS_MACHINE_TOOL)
        mach = await client.get_namespace_index(NS_MACHINERY)
        vend = await client.get_namespace_index(server.application_uri)
        root = [f"{mach}:Machines", f"{vend}:cnc-03"]

        async def at(*path: str) -> Any:
            return await (await client.nodes.objects.get_child([*root, *path])).read_value()

        machine = await client.nodes.objects.get_child(root)
        assert (await machine.read_display_name()).Text == eq.name_en
        ident = f"{di}:Identification"
        assert (await at(ident, f"{di}:Manufacturer")).Text == eq.vendor
        assert (await at(ident, f"{di}:Model")).Text == eq.model
        assert await at(ident, f"{di}:SerialNumber") == eq.serial
        assert await at(ident, f"{di}:YearOfConstruction") == eq.year
        assert await at(ident, f"{di}:ProductInstanceUri") == (
            f"urn:factory-evidence:{scenario.enterprise.id}:cnc-03"
        )
        tool = [f"{mt}:Monitoring", f"{mt}:MachineTool"]
        assert await at(*tool, f"{mt}:OperationMode") == MachineOperationMode.Automatic
        item = await at(*tool, f"{mach}:MachineryItemState", "0:CurrentState")
        assert item.Text == "Executing"
        channel = [f"{mt}:Monitoring", f"{vend}:Channel1"]
        assert await at(*channel, f"{mt}:ChannelState") == ChannelState.Active
        assert await at(*channel, f"{mt}:FeedOverride") == view.feed_override_pct
        assert await at(*channel, f"{mt}:ChannelMode") == ChannelMode.Automatic
        spindle = [f"{mt}:Monitoring", f"{vend}:Spindle1"]
        assert await at(*spindle, f"{mt}:IsRotating") is True
        assert await at(*spindle, f"{mt}:Override") == 100.0
        assert await at(*spindle, f"{vend}:ActualSpeed") == view.spindle_rpm
        program = [f"{mt}:Production", f"{mt}:ActiveProgram"]
        assert await at(*program, f"{mt}:Name") == view.program
        assert (await at(*program, f"{mt}:State", "0:CurrentState")).Text == "Running"
        job = [f"{mt}:Production", f"{mt}:ProductionPlan", f"{vend}:Job1"]
        assert await at(*job, f"{mt}:Identifier") == "PO-cnc-03"
        assert await at(*job, f"{mt}:RunsCompleted") == view.parts_completed
        assert await at(*job, f"{mt}:PartsCompleted") == view.parts_completed
        assert await at(*job, f"{mt}:PartsGood") == view.parts_good
        lifetime = [f"{mt}:Production", f"{mt}:Statistics", f"{mt}:PartsProducedInLifetime"]
        assert await at(*lifetime) == view.parts_completed
        for name in ("Equipment", "Notification"):
            await client.nodes.objects.get_child([*root, f"{mt}:{name}"])
        # node_ids() names the very nodes a browsing client finds
        ids = server.node_ids()["cnc-03"]
        assert machine.nodeid.to_string() == f"ns={vend};s=cnc-03"
        by_path = await client.nodes.objects.get_child(
            [*root, *tool, f"{mach}:MachineryItemState", "0:CurrentState"]
        )
        assert by_path.nodeid.to_string() == ids["state"]


async def test_every_state_survives_the_trip_through_umati(
    served: tuple[OpcUaMachineServer, StandIn],
) -> None:
    server, plant = served
    async with Client(server.url, timeout=5) as client:
        item = client.get_node(server.node_id("cnc-01", "state"))
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
        await sub.subscribe_data_change(client.get_node(server.node_id("cnc-02", "state")))
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
        state = client.get_node(server.node_id("cnc-04", "state"))
        for n in (node, state):
            dv = await n.read_data_value(raise_on_bad_status=False)
            assert dv.StatusCode.value == ua.StatusCodes.BadNoCommunication
        dv = await node.read_data_value(raise_on_bad_status=False)
        assert dv.Value.Value is None  # Part 4, 7.7.1: a bad value is null on the wire
        assert dv.SourceTimestamp.timestamp() == T0 + 2000
        with pytest.raises(UaStatusCodeError) as err:
            await node.read_value()
        assert err.value.code == ua.StatusCodes.BadNoCommunication
        plant.views["cnc-04"] = replace(plant.views["cnc-04"], online=True, parts_completed=5000)
        await server.update(T0 + 2100)
        for n in (node, state):
            assert (await n.read_data_value()).StatusCode.is_good()
        dv = await node.read_data_value()
        assert dv.Value.Value == 5000
        assert dv.SourceTimestamp.timestamp() == T0 + 2100


async def test_restart_drops_sessions_and_keeps_node_ids(scenario: Scenario) -> None:
    config = scenario.opcua_servers[1]
    plant = StandIn(config.machines)
    server = OpcUaMachineServer(config, scenario, plant)
    await server.start()
    await server.update(T0)
    old = Client(server.url, timeout=2)
    try:
        url, ids = server.url, server.node_ids()
        await old.connect()
        node = old.get_node(ids["cnc-06"]["parts_completed"])
        assert await node.read_value() == plant.views["cnc-06"].parts_completed
        await server.restart(0.2)
        assert (server.url, server.node_ids()) == (url, ids)
        with pytest.raises((UaStatusCodeError, ua.UaError, ConnectionError, TimeoutError)):
            await node.read_value()
        async with Client(server.url, timeout=5) as fresh:
            for machine in config.machines:
                got = await fresh.get_node(ids[machine]["parts_completed"]).read_value()
                assert got == plant.views[machine].parts_completed
                state = await fresh.get_node(ids[machine]["state"]).read_value()
                assert state.Text == "Executing"
    finally:
        with contextlib.suppress(Exception):
            await old.disconnect()
        await server.stop()


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
            keys = itertools.cycle(["state", "operation_mode", "parts_completed"])
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
            node = client.get_node(server.node_id("cnc-05", "state"))
            assert (await node.read_value()).Text == "Executing"
        plain = Client(server.url, timeout=5)
        with pytest.raises((UaStatusCodeError, ua.UaError, ConnectionError, TimeoutError)):
            async with plain:
                await plain.get_node(server.node_id("cnc-05", "state")).read_value()
    finally:
        await server.stop()
