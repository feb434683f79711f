"""The broker as `ingest-server gateway broker-files --dynsec` configures it, against a real
Mosquitto 2 with its dynamic-security plugin and a real PostgreSQL (issue 16): a gateway
login can neither join the servers' shared subscription nor subscribe to anything but its
own ack topic, cannot take over the session of a server or of another gateway, and
publishes only its own kinds below its prefix; the server's login subscribes to the share
group and acks each gateway on its own topic; a gateway added or revoked takes effect
when the broker restarts with the rewritten file."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import load_config
from edge_agent.contract.identity import FileSigner, public_key_text
from edge_agent.contract.sample import Sample
from edge_agent.contract.yaml12 import read_yaml_file
from ingest_server.cli.main import main
from ingest_server.ingest.consumer import Consumer, ConsumerConfig
from tests.harness.agent import running_agent
from tests.harness.broker import Broker, start_broker
from tests.harness.ingest import dump
from tests.harness.kpi import prepare_kpi
from tests.harness.netutil import free_port
from tests.ingest.test_consumer import wait_until

ENT, SITE = "hf", "p1"
SERVER_PASSWORD = "server-secret-0123"
SHARE = "$share/ingest/fe/v1/+/+/+/data"
GW1, GW2 = "hf.p1.gw-01", "hf.p1.gw-02"


class Session:
    """One MQTT v5 client with a given client id: its CONNACK, SUBACK and PUBACK reason
    codes, what it received, and whether the broker ever disconnected it."""

    def __init__(self, broker: Broker, user: str, password: str, client_id: str) -> None:
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.suback: list[ReasonCode] = []
        self.received: list[tuple[str, bytes]] = []
        self.disconnects: list[ReasonCode] = []
        self.events = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv5)  # fmt: skip
        self.c.username_pw_set(user, password)
        self.c.on_connect = lambda _c, _u, _f, rc, _p: self._set("connack", rc)
        self.c.on_subscribe = lambda _c, _u, _m, rcs, _p: self._set("suback", rcs)
        self.c.on_publish = self._on_publish
        self.c.on_message = self._on_message
        self.c.on_disconnect = self._on_disconnect
        self.c.reconnect_delay_set(60, 60)  # a refused client does not come back in a test
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _set(self, name: str, value: Any) -> None:
        with self.events:
            setattr(self, name, value)
            self.events.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        with self.events:
            self.acks[mid] = rc
            self.events.notify_all()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.events:
            self.received.append((msg.topic, bytes(msg.payload)))
            self.events.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        with self.events:
            self.disconnects.append(rc)
            self.events.notify_all()

    def wait(self, done: Any, what: str, timeout: float = 10) -> None:
        with self.events:
            assert self.events.wait_for(done, timeout), f"no {what} in {timeout} s"

    def publish(self, topic: str, payload: bytes = b"x") -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1)
        self.wait(lambda: info.mid in self.acks, f"PUBACK of {topic}")
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        self._set("suback", [])
        self.c.subscribe(topic, qos=1)
        self.wait(lambda: bool(self.suback), f"SUBACK of {topic}")
        return self.suback[0]

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def _public_key_text() -> str:
    raw = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    return base64.b64encode(raw).decode()


@pytest.fixture
def setup(db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two gateways (gw-02 enrolled for contract 2) and a server login, the plugin's file
    from `broker-files --dynsec`, and a broker started with it."""
    prepare_kpi(db)
    pw = tmp_path / "server.password"
    pw.write_text(SERVER_PASSWORD + "\n")
    pw.chmod(0o600)
    bundles = {}
    for gw, extra in (("gw-01", []), ("gw-02", ["--public-key", _public_key_text()])):
        out = tmp_path / gw
        assert main(["gateway", "add", ENT, SITE, gw, "--dsn", db, "--out", str(out),
                     "--mqtt-url", "mqtt://127.0.0.1:1883", "--secrets-dir", str(out),
                     "--rotate", *extra]) == 0  # fmt: skip
        bundles[gw] = out
    dynsec = tmp_path / "broker" / "dynamic-security.json"
    dynsec.parent.mkdir()
    files = ["gateway", "broker-files", "--dsn", db, "--dynsec", str(dynsec),
             "--server-user", f"ingest={pw}"]  # fmt: skip
    assert main(files) == 0
    broker = start_broker(tmp_path / "broker", dynsec_file=dynsec)
    state: dict[str, Any] = {
        "db": db,
        "broker": broker,
        "bundles": bundles,
        "dynsec": dynsec,
        "files": files,
    }
    try:
        yield state
    finally:
        state["broker"].stop()


def _password(bundle: Path) -> str:
    return (bundle / "mqtt.password").read_text().strip()


