"""Contract 2 on the agent: signed, chained batches that leave the outbox on the server's ack.

No ingestion server here: `FakeServer` plays it on the real broker with a paho client,
decoding each batch with `decode_batch_v2`, verifying it with the gateway's public key
and answering with `encode_ack` on the gateway's ack topic, as docs/mqtt.md says the
server does. The agents are real (in process, or `edge-agent run` in a child process
for kill -9); the few tests that need no plant read one Modbus device nobody answers
(its offline status and bad samples make the first batch) and are fed further samples
through `Agent.emit`, the sources' own entry.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.cli import main as edge_agent
from edge_agent.config import load_config
from edge_agent.contract.ack import encode_ack
from edge_agent.contract.digest import ZERO
from edge_agent.contract.identity import FileSigner
from edge_agent.contract.sample import Sample
from edge_agent.contract.topics import ack_topic, prefix
from edge_agent.contract.wire import encode_batch, verify_v2
from edge_agent.contract.wire_v2 import DecodedBatch, decode_batch_v2
from edge_agent.delivery import Delivery
from edge_agent.outbox import Outbox, OutboxError
from simulators.agent_config import agent_config
from simulators.cli import free_ports
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.agent import (
    Collector,
    running_agent,
    running_sim,
    sim_agent_config,
    write_key,
)
from tests.harness.broker import Broker
from tests.harness.netutil import free_port

REPO = Path(__file__).resolve().parents[2]
Key = tuple[int, int]

# --- the server's part --------------------------------------------------------------


class FakeServer:
    """One gateway's ingestion server: keeps every batch that verifies (repeats too),
    stores each (boot, seq) once, and acks it while `acking`; a key in `dead` is
    answered as dead-lettered with its reason instead."""

    def __init__(self, broker: Broker, gw_prefix: str, public_key: bytes) -> None:
        self.prefix = gw_prefix
        self.public_key = public_key
        self.acking = True
        self.dead: dict[Key, str] = {}
        self.lock = threading.Lock()
        self.received: list[DecodedBatch] = []
        self.stored: dict[Key, bytes] = {}  # -> digest
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[str] = []
        self._subscribed = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"srv-{secrets.token_hex(4)}")
        c.on_connect = lambda cl, *_: cl.subscribe(f"{gw_prefix}/+", qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = self._on_message
        c.connect(broker.host, broker.port)
        c.loop_start()
        self.client = c
        if not self._subscribed.wait(10):
            raise RuntimeError("the fake server could not subscribe")

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[1]
        try:
            if kind == "data":
                self._batch(decode_batch_v2(bytes(msg.payload)))
            elif kind != "ack":
                obj = verify_v2(bytes(msg.payload), self.public_key)
                with self.lock:
                    self.messages.append((kind, obj))
        except ValueError as exc:
            with self.lock:
                self.errors.append(f"{msg.topic}: {exc}")

    def _batch(self, batch: DecodedBatch) -> None:
        if not batch.verify(self.public_key):
            raise ValueError(f"batch {batch.boot}/{batch.seq}: the signature does not verify")
        key = (batch.boot, batch.seq)
        with self.lock:
            self.received.append(batch)
            if not self.acking:
                return
            reason = self.dead.get(key)
            if reason is None:
                self.stored.setdefault(key, batch.digest())
        self.ack([key] if reason is None else [], [(*key, reason)] if reason else [])

    def ack(self, keys: list[Key], dead: list[tuple[int, int, str]] = ()) -> None:  # type: ignore[assignment]
        self.client.publish(ack_topic(self.prefix), encode_ack(keys, dead), qos=1)

    def keys(self) -> list[Key]:
        with self.lock:
            return [(b.boot, b.seq) for b in self.received]

    def distinct(self) -> dict[Key, DecodedBatch]:
        with self.lock:
            return {(b.boot, b.seq): b for b in self.received}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def until(predicate: Any, timeout_s: float, what: str) -> None:
    """Wait for a condition; the timeout only bounds a failing test."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


def check_chain(batches: dict[Key, DecodedBatch]) -> None:
    """Every batch's prev is the digest of the batch sealed before it; no key missing."""
    keys = sorted(batches)
    for boot in {b for b, _ in keys}:
        seqs = [s for b, s in keys if b == boot]
        assert seqs == list(range(1, len(seqs) + 1)), f"boot {boot}: seqs {seqs}"
    prev = ZERO
    for key in keys:
        assert batches[key].prev == prev, f"batch {key} does not chain to the one before it"
        prev = batches[key].digest()


