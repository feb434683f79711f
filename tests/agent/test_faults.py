"""Faults the field knows: broker down, agent killed, OPC UA server restarted, PLC gone.

Each test runs the real agent against the real simulators and a real Mosquitto, breaks
one thing, and checks from the broker's side that nothing was lost or doubled and that
the outage shows as device status, not as a machine state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.outbox import Outbox
from simulators.cli import free_ports
from simulators.faults import parse_fault
from simulators.runtime import FactorySim
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.agent import Collector, advance, running_agent, running_sim, sim_agent_config
from tests.harness.broker import start_broker

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
MODBUS_ONLY = {"ht-01", "ht-02", "wash-01", "press-01", "em-main", "em-ht", "wm-main"}


@contextlib.asynccontextmanager
async def ticking(
    sim: FactorySim, every_s: float = 0.2, sim_s: float = 30.0
) -> AsyncIterator[None]:
    """Move the plant on while the test waits, so values keep changing."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(every_s)
            await advance(sim, sim_s)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def check_exactly_once(batches: list[dict[str, Any]]) -> dict[tuple[int, int], dict[str, Any]]:
    """Dedupe by (boot, seq); a redelivered batch must be identical; no sample twice."""
    by_key: dict[tuple[int, int], dict[str, Any]] = {}
    for b in batches:
        key = (b["boot"], b["seq"])
        if key in by_key:
            assert by_key[key]["sig"] == b["sig"], f"batch {key} delivered with two contents"
        by_key[key] = b
    seen = Counter(
        (s["d"], s["t"], s["ts"], json.dumps(s["v"])) for b in by_key.values() for s in b["samples"]
    )
    doubled = [k for k, n in seen.items() if n > 1 and k[1] != "_status"]
    assert doubled == [], f"samples in two batches: {doubled[:5]}"
    return by_key


def check_order_per_tag(by_key: dict[tuple[int, int], dict[str, Any]]) -> None:
    last: dict[tuple[str, str], int] = {}
    for key in sorted(by_key):
        for s in by_key[key]["samples"]:
            k = (s["d"], s["t"])
            assert s["ts"] >= last.get(k, 0), f"{k} out of order in batch {key}"
            last[k] = s["ts"]


async def test_broker_down_30_s_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    # The collector's session and its queued messages survive the broker's restart, so
    # it sees everything the broker accepted, whenever the agent reconnects.
    broker = start_broker(tmp_path / "broker", persistence=True)
    port = broker.port
    async with running_sim(scenario, tmp_path) as sim:
        config, key = sim_agent_config(
            scenario, sim, broker, tmp_path / "agent", only=MODBUS_ONLY, poll_interval_s=0.1
        )
        collector = Collector(broker, key, persistent=True)
        try:
            async with running_agent(config) as agent, ticking(sim):
                await collector.wait_for(lambda c: len(c.batches()) >= 5, 20, "first batches")
                broker.stop()
                sealed_before = agent.seq
                await asyncio.sleep(30)
                assert agent.seq > sealed_before + 20, "the agent kept reading during the outage"
                assert agent.metrics_snapshot()["outbox_batches"] > 20, "held in the outbox"
                outage_seq = agent.seq
                broker = start_broker(tmp_path / "broker", port=port, persistence=True)
                await collector.wait_for(
                    lambda c: outage_seq in {b["seq"] for b in c.batches()}, 60, "the backlog"
                )
                await collector.wait_for(
                    lambda _c: agent.metrics_snapshot()["outbox_batches"] <= 2,
                    30,
                    "the outbox to drain",
                )
            # the agent stopped cleanly: everything it sealed was acknowledged
            final_seq = agent.seq
            await collector.wait_for(
                lambda c: final_seq in {b["seq"] for b in c.batches()}, 10, "the last batch"
            )
        finally:
            collector.close()
            broker.stop()
    by_key = check_exactly_once(collector.batches())
    # after the reconnection live batches went first while the backlog drained at its rate
    arrivals = [b["seq"] for b in collector.batches()]
    first_live = min(i for i, seq in enumerate(arrivals) if seq > outage_seq)
    assert first_live < arrivals.index(outage_seq), "live data waited for the whole backlog"
    got = sorted(seq for _boot, seq in by_key)
    missing = set(range(1, final_seq + 1)) - set(got)
    assert missing == set(), (
        f"batches lost: {sorted(missing)[:10]}... ({len(missing)}); sealed before the outage "
        f"{sealed_before}, during {outage_seq}, final {final_seq}"
    )
    assert got[-1] == final_seq
    check_order_per_tag(by_key)
    assert agent.outbox_dropped_batches == 0
    assert collector.errors == []


async def _agent_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "edge_agent.cli",
            "run",
            str(config),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )


