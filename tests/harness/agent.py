"""What the agent tests share: a config for a running simulator, an MQTT collector.

The collector is an independent paho subscriber on the real broker: it verifies each
payload's signature with the gateway key and keeps every batch, so tests check what
actually crossed the broker, not what the agent believes it sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import load_config
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.topics import ACK_KIND
from edge_agent.contract.wire import verify
from simulators.agent_config import agent_config
from simulators.clock import ManualClock
from simulators.runtime import FactorySim
from simulators.scenario import Scenario
from tests.harness.broker import Broker

TOPIC = "fe/v1/#"


def write_key(path: Path) -> bytes:
    key = secrets.token_hex(32).encode()
    path.write_bytes(key + b"\n")
    path.chmod(0o600)
    return key


def sim_agent_config(
    scenario: Scenario,
    sim: FactorySim,
    broker: Broker,
    workdir: Path,
    *,
    poll_interval_s: float = 0.2,
    mqtt_overrides: dict[str, Any] | None = None,
    device_overrides: dict[str, Any] | None = None,
    only: set[str] | None = None,
    top: dict[str, Any] | None = None,
    contract: int = 1,
) -> tuple[Path, bytes]:
    """Write an agent config (and its key) for a running simulator; returns the config's
    path and what verifies the gateway: the HMAC key (contract 1) or the public key of
    a new Ed25519 key file (contract 2), what `ingest-server gateway enroll` takes."""
    workdir.mkdir(parents=True, exist_ok=True)
    if contract == 2:
        key = FileSigner.create(workdir / "gateway.ed25519").public_key()
    else:
        key = write_key(workdir / "gateway.key")
    data = agent_config(
        scenario,
        opcua_urls={sid: srv.url for sid, srv in sim.opcua.items()},
        modbus_addresses={sid: srv.address for sid, srv in sim.modbus.items()},
        mqtt_url=f"mqtt://{broker.host}:{broker.port}",
        outbox_path="outbox.db",
        hmac_key_file="gateway.key",
        poll_interval_s=poll_interval_s,
        contract=contract,
        key_file="gateway.ed25519",
    )
    data["mqtt"] |= {"batch_interval_s": 0.2, "reconnect_min_s": 0.5, "reconnect_max_s": 2.0}
    data["mqtt"] |= mqtt_overrides or {}
    data["outbox"]["durability"] = "process"
    data |= top or {}
    devices = []
    for device in data["devices"]:
        if only is not None and device["id"] not in only:
            continue
        d = {**device, "reconnect_min_s": 0.3, "reconnect_max_s": 1.0}
        if d["protocol"] == "opcua":
            d |= {"publishing_interval_ms": 100, "sampling_interval_ms": 50, "timeout_s": 2.0}
        else:
            d |= {"timeout_s": 0.5}
        devices.append(d | (device_overrides or {}))
    data["devices"] = devices
    path = workdir / "agent.yaml"
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    return path, key


def monday_0930(scenario: Scenario) -> float:
    return dt.datetime(2026, 11, 23, 9, 30, tzinfo=scenario.tz).timestamp()


@contextlib.asynccontextmanager
async def running_sim(scenario: Scenario, tmp_path: Path) -> AsyncIterator[FactorySim]:
    sim = FactorySim(scenario, ManualClock(monday_0930(scenario)), tick_s=3600)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@contextlib.asynccontextmanager
async def running_agent(config_path: Path) -> AsyncIterator[Any]:
    from edge_agent.agent import Agent  # noqa: PLC0415 - discovery tests need no agent

    agent = Agent(load_config(config_path))
    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(agent.run(stop, ready=ready))
    await asyncio.wait_for(ready.wait(), 10)
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def advance(sim: FactorySim, seconds: float) -> None:
    assert isinstance(sim.clock, ManualClock)
    sim.clock.advance(seconds)
    await sim.step()


class Collector:
    """Subscribes to fe/v1/# and keeps every verified payload, in arrival order."""

    def __init__(
        self,
        broker: Broker,
        key: bytes,
        *,
        persistent: bool = False,
        ca_file: Path | None = None,
        login: tuple[str, str] | None = None,
    ) -> None:
        """persistent: a session the broker keeps (with queued messages) while the
        collector is away, across a broker restart when the broker persists."""
        self.key = key
        self.lock = threading.Lock()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self._subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"collector-{secrets.token_hex(4)}",
            clean_session=not persistent,
        )
        c.reconnect_delay_set(0.2, 1)
        if ca_file is not None:
            c.tls_set(ca_certs=str(ca_file))
        if login is not None:
            c.username_pw_set(*login)
        c.on_connect = lambda cl, *_: cl.subscribe(TOPIC, qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise RuntimeError("collector could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.retain:
            return  # a retained birth or status from an earlier test on a shared broker
        if msg.topic.endswith("/" + ACK_KIND):
            return  # the server's acknowledgement to the gateway, not the gateway's word
        try:
            obj = verify(msg.payload, self.key)
        except ValueError as exc:
            with self.lock:
                self.errors.append(f"{msg.topic}: {exc}")
            return
        with self.lock:
            self.messages.append((msg.topic, obj))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [m for t, m in self.messages if t.endswith("/" + kind)]

    def batches(self) -> list[dict[str, Any]]:
        return self.of("data")

    def samples(self) -> list[dict[str, Any]]:
        return [s for b in self.batches() for s in b["samples"]]

    def latest(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The last sample received per (device, tag), by device time."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for s in self.samples():
            key = (s["d"], s["t"])
            if key not in out or s["ts"] >= out[key]["ts"]:
                out[key] = s
        return out

    async def wait_for(
        self, predicate: Callable[[Collector], bool], timeout_s: float, what: str
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