def _gateway(setup: dict[str, Any], gw: str, client_id: str | None = None) -> Session:
    user = f"{ENT}.{SITE}.{gw}"
    return Session(
        setup["broker"],
        user,
        _password(setup["bundles"][gw]),
        user if client_id is None else client_id,
    )


def test_a_gateway_cannot_join_the_servers_share_group(setup: dict[str, Any]) -> None:
    """The issue: a gateway in the share group was handed every other batch and could not
    read them. Refused now: the server gets all 16, the gateway none."""
    server = Session(setup["broker"], "ingest", SERVER_PASSWORD, "ingest-1-0")
    thief = _gateway(setup, "gw-01")
    gw2 = _gateway(setup, "gw-02")
    try:
        assert server.subscribe(SHARE).getName() == "Granted QoS 1"
        rc = thief.subscribe(SHARE)
        assert rc.is_failure
        assert rc.getName() == "Not authorized"
        for i in range(16):
            assert gw2.publish("fe/v1/hf/p1/gw-02/data", b"batch %d" % i) == 0
        # a member of the group would have taken some: the server would wait in vain
        server.wait(lambda: len(server.received) == 16, "all 16 batches at the server")
        assert sorted(p for _t, p in server.received) == sorted(b"batch %d" % i for i in range(16))
        assert thief.received == []
        assert thief.disconnects == []  # refused a subscription, not thrown out
    finally:
        for s in (thief, gw2, server):
            s.close()


def test_a_gateway_subscribes_to_its_own_ack_topic_only(setup: dict[str, Any]) -> None:
    server = Session(setup["broker"], "ingest", SERVER_PASSWORD, "ingest-1-0")
    gw1 = _gateway(setup, "gw-01")
    try:
        for topic in ("#", "fe/v1/#", "fe/v1/+/+/+/ack", "fe/v1/hf/p1/gw-02/ack",
                      "fe/v1/hf/p1/gw-01/+", "fe/v1/hf/p1/gw-01/#", "fe/v1/hf/p1/gw-01/data",
                      "$share/g/fe/v1/hf/p1/gw-01/ack", "$SYS/#", "$CONTROL/#"):  # fmt: skip
            rc = gw1.subscribe(topic)
            assert rc.getName() == "Not authorized", (topic, rc)
        assert gw1.subscribe("fe/v1/hf/p1/gw-01/ack").getName() == "Granted QoS 1"
        # the server acks each gateway on its own topic; another's ack never reaches gw-01
        # (sent first: the broker delivers to one client in the order it routes), and no
        # refused subscription was registered all the same
        rc = server.publish("fe/v1/hf/p1/gw-02/ack", b"for gw-02")
        assert rc.getName() == "No matching subscribers"
        assert server.publish("fe/v1/hf/p1/gw-01/ack", b"for gw-01") == 0
        gw1.wait(lambda: bool(gw1.received), "gw-01's ack")
        assert gw1.received == [("fe/v1/hf/p1/gw-01/ack", b"for gw-01")]
        # the server's login: the share group and births, nothing else
        for topic, granted in ((SHARE, True), ("$share/ingest/fe/v1/+/+/+/status", True),
                               ("fe/v1/+/+/+/birth", True), ("fe/v1/#", False),
                               ("$share/other/fe/v1/+/+/+/data", False),
                               ("fe/v1/+/+/+/ack", False),
                               ("fe/v1/+/+/+/data", False)):  # fmt: skip
            assert server.subscribe(topic).is_failure != granted, topic
    finally:
        gw1.close()
        server.close()


