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
from edge_agent.config import OpcUaDeviceConfig, load_config
from edge_agent.contract.sample import Sample
from edge_agent.opcua_source import OpcUaSource
from simulators.cli import free_ports
from simulators.clock import ManualClock
from simulators.runtime import FactorySim
from simulators.scenario import Scenario, SecurityMode, default_scenario_path, load_scenario
from tests.harness.agent import Collector, advance, running_agent, sim_agent_config
from tests.harness.broker import Broker

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


class SlowSource(OpcUaSource):
    """Every read takes `read_s` longer, and read number `overrun_at` takes `overrun_s`."""

    def __init__(self, *args: Any, read_s: float, overrun_at: int, overrun_s: float) -> None:
        super().__init__(*args)
        self.read_s, self.overrun_at, self.overrun_s = read_s, overrun_at, overrun_s
        self.reads = 0

    async def _read_all(self, client: Any) -> None:
        slow = self.overrun_s if self.reads == self.overrun_at else self.read_s
        self.reads += 1
        await asyncio.sleep(slow)
        await super()._read_all(client)


async def test_polls_stay_on_a_fixed_schedule_however_long_a_read_takes(
    mosquitto: Broker, tmp_path: Path
) -> None:
    """Read k ends at t0 + k x period + read time, not t0 + k x (period + read time): a
    loop that waited the period after each read would drift 0.2 s a poll here, and be
    off the grid by up to half a period. The one read longer than the period skips the
    tick it missed (counted), and the next polls are back on the same grid."""
    period, read_s, overrun_s = 0.5, 0.2, 0.8
    full = free_ports(load_scenario(default_scenario_path()))
    server = next(s for s in full.opcua_servers if "cnc-05" in s.machines)
    # one server with one machine: a quarter of the whole plant's start-up time
    scenario = full.model_copy(update={
        "opcua_servers": [server.model_copy(update={"machines": ["cnc-05"]})],
        "modbus_servers": [],
    })  # fmt: skip
    async with sim_for(scenario) as sim:
        path, _ = sim_agent_config(
            scenario, sim, mosquitto, tmp_path, only={"cnc-05"},
            device_overrides={"mode": "polling", "poll_interval_s": period},
        )  # fmt: skip
        device = load_config(path).devices[0]
        assert isinstance(device, OpcUaDeviceConfig)
        ended: list[float] = []  # when each read's values arrived (gateway time)
        seven = asyncio.Event()

        def emit(batch: list[Sample]) -> None:
            stamps = [s.gw_ts for s in batch if s.gw_ts is not None]
            if stamps:
                ended.append(min(stamps))
            if len(ended) >= 7:
                seven.set()

        source = SlowSource(device, emit, read_s=read_s, overrun_at=3, overrun_s=overrun_s)
        task = asyncio.create_task(source.run())
        try:
            async with asyncio.timeout(30):
                await seven.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert source.sessions == 1
    # Tick 0 is the session's first read, and each read but the slow one (the 4th) ends
    # read_s after its tick: the first one's end anchors the grid for the others.
    on_time = ended[:3] + ended[4:7]
    ticks = [(t - ended[0]) / period for t in on_time]
    k = [round(x) for x in ticks]
    off_grid = [round(abs(x - n) * period, 3) for x, n in zip(ticks, k, strict=True)]
    assert max(off_grid) < period / 5, f"reads off the schedule by {off_grid} s"
    # the 4th read, at tick 3, ended after tick 4 was due: tick 4 skipped, not made up
    assert k == [0, 1, 2, 5, 6, 7], f"reads at ticks {k}"
    assert source.stats()["skipped_polls"] == 1


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