async def test_kill_9_loses_nothing_in_the_outbox(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    broker = start_broker(tmp_path / "broker")
    port = broker.port
    broker.stop()  # the link is down: everything the agent reads stays in its outbox
    async with running_sim(scenario, tmp_path) as sim:
        config, key = sim_agent_config(
            scenario, sim, broker, tmp_path / "agent", only=MODBUS_ONLY, poll_interval_s=0.1
        )
        outbox_path = tmp_path / "agent" / "outbox.db"
        log = tmp_path / "agent.log"
        async with ticking(sim):
            proc = await _agent_process(config, log)
            deadline = time.monotonic() + 30
            stored: list[Any] = []
            while time.monotonic() < deadline and len(stored) < 15:
                await asyncio.sleep(0.5)
                if outbox_path.exists():
                    with Outbox(outbox_path, max_bytes=1 << 30, max_age_s=1e9) as ob:
                        stored = ob.pending(10_000)
            assert len(stored) >= 15, log.read_text()
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            with Outbox(outbox_path, max_bytes=1 << 30, max_age_s=1e9) as ob:
                kept = {(b.boot, b.seq): b.payload for b in ob.pending(100_000)}
            assert kept, "the outbox survived the kill"
            broker = start_broker(tmp_path / "broker", port=port)
            collector = Collector(broker, key)
            try:
                proc = await _agent_process(config, log)
                try:
                    await collector.wait_for(
                        lambda c: set(kept) <= {(b["boot"], b["seq"]) for b in c.batches()},
                        60,
                        "every batch that was in the outbox",
                    )
                finally:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 20)
            finally:
                collector.close()
                broker.stop()
    boots = {b["boot"] for b in collector.batches()}
    assert boots == {1, 2}, "the restarted agent is boot 2 and published boot 1's batches"
    assert collector.errors == []


def statuses(collector: Collector, device: str) -> list[str]:
    out = []
    for b in sorted(collector.batches(), key=lambda b: (b["boot"], b["seq"])):
        out.extend(s["v"] for s in b["samples"] if s["d"] == device and s["t"] == "_status")
    return out


async def test_opcua_server_restart_resumes_without_restarting_the_agent(
    tmp_path: Path,
) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    broker = start_broker(tmp_path / "broker")
    only = {"cnc-01", "cnc-02", "cnc-05"}
    try:
        async with running_sim(scenario, tmp_path) as sim:
            config, key = sim_agent_config(scenario, sim, broker, tmp_path / "agent", only=only)
            collector = Collector(broker, key)
            try:
                async with running_agent(config) as agent:
                    await collector.wait_for(
                        lambda c: statuses(c, "cnc-01") == ["online"], 20, "cnc-01 online"
                    )
                    source = next(s for s in agent.sources if s.device.id == "cnc-01")
                    sessions = source.stats()["sessions"]
                    await sim.inject(parse_fault("restart:opc-turning:3"))
                    await collector.wait_for(
                        lambda c: statuses(c, "cnc-01") == ["online", "offline", "online"],
                        20,
                        "cnc-01 offline, then online again",
                    )
                    n = len(collector.samples())
                    await advance(sim, 3600)
                    await collector.wait_for(
                        lambda c: any(s["d"] == "cnc-01" for s in c.samples()[n:]),
                        15,
                        "fresh cnc-01 data after the restart",
                    )
                    assert source.stats()["sessions"] == sessions + 1
                    # the other endpoint's machine never noticed
                    assert statuses(collector, "cnc-05") == ["online"]
            finally:
                collector.close()
    finally:
        broker.stop()


async def test_modbus_device_gone_and_back(tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    broker = start_broker(tmp_path / "broker")
    try:
        async with running_sim(scenario, tmp_path) as sim:
            config, key = sim_agent_config(
                scenario, sim, broker, tmp_path / "agent", only={"ht-01", "ht-02", "em-main"}
            )
            collector = Collector(broker, key)
            try:
                async with running_agent(config):
                    await collector.wait_for(
                        lambda c: statuses(c, "ht-01") == ["online"], 20, "ht-01 online"
                    )
                    await sim.inject(parse_fault("offline:ht-01:3"))
                    await collector.wait_for(
                        lambda c: statuses(c, "ht-01") == ["online", "offline"],
                        20,
                        "ht-01 offline (exception 0x0B)",
                    )
                    await advance(sim, 5)  # the fault lasts 3 s of plant time
                    await collector.wait_for(
                        lambda c: statuses(c, "ht-01") == ["online", "offline", "online"],
                        20,
                        "ht-01 back",
                    )
                    bad = [
                        s for s in collector.samples() if s["d"] == "ht-01" and s.get("q") == "bad"
                    ]
                    assert bad
                    assert all("0x0B" in s["s"] for s in bad)
                    assert statuses(collector, "ht-02") == ["online"], "its neighbour kept going"
                    # the whole gateway (the TCP link) goes away and comes back
                    await sim.inject(parse_fault("restart:plc-gateway:3"))
                    await collector.wait_for(
                        lambda c: statuses(c, "ht-02") == ["online", "offline", "online"],
                        25,
                        "ht-02 offline with its gateway, then back",
                    )
            finally:
                collector.close()
    finally:
        broker.stop()