def test_client_ids_are_bound_to_gateway_logins(setup: dict[str, Any]) -> None:
    """A gateway connecting with the server's client id, another gateway's or the agent's
    old default is refused at CONNECT, before the broker looks for a session to take
    over: the victims stay connected and keep working. Server logins are not bound: two
    workers share one login. The agent configs `gateway add` wrote (contract 1 for gw-01,
    contract 2 for gw-02, enrolled with its public key) use the bound client id."""
    for gw, contract in (("gw-01", 1), ("gw-02", 2)):
        bundle = setup["bundles"][gw]
        cfg = load_config(bundle / "agent.yaml")
        assert cfg.gateway.contract == contract, gw
        if contract == 2:
            assert cfg.gateway.key_file == bundle / "gateway.ed25519"
            assert cfg.mqtt.hmac_key_file is None
        else:
            assert cfg.mqtt.hmac_key_file == bundle / "gateway.key"
        assert cfg.client_id == cfg.mqtt.username == f"{ENT}.{SITE}.{gw}"
        assert cfg.mqtt.password_file is not None
        s = Session(setup["broker"], cfg.mqtt.username, cfg.mqtt.password_file.read_text().strip(),
                    cfg.client_id)  # fmt: skip
        s.close()
        assert s.connack == 0, gw
    # the plugin's file holds password hashes: the broker's alone to read
    assert stat.S_IMODE(setup["dynsec"].stat().st_mode) == 0o600
    doc = json.loads(setup["dynsec"].read_text())
    assert {c["username"]: c.get("clientid") for c in doc["clients"]} == {
        "ingest": None, GW1: GW1, GW2: GW2,
    }  # fmt: skip

    broker = setup["broker"]
    server = Session(broker, "ingest", SERVER_PASSWORD, "ingest-1-0")
    worker = Session(broker, "ingest", SERVER_PASSWORD, "ingest-1-1")
    gw1 = _gateway(setup, "gw-01")
    try:
        for s in (server, worker, gw1):
            assert s.connack == 0
        assert server.subscribe(SHARE).getName() == "Granted QoS 1"
        assert gw1.subscribe("fe/v1/hf/p1/gw-01/ack").getName() == "Granted QoS 1"
        for client_id in ("ingest-1-0", GW1, "fe-gw-02", "fe-gw-01", ""):
            s = _gateway(setup, "gw-02", client_id)
            s.close()
            assert s.connack is not None
            assert s.connack.getName() == "Not authorized", (client_id, s.connack)
        own = _gateway(setup, "gw-02")
        own.close()
        assert own.connack == 0
        assert gw1.publish("fe/v1/hf/p1/gw-01/data", b"still here") == 0
        server.wait(lambda: bool(server.received), "gw-01's batch at the server")
        assert server.received == [("fe/v1/hf/p1/gw-01/data", b"still here")]
        assert server.publish("fe/v1/hf/p1/gw-01/ack", b"ack") == 0
        gw1.wait(lambda: bool(gw1.received), "the ack at gw-01")
        assert gw1.received == [("fe/v1/hf/p1/gw-01/ack", b"ack")]
        assert (server.disconnects, worker.disconnects, gw1.disconnects) == ([], [], [])
    finally:
        for s in (gw1, worker, server):
            s.close()


def test_a_gateway_publishes_its_own_kinds_only(setup: dict[str, Any]) -> None:
    """Mosquitto 2.0 answers a refused QoS 1 PUBLISH of an MQTT 5 client with PUBACK
    "Not authorized" and delivers it to no one."""
    server = Session(setup["broker"], "ingest", SERVER_PASSWORD, "ingest-1-0")
    gw1 = _gateway(setup, "gw-01")
    try:
        for topic in (SHARE, "$share/ingest/fe/v1/+/+/+/status", "fe/v1/+/+/+/birth"):
            assert not server.subscribe(topic).is_failure
        for kind in ("data", "birth", "status", "metrics"):
            # (metrics: "No matching subscribers", nobody on the server side reads them)
            assert not gw1.publish(f"fe/v1/hf/p1/gw-01/{kind}", kind.encode()).is_failure, kind
        for topic in ("fe/v1/hf/p1/gw-01/ack", "fe/v1/hf/p1/gw-02/ack", "fe/v1/hf/p1/gw-02/data",
                      "fe/v1/hf/p2/gw-01/data", "fe/v1/hf/p1/gw-01/other", "fe/v1/hf/p1/data",
                      "other/topic", "$CONTROL/dynamic-security/v1"):  # fmt: skip
            assert gw1.publish(topic, b"forged").getName() == "Not authorized", topic
        # nor may the server write anything but acks
        assert server.publish("fe/v1/hf/p1/gw-01/data", b"forged").getName() == "Not authorized"
        assert gw1.publish("fe/v1/hf/p1/gw-01/data", b"last") == 0
        server.wait(lambda: ("fe/v1/hf/p1/gw-01/data", b"last") in server.received, "last")
        assert sorted(server.received) == [
            ("fe/v1/hf/p1/gw-01/birth", b"birth"), ("fe/v1/hf/p1/gw-01/data", b"data"),
            ("fe/v1/hf/p1/gw-01/data", b"last"), ("fe/v1/hf/p1/gw-01/status", b"status"),
        ]  # fmt: skip
    finally:
        gw1.close()
        server.close()


def test_a_gateway_added_or_revoked_takes_effect_at_restart(setup: dict[str, Any]) -> None:
    """The plugin reads its file at start: the file rewritten, a restart of the broker (on
    the same port) lets the new gateway in and keeps the revoked one out."""
    db, broker, tmp = setup["db"], setup["broker"], setup["dynsec"].parent.parent
    out = tmp / "gw-03"
    assert main(["gateway", "add", ENT, SITE, "gw-03", "--dsn", db, "--out", str(out),
                 "--secrets-dir", str(out)]) == 0  # fmt: skip
    assert main(["gateway", "revoke", ENT, SITE, "gw-02", "--dsn", db]) == 0
    assert main(setup["files"]) == 0
    setup["bundles"]["gw-03"] = out
    # the running broker goes on with the file it read at start
    for gw, admitted in (("gw-02", True), ("gw-03", False)):
        s = _gateway(setup, gw)
        s.close()
        assert s.connack is not None
        assert s.connack.is_failure != admitted, gw
    broker.stop()
    setup["broker"] = start_broker(broker.log_path.parent, port=broker.port,
                                   dynsec_file=setup["dynsec"])  # fmt: skip
    for gw, admitted in (("gw-01", True), ("gw-02", False), ("gw-03", True)):
        s = _gateway(setup, gw)
        s.close()
        assert s.connack is not None
        assert s.connack.is_failure != admitted, gw


