"""Gateway identities (`ingest-server gateway add|revoke|broker-files`) against a real
Mosquitto and a real PostgreSQL, with the password and ACL files for a broker without the
dynamic-security plugin: each gateway may publish only its own kinds under its own topic
prefix and read only its own ack topic, the server's login reads their data and writes
their acks, anonymous and wrong passwords are refused, and a revoked gateway is shut out
once the broker reloads. (What these files cannot stop, a gateway's `$share` subscription
or a client id taken over, tests/e2e/test_broker_hardening.py shows the plugin stops.)"""

from __future__ import annotations

import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import load_config
from edge_agent.contract.secrets import read_secret
from ingest_server.cli.main import main
from ingest_server.repo.gateways import GatewayError, add_gateway, mosquitto_hash, revoke_gateway
from tests.harness.broker import Broker, start_broker
from tests.harness.kpi import prepare_kpi

ENT, SITE = "hf", "p1"
SERVER_PASSWORD = "server-secret-0123"


class Session:
    """One MQTT v5 client: its CONNACK, SUBACK and PUBACK reason codes, what it received."""

    def __init__(self, broker: Broker, user: str | None, password: str | None) -> None:
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.suback: list[ReasonCode] = []
        self.received: list[tuple[str, bytes]] = []
        self.events = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.time_ns()}",
                             protocol=mqtt.MQTTv5)  # fmt: skip
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _notify(self) -> None:
        with self.events:
            self.events.notify_all()

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        self.connack = rc
        self._notify()

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: ReasonCode, _p: Any) -> None:
        self.acks[mid] = rc
        self._notify()

    def _on_subscribe(self, _c: Any, _u: Any, _m: Any, rcs: list[ReasonCode], _p: Any) -> None:
        self.suback = rcs
        self._notify()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.received.append((msg.topic, msg.payload))
        self._notify()

    def wait(self, done: Any, what: str, timeout: float = 10) -> None:
        with self.events:
            assert self.events.wait_for(done, timeout), f"no {what} in {timeout} s"

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        info = self.c.publish(topic, payload, qos=1)
        self.wait(lambda: info.mid in self.acks, f"PUBACK of {topic}")
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> ReasonCode:
        self.suback = []
        self.c.subscribe(topic, qos=1)
        self.wait(lambda: bool(self.suback), f"SUBACK of {topic}")
        return self.suback[0]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def setup(db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    prepare_kpi(db)
    pw = tmp_path / "server.password"
    pw.write_text(SERVER_PASSWORD + "\n")
    pw.chmod(0o600)
    bundles = {}
    for gw in ("gw-01", "gw-02"):
        out = tmp_path / gw
        assert main(["gateway", "add", ENT, SITE, gw, "--dsn", db, "--out", str(out),
                     "--mqtt-url", "mqtt://127.0.0.1:1883", "--secrets-dir", str(out),
                     "--rotate"]) == 0  # fmt: skip
        bundles[gw] = out
    files = {"passwd": tmp_path / "broker" / "passwd", "acl": tmp_path / "broker" / "acl"}
    files["passwd"].parent.mkdir()
    assert main(["gateway", "broker-files", "--dsn", db, "--passwd", str(files["passwd"]),
                 "--acl", str(files["acl"]), "--server-user", f"ingest={pw}"]) == 0  # fmt: skip
    broker = start_broker(tmp_path / "broker", password_file=files["passwd"],
                          acl_file=files["acl"])  # fmt: skip
    try:
        yield {"db": db, "broker": broker, "bundles": bundles, "files": files, "pw": pw}
    finally:
        broker.stop()


def _password(bundle: Path) -> str:
    return (bundle / "mqtt.password").read_text().strip()


def test_a_gateway_publishes_only_as_itself(setup: dict[str, Any]) -> None:
    broker, bundles = setup["broker"], setup["bundles"]
    server = Session(broker, "ingest", SERVER_PASSWORD)
    gw1 = Session(broker, "hf.p1.gw-01", _password(bundles["gw-01"]))
    try:
        assert server.connack == 0
        assert gw1.connack == 0
        assert not server.subscribe("$share/ingest/fe/v1/#").is_failure
        assert gw1.publish("fe/v1/hf/p1/gw-01/data", b"mine") == 0
        # as another gateway, another site, outside the tree, or as the server on its own
        # ack topic: refused
        for topic in ("fe/v1/hf/p1/gw-02/data", "fe/v1/hf/p2/gw-01/data", "fe/v1/hf/p1/data",
                      "other/topic", "fe/v1/hf/p1/gw-01/ack", "fe/v1/hf/p1/gw-01/x"):  # fmt: skip
            rc = gw1.publish(topic, b"forged")
            assert rc.is_failure, topic
            assert rc.getName() == "Not authorized", (topic, rc)
        # a gateway reads its own ack topic alone (the acl_file grants any subscription,
        # but Mosquitto delivers nothing the ACL does not let it read)
        gw1.subscribe("fe/v1/#")
        gw2 = Session(broker, "hf.p1.gw-02", _password(bundles["gw-02"]))
        try:
            assert gw2.publish("fe/v1/hf/p1/gw-02/status", b"online") == 0
        finally:
            gw2.close()
        assert gw1.publish("fe/v1/hf/p1/gw-01/data", b"again") == 0
        server.wait(lambda: len(server.received) >= 3, "the gateways' own messages")
        time.sleep(0.5)  # a forged message, or one for gw-01, would have arrived by now
        assert sorted(server.received) == [
            ("fe/v1/hf/p1/gw-01/data", b"again"), ("fe/v1/hf/p1/gw-01/data", b"mine"),
            ("fe/v1/hf/p1/gw-02/status", b"online"),
        ]  # fmt: skip
        assert gw1.received == []
        # the server writes acks, and nothing else
        assert server.publish("fe/v1/hf/p1/gw-01/data", b"forged").getName() == "Not authorized"
        assert not server.publish("fe/v1/hf/p1/gw-02/ack", b"for gw-02").is_failure
        assert not server.publish("fe/v1/hf/p1/gw-01/ack", b"for gw-01").is_failure
        gw1.wait(lambda: bool(gw1.received), "gw-01's ack")
        assert gw1.received == [("fe/v1/hf/p1/gw-01/ack", b"for gw-01")]
    finally:
        gw1.close()
        server.close()


def test_no_anonymous_or_wrong_login(setup: dict[str, Any]) -> None:
    broker, bundles = setup["broker"], setup["bundles"]
    for user, password in ((None, None), ("hf.p1.gw-01", "guess"),
                           ("hf.p1.gw-01", _password(bundles["gw-02"]))):  # fmt: skip
        s = Session(broker, user, password)
        try:
            assert s.connack is not None
            assert s.connack.is_failure, user
        finally:
            s.close()


def test_revoked_gateway_is_shut_out_after_a_reload(setup: dict[str, Any]) -> None:
    db, broker, bundles, files = setup["db"], setup["broker"], setup["bundles"], setup["files"]
    assert main(["gateway", "revoke", ENT, SITE, "gw-02", "--dsn", db]) == 0
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT hmac_key, broker_password_hash, revoked_at IS NOT NULL FROM gateways "
            "WHERE id = 'gw-02'"
        ).fetchone()
    assert row == (None, None, True)
    pw = setup["pw"]
    assert main(["gateway", "broker-files", "--dsn", db, "--passwd", str(files["passwd"]),
                 "--acl", str(files["acl"]), "--server-user", f"ingest={pw}"]) == 0  # fmt: skip
    assert "gw-02" not in files["acl"].read_text()
    os.kill(broker.process.pid, signal.SIGHUP)  # Mosquitto rereads its password and ACL files
    deadline = time.monotonic() + 10
    while True:
        s = Session(broker, "hf.p1.gw-02", _password(bundles["gw-02"]))
        s.close()
        assert s.connack is not None
        if s.connack.is_failure:
            break
        assert time.monotonic() < deadline, "the revoked gateway can still log in"
        time.sleep(0.2)
    ok = Session(broker, "hf.p1.gw-01", _password(bundles["gw-01"]))
    try:
        assert ok.connack == 0  # the others are not affected
    finally:
        ok.close()
    with psycopg.connect(db) as conn, pytest.raises(GatewayError, match="not revoked"):
        revoke_gateway(conn, ENT, SITE, "gw-02")