# --- a small config with no plant ---------------------------------------------------


def quiet_config(
    workdir: Path,
    broker: Broker | None,
    *,
    contract: int = 2,
    mqtt_extra: dict[str, Any] | None = None,
) -> tuple[Path, bytes, str]:
    """A config reading one Modbus device that is not there; returns the path, the
    public key (contract 2) or HMAC key (1), and the topic prefix."""
    workdir.mkdir(parents=True, exist_ok=True)
    gw = f"gw-{secrets.token_hex(3)}"
    gateway: dict[str, Any] = {"enterprise": "acme", "site": "plant1", "id": gw}
    mqtt_section: dict[str, Any] = {
        "url": f"mqtt://{broker.host}:{broker.port}" if broker else "mqtt://127.0.0.1:1",
        "batch_interval_s": 0.1,
        "reconnect_min_s": 0.2,
        "reconnect_max_s": 1.0,
    }
    if contract == 2:
        key = FileSigner.create(workdir / "gateway.ed25519").public_key()
        gateway |= {"contract": 2, "key_file": "gateway.ed25519"}
    else:
        key = write_key(workdir / "gateway.key")
        mqtt_section["hmac_key_file"] = "gateway.key"
    data = {
        "version": 1,
        "gateway": gateway,
        "mqtt": mqtt_section | (mqtt_extra or {}),
        "outbox": {"path": "outbox.db", "durability": "process"},
        "metrics_interval_s": 3600,
        "devices": [
            {
                "id": "em-1",
                "protocol": "modbus",
                "host": "127.0.0.1",
                "port": free_port(),
                "unit": 1,
                "poll_interval_s": 0.2,
                "timeout_s": 0.2,
                "reconnect_min_s": 0.2,
                "reconnect_max_s": 0.5,
                "tags": [{"tag": "energy", "role": "energy_kwh", "address": 0}],
            }
        ],
    }
    path = workdir / "agent.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, key, prefix("acme", "plant1", gw)


def feed(agent: Any, n: int, start: float = 0.0) -> None:
    """n samples of a tag whose value changes each time (none is suppressed)."""
    agent.emit([Sample("em-1", "power", 1.8e9 + start + i, start + i) for i in range(n)])