def test_broker_files_says_what_to_give(db: str, tmp_path: Path, capsys: Any) -> None:
    tmp = tmp_path
    (tmp / "server.password").write_text(SERVER_PASSWORD + "\n")
    (tmp / "server.password").chmod(0o600)
    base = ["gateway", "broker-files", "--dsn", db]
    for args, message in (
        ([], "give --dynsec FILE"),
        (["--passwd", str(tmp / "p")], "--passwd and --acl go together"),
        (["--dynsec", str(tmp / "d"), "--share-group", "a/b"], "share group 'a/b'"),
        (
            ["--dynsec", str(tmp / "d"), "--server-user", f"x.y={tmp / 'server.password'}"],
            "a dot marks gateway logins",
        ),
    ):
        capsys.readouterr()
        assert main(base + args) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp / "d").exists()


async def test_the_real_server_and_agent_through_the_hardened_broker(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    """The issue's two attacks again, against the real consumer (the server's login, as
    deployed) and a real contract-2 agent configured from its `gateway add` bundle: the
    share-group subscription and the stolen client id are refused, and every batch of the
    victim is stored once and acknowledged (its outbox empties)."""
    db, broker = setup["db"], setup["broker"]
    signer_path = tmp_path / "gw-02.ed25519"
    public = FileSigner.create(signer_path).public_key()
    assert main(["gateway", "enroll", ENT, SITE, "gw-02", "--dsn", db, "--public-key",
                 public_key_text(public), "--replace"]) == 0  # fmt: skip
    # the bundle's config as an installer would finish it: the broker's address, the key
    # `keys init` made, a device (one nobody answers: the test feeds the samples)
    config = setup["bundles"]["gw-02"] / "agent.yaml"
    doc = read_yaml_file(config)
    doc["gateway"]["key_file"] = str(signer_path)
    doc["mqtt"] |= {"url": f"mqtt://{broker.host}:{broker.port}", "batch_interval_s": 0.1,
                    "ack_timeout_s": 1.0, "ack_backoff_max_s": 2.0}  # fmt: skip
    doc["outbox"] = {"path": str(tmp_path / "outbox.db"), "durability": "process"}
    doc["devices"] = [{"id": "em-1", "protocol": "modbus", "host": "127.0.0.1",
                       "port": free_port(), "unit": 1, "poll_interval_s": 0.5,
                       "timeout_s": 0.2, "tags": [{"tag": "energy", "role": "energy_kwh",
                                                   "address": 0}]}]  # fmt: skip
    config.write_text(json.dumps(doc), encoding="utf-8")
    mode = dump(db, "SELECT value FROM settings WHERE key = 'storage_mode'")[0][0]
    consumer = Consumer(ConsumerConfig(
        mqtt_url=f"mqtt://{broker.host}:{broker.port}", dsn=db, client_id="ingest-1-0",
        username="ingest", password=SERVER_PASSWORD, mode=mode,
    ))  # fmt: skip
    consumer.start()
    thief = _gateway(setup, "gw-01")
    try:
        assert consumer.subscribed.wait(10), "the server could not subscribe as deployed"
        assert thief.subscribe(SHARE).getName() == "Not authorized"
        impostor = _gateway(setup, "gw-01", client_id="ingest-1-0")
        assert impostor.connack is not None
        assert impostor.connack.getName() == "Not authorized"
        impostor.close()
        async with running_agent(config) as agent:
            for i in range(10):
                agent.emit([Sample("em-1", "power", time.time(), float(i))])
                await asyncio.sleep(0.15)
            await asyncio.to_thread(
                wait_until,
                lambda: agent.metrics_snapshot()["outbox_batches"] == 0 and agent.seq >= 3,
                20,
                "every batch stored and acknowledged",
            )
            sealed = agent.seq
    finally:
        thief.close()
        consumer.stop()
    rows = dump(
        db,
        "SELECT b.boot, b.seq FROM batches b JOIN gateways g USING (gid) "
        "WHERE g.id = 'gw-02' AND b.contract = 2 ORDER BY 1, 2",
    )
    assert [s for _, s in rows] == list(range(1, sealed + 1))
    assert consumer.counters.dead_letters == 0
    assert thief.received == []