def test_the_bundle(setup: dict[str, Any], db: str) -> None:
    bundle = setup["bundles"]["gw-01"]
    for name in ("gateway.key", "mqtt.password"):
        assert stat.S_IMODE((bundle / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    cfg = load_config(bundle / "agent.yaml")  # a config the agent accepts as it is
    assert (cfg.gateway.enterprise, cfg.gateway.site, cfg.gateway.id) == (ENT, SITE, "gw-01")
    assert cfg.mqtt.username == "hf.p1.gw-01"
    assert cfg.client_id == "hf.p1.gw-01"  # the broker binds the client id to the login
    assert (cfg.gateway.contract, cfg.gateway.key_file) == (1, None)
    # the agent signs with the file's text, stripped (edge_agent.contract.secrets.read_secret)
    key = read_secret(bundle / "gateway.key", "HMAC key")
    assert len(key) == 64
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT hmac_key, broker_password_hash FROM gateways WHERE id = 'gw-01'"
        ).fetchone()
        assert row is not None
        assert bytes(row[0]) == key  # the server checks batches with the bundle's key
        password = _password(bundle)
        assert password not in row[1]  # only its hash is kept
        # secrets are not issued twice by accident
        with pytest.raises(GatewayError, match="--rotate"):
            add_gateway(conn, ENT, SITE, "gw-01")
        with pytest.raises(GatewayError, match="import the registry"):
            add_gateway(conn, ENT, "nowhere", "gw-09")


def test_mosquitto_hash_is_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    """Same salt, same password: the same line as mosquitto_passwd's own (and a broker
    that accepts it is tested above)."""
    import base64  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    f = tmp_path / "p"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(f), "u", "pa55word"], check=True)
    line = f.read_text().strip().split(":", 1)[1]
    salt = base64.b64decode(line.split("$")[3])
    assert mosquitto_hash("pa55word", salt) == line
    assert mosquitto_hash("other", salt) != line


def test_a_running_server_stops_accepting_a_revoked_gateway(db: str) -> None:
    """The consumer's gateway directory re-reads every entry after max_age_s: the key of
    a revoked gateway is gone from it then, whatever it cached."""
    from edge_agent.contract.topics import Origin  # noqa: PLC0415
    from ingest_server.ingest.gateway_keys import GatewayDirectory  # noqa: PLC0415

    prepare_kpi(db)
    directory = GatewayDirectory(lambda: psycopg.connect(db), refresh_s=0.05, max_age_s=0.3)
    origin = Origin(ENT, SITE, "gw-01", "data")
    try:
        found = directory.lookup(origin)
        assert found is not None
        assert found.key is not None
        with psycopg.connect(db) as conn:
            revoke_gateway(conn, ENT, SITE, "gw-01")
        cached = directory.lookup(origin)
        assert cached is not None
        assert cached.key == found.key  # still cached: within max_age_s
        time.sleep(0.35)
        after = directory.lookup(origin)
        assert after is not None
        assert after.key is None  # its batches are dead-lettered from now on
    finally:
        directory.close()
