"""The agent's OPC UA side against the simulator: low server limits, polling, security."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from edge_agent.agent import application_uri
from edge_agent.config import load_config
from edge_agent.opcua_source import OpcUaSource
from simulators.cli import free_ports
from simulators.clock import ManualClock
from simulators.runtime import FactorySim
from simulators.scenario import Scenario, SecurityMode, default_scenario_path, load_scenario
from tests.agent_harness import Collector, advance, running_agent, sim_agent_config
from tests.broker import Broker

pytestmark = pytest.mark.slow
TURNING = {"cnc-01", "cnc-02", "cnc-03", "cnc-04"}
_UINT32 = 2**32


def scenario_with(**opc_turning: Any) -> Scenario:
    s = free_ports(load_scenario(default_scenario_path()))
    servers = [
        srv.model_copy(update=opc_turning) if srv.id == "opc-turning" else srv
        for srv in s.opcua_servers
    ]
    return s.model_copy(update={"opcua_servers": servers})


@contextlib.asynccontextmanager
async def sim_for(
    scenario: Scenario,
    security: list[SecurityMode] | None = None,
    cert_dir: Path | None = None,
    trusted_clients: Path | None = None,
) -> AsyncIterator[FactorySim]:
    start = dt.datetime(2026, 11, 23, 9, 30, tzinfo=scenario.tz).timestamp()
    sim = FactorySim(
        scenario, ManualClock(start), tick_s=3600, opcua_security=security, cert_dir=cert_dir,
        opcua_trusted_clients=trusted_clients,
    )  # fmt: skip
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


def plant_values(sim: FactorySim, machines: set[str]) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for m in machines:
        v = sim.plant.machine(m)
        out[(m, "state")] = v.state.value
        out[(m, "program")] = v.program
        out[(m, "parts_completed")] = float(v.parts_completed % _UINT32)
        out[(m, "parts_good")] = float(v.parts_good % _UINT32)
    return out


def agrees(c: Collector, want: dict[tuple[str, str], Any]) -> bool:
    got = c.latest()
    return all(k in got and got[k]["v"] == v for k, v in want.items())


def turning_source(agent: Any, device: str) -> OpcUaSource:
    source = next(s for s in agent.sources if s.device.id == device)
    assert isinstance(source, OpcUaSource)
    return source


async def test_a_server_with_low_operation_limits_still_gets_everything_read(
    mosquitto: Broker, tmp_path: Path
) -> None:
    # 7 nodes per machine: the initial read needs 4 requests of 2, the subscription 3
    # calls of at most 3 items; one request over a limit is refused BadTooManyOperations
    scenario = scenario_with(max_nodes_per_read=2, max_monitored_items_per_call=3)
    async with sim_for(scenario) as sim:
        config, key = sim_agent_config(scenario, sim, mosquitto, tmp_path, only=TURNING)
        collector = Collector(mosquitto, key)
        try:
            async with running_agent(config) as agent:
                await collector.wait_for(
                    lambda c: agrees(c, plant_values(sim, TURNING)), 30, "the first values"
                )
                await advance(sim, 1800)
                await collector.wait_for(
                    lambda c: agrees(c, plant_values(sim, TURNING)), 30, "values half an hour on"
                )
                limits = turning_source(agent, "cnc-01").stats()["limits"]
                assert limits == {"MaxNodesPerRead": 2, "MaxMonitoredItemsPerCall": 3}
        finally:
            collector.close()


async def test_polling_mode_reads_the_same_values(mosquitto: Broker, tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with sim_for(scenario) as sim:
        config, key = sim_agent_config(
            scenario,
            sim,
            mosquitto,
            tmp_path,
            only={"cnc-05"},
            device_overrides={"mode": "polling", "poll_interval_s": 0.2},
        )
        collector = Collector(mosquitto, key)
        try:
            async with running_agent(config):
                for _ in range(3):
                    await advance(sim, 1200)
                    await collector.wait_for(
                        lambda c: agrees(c, plant_values(sim, {"cnc-05"})), 20, "polled values"
                    )
        finally:
            collector.close()


async def _agent_certificate(tmp_path: Path, uri: str) -> tuple[Path, Path]:
    cert, key = tmp_path / "agent_cert.der", tmp_path / "agent_key.pem"
    await setup_self_signed_certificate(
        key, cert, uri, "127.0.0.1", [ExtendedKeyUsageOID.CLIENT_AUTH], {"commonName": "agent"}
    )
    return cert, key


async def test_sign_and_encrypt_with_a_pinned_server_certificate(
    mosquitto: Broker, tmp_path: Path
) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    certs = tmp_path / "server-certs"
    async with sim_for(scenario, security=["sign_encrypt"], cert_dir=certs) as sim:
        server_cert = sim.opcua["opc-turning"].certificate_path
        probe, _ = sim_agent_config(scenario, sim, mosquitto, tmp_path / "probe", only={"cnc-01"})
        cert, key = await _agent_certificate(tmp_path, application_uri(load_config(probe)))
        security = {
            "policy": "Basic256Sha256",
            "mode": "SignAndEncrypt",
            "certificate": str(cert),
            "private_key": str(key),
            "server_certificate": str(server_cert),
        }
        config, hmac_key = sim_agent_config(
            scenario,
            sim,
            mosquitto,
            tmp_path / "agent",
            only={"cnc-01"},
            device_overrides={"security": security},
        )
        collector = Collector(mosquitto, hmac_key)
        try:
            async with running_agent(config):
                await collector.wait_for(
                    lambda c: agrees(c, plant_values(sim, {"cnc-01"})),
                    30,
                    "values over SignAndEncrypt",
                )
        finally:
            collector.close()

        # pinned to another server's certificate: the handshake cannot succeed
        wrong = sim.opcua["opc-milling"].certificate_path
        assert wrong.read_bytes() != server_cert.read_bytes()
        config, hmac_key = sim_agent_config(
            scenario,
            sim,
            mosquitto,
            tmp_path / "agent-wrong",
            only={"cnc-01"},
            device_overrides={"security": security | {"server_certificate": str(wrong)}},
        )
        collector = Collector(mosquitto, hmac_key)
        try:
            async with running_agent(config) as agent:
                source = turning_source(agent, "cnc-01")
                await collector.wait_for(
                    lambda _c: source.read_errors >= 2, 30, "two failed connection attempts"
                )
                assert source.online is False
                assert source.stats()["sessions"] == 0
                assert not any(s["t"] == "state" for s in collector.samples())
        finally:
            collector.close()


async def test_the_server_admits_only_clients_in_its_trust_list(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Mutual trust: the agent pins the server's certificate, and the server (with a trust
    list) opens a session only for a client certificate in it."""
    scenario = free_ports(load_scenario(default_scenario_path()))
    trusted = tmp_path / "trusted-clients"
    trusted.mkdir()
    async with sim_for(scenario, security=["sign_encrypt"], cert_dir=tmp_path / "server-certs",
                       trusted_clients=trusted) as sim:  # fmt: skip
        server_cert = sim.opcua["opc-turning"].certificate_path
        probe, _ = sim_agent_config(scenario, sim, mosquitto, tmp_path / "probe", only={"cnc-01"})
        cert, key = await _agent_certificate(tmp_path, application_uri(load_config(probe)))
        security = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "certificate": str(cert),
                    "private_key": str(key), "server_certificate": str(server_cert)}  # fmt: skip

        # not (yet) in the trust list: no session
        config, hmac_key = sim_agent_config(scenario, sim, mosquitto, tmp_path / "untrusted",
                                            only={"cnc-01"},
                                            device_overrides={"security": security})  # fmt: skip
        async with running_agent(config) as agent:
            source = turning_source(agent, "cnc-01")
            deadline = asyncio.get_running_loop().time() + 30
            while source.read_errors < 2:
                assert asyncio.get_running_loop().time() < deadline, "no failed attempts"
                await asyncio.sleep(0.2)
            assert source.online is False
            assert source.stats()["sessions"] == 0

        # trusted: the same agent gets its values
        shutil.copy(cert, trusted / "agent.der")
        await sim.opcua["opc-turning"].restart(0)  # the server reloads its trust list
        config, hmac_key = sim_agent_config(scenario, sim, mosquitto, tmp_path / "trusted",
                                            only={"cnc-01"},
                                            device_overrides={"security": security})  # fmt: skip
        collector = Collector(mosquitto, hmac_key)
        try:
            async with running_agent(config):
                await collector.wait_for(
                    lambda c: agrees(c, plant_values(sim, {"cnc-01"})), 30,
                    "values from a server that trusts the agent",
                )  # fmt: skip
        finally:
            collector.close()