def outbox_rows(path: Path) -> tuple[int, int]:
    """(batches, sent-unacked) in an agent's outbox, read as another process would."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        if "sent" not in tables:
            return 0, 0
        batches = db.execute("SELECT count(*) FROM batch").fetchone()[0]
        return int(batches), int(db.execute("SELECT count(*) FROM sent").fetchone()[0])
    finally:
        db.close()


# --- the chain, with a plant --------------------------------------------------------


async def test_v2_batches_chain_across_a_restart_and_verify(broker: Broker, tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    async with running_sim(scenario, tmp_path) as sim:
        config, public_key = sim_agent_config(
            scenario,
            sim,
            broker,
            tmp_path / "agent",
            only={"em-main", "ht-01"},
            contract=2,
            top={"heartbeat_s": 0.3},  # the plant stands still: heartbeats make the batches
        )
        cfg = load_config(config)
        server = FakeServer(broker, cfg.topic_prefix, public_key)
        try:
            for boot in (1, 2):  # the same outbox: the chain goes on across the restart
                async with running_agent(config) as agent:
                    await until(
                        lambda b=boot: sum(k[0] == b for k in server.stored) >= 3,
                        20,
                        f"three batches of boot {boot} stored",
                    )
                    assert agent.boot == boot
                # stopped cleanly: it waited for the server's acks, so nothing is left
                with Outbox(cfg.outbox.path, max_bytes=1 << 30, max_age_s=1e9) as ob:
                    stats = ob.stats()
                    assert (stats.batches, stats.sent) == (0, 0)
                    assert ob.last_digest() == server.distinct()[max(server.stored)].digest()
        finally:
            server.close()
    assert server.errors == []
    batches = server.distinct()
    assert {b for b, _ in batches} == {1, 2}
    check_chain(batches)
    assert all(b.gw == cfg.gateway.id for b in batches.values())
    assert any(s["d"] == "em-main" and s["t"] == "energy_kwh" for b in batches.values()
               for s in b.samples)  # fmt: skip
    # births and status are signed with the same key, as contract 2 JSON
    kinds = {k for k, _ in server.messages}
    assert {"birth", "status"} <= kinds
    assert all(m["v"] == 2 for _, m in server.messages)


async def test_samples_being_sealed_as_the_agent_stops_are_sealed_once_and_chained(
    tmp_path: Path,
) -> None:
    """The stop cancels the sealer; with the seal's thread not yet started (a busy
    gateway: one executor thread, held), a bare to_thread let the cancel drop the batch
    it had taken from pending, and its samples were lost; a seal that did run left the
    seq and the chain behind it, and the last seal reused both. No broker: the batches
    stay in the outbox to be read."""
    config, _, _ = quiet_config(tmp_path, None)
    loop = asyncio.get_running_loop()
    one = ThreadPoolExecutor(max_workers=1)
    held = threading.Event()
    async with running_agent(config) as agent:
        await until(lambda: agent.seq >= 1, 10, "the first batch sealed")
        loop.set_default_executor(one)
        one.submit(held.wait, 10)
        feed(agent, 5, start=100)
        await until(lambda: not agent._pending, 5, "the sealer took the samples")
        loop.call_later(0.2, held.set)  # let the thread go once the stop has begun
    one.shutdown()
    with Outbox(load_config(config).outbox.path, max_bytes=1 << 30, max_age_s=1e9) as ob:
        stored = ob.pending(1000)
    batches = {(b.boot, b.seq): decode_batch_v2(b.payload) for b in stored}
    check_chain(batches)
    fed = sorted(s["v"] for b in batches.values() for s in b.samples
                 if (s["d"], s["t"]) == ("em-1", "power"))  # fmt: skip
    assert fed == [100.0, 101.0, 102.0, 103.0, 104.0]


# --- acks ---------------------------------------------------------------------------


class _Uplink:
    """What a Delivery asks of its MqttSink when it only settles acks (no broker: the
    test is about the agent's own cancellation, not about MQTT)."""

    prefix = "fe/v2/acme/plant1/gw-x"

    def __init__(self) -> None:
        self.on_ack: Any = None
        self.connected = asyncio.Event()


async def test_an_ack_is_not_lost_when_the_agent_stops_while_the_outbox_waits(
    tmp_path: Path,
) -> None:
    """The stop cancels the delivery task; if the outbox's thread had not started yet, a
    bare to_thread let the cancel drop the removal, and the batch then waited for an ack
    the server had already sent (seen once in CI: one batch left after a clean stop)."""
    loop = asyncio.get_running_loop()
    one = ThreadPoolExecutor(max_workers=1)  # a busy gateway: one thread, held below
    loop.set_default_executor(one)
    with Outbox(tmp_path / "ob.db", max_bytes=1 << 20, max_age_s=1e9) as ob:
        ob.append(1, 1, time.time(), 3, b"batch")
        ob.mark_sent([(1, 1)], now=time.time(), timeout_s=30, backoff_max_s=300)
        sink = _Uplink()
        delivery = Delivery(ob, sink, max_inflight=4, backlog_per_s=1, next_key=(1, 2),  # type: ignore[arg-type]
                            server_acks=True)  # fmt: skip
        held = threading.Event()
        one.submit(held.wait, 10)
        sink.on_ack(encode_ack([(1, 1)]))
        settling = asyncio.create_task(delivery._settle(wait_s=0.1))
        await asyncio.sleep(0.05)  # it took the ack and waits for the outbox's thread
        settling.cancel()
        held.set()
        with pytest.raises(asyncio.CancelledError):
            await settling
        stats = ob.stats()
        assert (stats.batches, stats.sent) == (0, 0)
        assert delivery._acks == []
    one.shutdown()


async def test_nothing_leaves_on_puback_alone_resent_until_acked_dead_counted(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config, public_key, gw_prefix = quiet_config(
        tmp_path, broker, mqtt_extra={"ack_timeout_s": 0.5, "ack_backoff_max_s": 1.0}
    )
    server = FakeServer(broker, gw_prefix, public_key)
    server.acking = False
    try:
        async with running_agent(config) as agent:
            for n in (1, 2):
                feed(agent, 5, start=10 * n)
                await until(lambda n=n: agent.seq >= n, 10, f"batch {n} sealed")
            sealed = agent.seq
            # the broker acknowledged them all; the server said nothing: all stay
            await until(
                lambda: agent.metrics_snapshot()["sent_unacked_batches"] == sealed,
                10,
                "every batch PUBACKed",
            )
            await until(
                lambda: all(server.keys().count((1, s)) >= 3 for s in range(1, sealed + 1)),
                15,
                "each batch re-sent twice for want of an ack",
            )
            m = agent.metrics_snapshot()
            assert m["outbox_batches"] == sealed
            assert m["batches_resent"] >= 2 * sealed
            assert m["sent_unacked_oldest_age_s"] > 0
            # a repeat is the same batch, byte for byte in what it signs
            assert len({b.digest() for b in server.received if (b.boot, b.seq) == (1, 1)}) == 1
            # something on the ack topic that is not an ack: logged, ignored
            server.client.publish(ack_topic(gw_prefix), b'{"v": 2, "stored": "all"}', qos=1)
            server.ack([(1, s) for s in range(1, sealed + 1)])
            await until(
                lambda: agent.metrics_snapshot()["outbox_batches"] == 0, 10, "acked, deleted"
            )
            m = agent.metrics_snapshot()
            assert (m["sent_unacked_batches"], m["batches_acked"]) == (0, sealed)
            assert m["batches_dead_lettered"] == 0
            # a batch the server refuses for its content leaves too, counted, logged
            server.dead[(1, sealed + 1)] = "bad signature (test)"
            server.acking = True
            feed(agent, 3, start=100)
            await until(
                lambda: agent.metrics_snapshot()["batches_dead_lettered"] == 1, 10, "the dead ack"
            )
            assert agent.metrics_snapshot()["outbox_batches"] == 0
            assert agent.metrics_snapshot()["batches_acked"] == sealed
    finally:
        server.close()
    assert server.errors == []
    assert any(r.levelname == "WARNING" and "not an ack" in r.getMessage() for r in caplog.records)
    dead = [
        r for r in caplog.records if r.levelname == "ERROR" and "dead-lettered" in r.getMessage()
    ]
    assert len(dead) == 1
    assert f"1/{sealed + 1}" in dead[0].getMessage()
    assert "bad signature (test)" in dead[0].getMessage()


async def _agent_process(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge_agent.cli", "run", str(config),
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
        )  # fmt: skip


async def test_kill_9_after_puback_before_ack_resends_the_same_batch(
    broker: Broker, tmp_path: Path
) -> None:
    config, public_key, gw_prefix = quiet_config(tmp_path, broker)
    outbox = tmp_path / "outbox.db"
    log = tmp_path / "agent.log"
    server = FakeServer(broker, gw_prefix, public_key)
    server.acking = False
    try:
        proc = await _agent_process(config, log)
        try:
            await until(lambda: outbox.exists() and outbox_rows(outbox)[1] >= 1, 20, "a PUBACK")
            first = server.distinct()[(1, 1)]
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert outbox_rows(outbox)[0] >= 1, "kept in the outbox: the server never acked it"
        server.acking = True
        proc = await _agent_process(config, log)
        try:
            await until(
                lambda: {(1, 1), (2, 1)} <= set(server.stored) and outbox_rows(outbox)[0] == 0,
                20,
                "boot 1's batch re-sent and acked, and boot 2's first",
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()
    finally:
        server.close()
    assert server.errors == []
    repeats = [b for b in server.received if (b.boot, b.seq) == (1, 1)]
    assert len(repeats) >= 2, "re-sent after the restart"
    assert {b.digest() for b in repeats} == {first.digest()}, "the same batch, not a new one"
    # stored once each, however often it crossed the wire
    assert len(server.stored) == len(set(server.keys()))
    check_chain(server.distinct())  # boot 2 chains to boot 1's batch through the kill


# --- the outbox's format ------------------------------------------------------------

_FORMAT_1 = """
CREATE TABLE batch (boot INTEGER NOT NULL, seq INTEGER NOT NULL, created REAL NOT NULL,
    samples INTEGER NOT NULL, bytes INTEGER NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY (boot, seq)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('boot', 1), ('dropped_batches', 0), ('dropped_samples', 0);
PRAGMA application_id = 1178947394;
PRAGMA user_version = 1;
"""


def write_format_1(path: Path, batches: list[tuple[int, int, bytes]]) -> None:
    """An outbox as the agent before contract 2 left it (its schema, verbatim)."""
    db = sqlite3.connect(path)
    db.executescript(_FORMAT_1)
    for boot, seq, payload in batches:
        db.execute("INSERT INTO batch VALUES (?, ?, ?, ?, ?, ?)",
                   (boot, seq, time.time(), 1, len(payload), payload))  # fmt: skip
    db.commit()
    db.close()


async def test_an_outbox_of_format_1_is_upgraded_in_place_and_delivered(
    broker: Broker, tmp_path: Path
) -> None:
    config, key, _ = quiet_config(tmp_path, broker, contract=1)
    gw = load_config(config).gateway.id
    old = [
        (1, seq, encode_batch(gw=gw, boot=1, seq=seq, sent=1.8e9, key=key,
                              samples=[Sample("em-1", "power", 1.8e9 + seq, float(seq))]))
        for seq in (1, 2)
    ]  # fmt: skip
    write_format_1(tmp_path / "outbox.db", old)
    with Outbox(tmp_path / "outbox.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
        assert [(b.boot, b.seq, b.payload) for b in ob.pending(10)] == old
        assert ob.last_digest() is None
        assert ob.stats().sent == 0
    db = sqlite3.connect(tmp_path / "outbox.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    db.close()
    collector = Collector(broker, key)
    try:
        async with running_agent(config) as agent:
            assert agent.boot == 2  # the file's boot counter carried on
            await collector.wait_for(
                lambda c: {(1, 1), (1, 2)} <= {(b["boot"], b["seq"]) for b in c.batches()},
                15,
                "the old batches",
            )
            await until(
                lambda: agent.metrics_snapshot()["outbox_batches"] == 0, 10, "PUBACK, deleted"
            )
    finally:
        collector.close()
    assert collector.errors == []


def test_outbox_chain_head_moves_with_the_append_or_not_at_all(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
        ob.append_many(1, 1.0, [(1, 1, b"a", b"A" * 32), (2, 1, b"b", b"B" * 32)])
        assert ob.last_digest() == b"B" * 32
        with pytest.raises(sqlite3.IntegrityError):  # seq 2 again: the whole append fails
            ob.append_many(1, 2.0, [(3, 1, b"c", b"C" * 32), (2, 1, b"d", b"D" * 32)])
        assert ob.last_digest() == b"B" * 32
        assert [b.seq for b in ob.pending(10)] == [1, 2]
        ob.append(1, 3, 3.0, 1, b"e")  # contract 1: no digest, the head stays
        assert ob.last_digest() == b"B" * 32
    with Outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
        assert ob.last_digest() == b"B" * 32  # across a restart
        assert ob.stats().batches == 3


def test_outbox_sent_batches_fall_due_with_backoff(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
        for seq in (1, 2, 3):
            ob.append(1, seq, float(seq), 1, b"x", digest=b"D" * 32)

        def due(now: float) -> list[int]:
            return [b.seq for b in ob.pending(10, now=now, horizon=now + 100)]

        ob.mark_sent([(1, 1), (1, 2)], now=1000.0, timeout_s=10, backoff_max_s=25)
        assert due(1000.0) == [3]  # never sent: due; sent: waits
        assert [b.seq for b in ob.newest(10, since=(1, 1))] == [3]  # live is never re-sent
        assert due(1010.0) == [1, 2, 3]
        assert [b.resend for b in ob.pending(10, now=1010.0)] == [True, True, False]
        ob.mark_sent([(1, 1)], now=1010.0, timeout_s=10, backoff_max_s=25)  # re-sent once
        assert due(1029.9) == [2, 3]  # 20 s the second time
        assert due(1030.0) == [1, 2, 3]
        ob.mark_sent([(1, 1)], now=1030.0, timeout_s=10, backoff_max_s=25)
        assert due(1054.9) == [2, 3]  # 40 s capped at 25
        assert due(900.0) == [1, 2, 3]  # the clock went back: due beyond the horizon
        ob.mark_sent([(9, 9)], now=1000.0, timeout_s=10, backoff_max_s=25)  # not there
        stats = ob.stats()
        assert (stats.sent, stats.oldest_sent) == (2, 1000.0)
        assert ob.resend_all() == 2
        assert due(0.0) == [1, 2, 3]
        assert ob.remove([(1, 1), (1, 1), (7, 7)]) == {(1, 1): 1}
        assert ob.stats().sent == 1


def test_a_newer_outbox_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path, max_bytes=1 << 30, max_age_s=1e9):
        pass
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 4")
    db.close()
    with pytest.raises(OutboxError, match="outbox format 4, this agent reads 3"):
        Outbox(path, max_bytes=1 << 30, max_age_s=1e9)


# --- drops, declared -----------------------------------------------------------------


async def test_batches_the_outbox_drops_are_declared_in_the_next_signed_status(
    broker: Broker, tmp_path: Path
) -> None:
    config, public_key, gw_prefix = quiet_config(tmp_path, broker)
    data = json.loads(config.read_text())
    data["outbox"]["max_bytes"] = 1 << 20  # the least allowed: four batches of ~300 kB
    config.write_text(json.dumps(data))
    server = FakeServer(broker, gw_prefix, public_key)
    server.acking = False  # the server is away: nothing leaves the outbox
    try:
        async with running_agent(config) as agent:

            def declared() -> list[Any]:
                with server.lock:
                    return [m["dropped"] for k, m in server.messages
                            if k == "status" and "dropped" in m]  # fmt: skip

            n = 0
            while agent.outbox_dropped_batches < 3:
                n += 1
                # texts that do not compress: each batch takes its room in the outbox
                t = 1.8e9 + n
                agent.emit([Sample("em-1", "note", t + i / 1000, secrets.token_urlsafe(3000))
                            for i in range(100)])  # fmt: skip
                await until(lambda n=n: agent.seq >= n, 10, f"batch {n} sealed")
            await until(lambda: declared() != [], 10, "a status declaring the drops")
            with Outbox(tmp_path / "outbox.db", max_bytes=1 << 30, max_age_s=1e9) as ob:
                ranges = ob.dropped_ranges()
    finally:
        server.close()
    assert server.errors == []  # every status verified under the gateway's key
    first = declared()[0]
    assert all(r[0] == agent.boot and r[3] == "full" for r in first)
    assert first[0][1] == 1  # the oldest went first
    # the newest declaration is what the outbox kept: one range, as the drops ran on
    assert len(ranges) == 1
    last = declared()[-1][-1]
    assert last[:4] == [ranges[0].boot, 1, ranges[0].last_seq, "full"] or (
        last[2] < ranges[0].last_seq  # a drop after the last status (DECLARE_EVERY_S)
    )
    assert ranges[0].digest is not None


# --- config and check ---------------------------------------------------------------


def test_check_warns_that_contract_1_can_be_forged_and_passes_contract_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, _, _ = quiet_config(tmp_path / "v1", None, contract=1)
    assert edge_agent(["check", str(v1)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"{v1}: warning: gateway.contract 1")
    for words in ("forge", "edge-agent keys init", "ingest-server gateway enroll",
                  "gateway.contract: 2"):  # fmt: skip
        assert words in err, words
    v2, _, _ = quiet_config(tmp_path / "v2", None)
    assert edge_agent(["check", str(v2)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert "fingerprint" in out
    assert "signs every payload (contract 2)" in out
    (tmp_path / "v2" / "gateway.ed25519").chmod(0o644)  # contract 2 cannot do without it
    assert edge_agent(["check", str(v2)]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_factory_sim_writes_a_contract_2_config(tmp_path: Path) -> None:
    scenario = load_scenario(default_scenario_path())
    data = agent_config(scenario, contract=2, key_file="gw.ed25519")
    assert "hmac_key_file" not in data["mqtt"]
    path = tmp_path / "agent.yaml"
    path.write_text(json.dumps(data), encoding="utf-8")
    config = load_config(path)
    assert (config.gateway.contract, config.gateway.key_file) == (2, tmp_path / "gw.ed25519")
    assert config.mqtt.hmac_key_file is None
    assert load_config(path).mqtt.ack_timeout_s == 30.0
