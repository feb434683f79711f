"""The files in deploy/ work as shipped: the systemd unit passes `systemd-analyze verify`,
the certificate script makes a CA and a broker certificate that verify, and Mosquitto
started from deploy/mosquitto/mosquitto.conf (paths and port moved to the test's own)
speaks TLS only, with no anonymous access, and admits a gateway only with its own login and
client id (the dynamic-security plugin's file from `broker-files --dynsec`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest_server.repo.broker import dynamic_security
from ingest_server.repo.gateways import add_gateway
from tests.harness.broker import DYNSEC_PLUGINS, dynsec_plugin, mosquitto_binary
from tests.harness.kpi import prepare_kpi
from tests.harness.netutil import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "systemd" / "edge-agent.service"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit cannot be verified here")
    agent = Path(sys.executable).parent / "edge-agent"
    assert agent.exists(), agent
    text = UNIT.read_text()
    unit = tmp_path / "edge-agent.service"
    # the installed path of the agent, here the test's own (verify checks it exists)
    unit.write_text(text.replace("/opt/factory-evidence/venv/bin/edge-agent", str(agent)))
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], check=False,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Unknown" not in r.stderr, r.stderr  # a misplaced key is only warned about
    settings = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#"
    )
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("Restart", "always"), ("StateDirectory", "factory-evidence"),
                       ("MemoryMax", "256M"), ("UMask", "0077")):  # fmt: skip
        assert settings.get(key) == value, key
    # the commands are the agent's own
    assert settings["ExecStart"].endswith("edge-agent run /etc/factory-evidence/agent.yaml")
    assert settings["ExecStartPre"].endswith("edge-agent check /etc/factory-evidence/agent.yaml")


def make_certs(out: Path, *names: str) -> None:
    r = subprocess.run([str(DEPLOY / "certs" / "make-certs.sh"), str(out), *names],
                       check=False, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_certificate_script(tmp_path: Path) -> None:
    make_certs(tmp_path, "broker.plant1.example", "10.0.0.5")
    for name, mode in (("ca.key", 0o600), ("broker.key", 0o600), ("ca.crt", 0o644),
                       ("broker.crt", 0o644)):  # fmt: skip
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name
    verify = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "ca.crt"),
                             str(tmp_path / "broker.crt")], check=False, capture_output=True,
                            text=True)  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(tmp_path / "broker.crt"), "-noout",
                           "-text"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "DNS:broker.plant1.example, IP Address:10.0.0.5" in text
    # run again: the CA is kept (gateways already trust it)
    before = (tmp_path / "ca.crt").read_bytes()
    make_certs(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before


@pytest.fixture
def tls_broker(db: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Mosquitto from deploy/mosquitto/mosquitto.conf with the test's paths, port and
    plugin path, its dynamic-security file from `ingest-server gateway broker-files`."""
    import psycopg  # noqa: PLC0415

    prepare_kpi(db)
    certs, config, data = tmp_path / "certs", tmp_path / "config", tmp_path / "data"
    for d in (config, data):
        d.mkdir()
    make_certs(certs, "localhost", "127.0.0.1")
    with psycopg.connect(db, autocommit=True) as conn:
        gw1 = add_gateway(conn, "hf", "p1", "gw-01", rotate=True)
        doc = dynamic_security(conn, {"ingest": "server-pw-123456"})
    (config / "dynamic-security.json").write_text(json.dumps(doc))
    port = free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    assert "listener 8883\n" in conf
    image_plugin = DYNSEC_PLUGINS[-1]  # where the eclipse-mosquitto image has it
    assert f"plugin {image_plugin}\n" in conf
    assert "plugin_opt_config_file /mosquitto/config/dynamic-security.json\n" in conf
    assert "\npassword_file" not in conf  # the plugin alone decides who logs in
    conf = (
        conf.replace("listener 8883\n", f"listener {port} 127.0.0.1\n")
        .replace(f"plugin {image_plugin}\n", f"plugin {dynsec_plugin()}\n")
        .replace("/mosquitto/certs/", f"{certs}/")
        .replace("/mosquitto/config/", f"{config}/")
        .replace("/mosquitto/data/", f"{data}/")
        .replace("log_dest stdout", f"log_dest file {tmp_path / 'log'}")
    )
    if os.geteuid() == 0:
        conf += "user root\n"
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(tmp_path / "mosquitto.conf")],
                            stdin=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, (tmp_path / "log").read_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.05)
        yield {"port": port, "ca": certs / "ca.crt", "gw1": gw1, "log": tmp_path / "log"}
    finally:
        proc.terminate()
        proc.wait(10)


def _connect(
    port: int,
    ca: Path | None,
    user: str | None,
    password: str | None,
    *,
    wait_s: float = 10,
    client_id: str = "",
) -> Any:
    """CONNACK reason code, or the exception that ended the attempt."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    if ca is not None:
        c.tls_set(ca_certs=str(ca))
    if user is not None:
        c.username_pw_set(user, password)
    result: list[Any] = []
    c.on_connect = lambda _c, _u, _f, rc, _p: result.append(rc)
    try:
        c.connect("127.0.0.1", port, keepalive=10)
        deadline = time.monotonic() + wait_s
        while not result and time.monotonic() < deadline:
            c.loop(0.1)
    except (OSError, ssl.SSLError, mqtt.WebsocketConnectionError) as exc:
        return exc
    finally:
        c.disconnect()
    return result[0] if result else TimeoutError("no CONNACK")


def test_broker_config_tls_only_and_per_gateway_logins(tls_broker: dict[str, Any]) -> None:
    port, ca, gw1 = tls_broker["port"], tls_broker["ca"], tls_broker["gw1"]
    assert _connect(port, ca, gw1.username, gw1.password, client_id=gw1.username) == 0
    # its client id is bound to its login; the servers' logins are not (workers share one)
    assert _connect(port, ca, gw1.username, gw1.password, client_id="ingest-1").is_failure
    assert _connect(port, ca, "ingest", "server-pw-123456", client_id="ingest-1") == 0
    refused = _connect(port, ca, None, None)
    assert not isinstance(refused, Exception)
    assert refused.is_failure  # no anonymous access
    assert _connect(port, ca, gw1.username, "wrong").is_failure
    # no plain-text listener: an MQTT CONNECT without TLS gets no CONNACK
    plain = _connect(port, None, gw1.username, gw1.password, wait_s=3, client_id=gw1.username)
    assert isinstance(plain, Exception) or plain.is_failure
    # a gateway that trusts another CA refuses this broker's certificate
    other = Path(tls_broker["log"]).parent / "other"
    make_certs(other)
    ctx = ssl.create_default_context(cafile=str(other / "ca.crt"))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    # and with the right CA, the certificate holds for the name the gateway dialled
    ctx = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in {"TLSv1.2", "TLSv1.3"}


COMPOSE = DEPLOY / "compose.yaml"


def _compose() -> dict[str, Any]:
    import yaml  # noqa: PLC0415

    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    return doc


def test_compose_file_holds_together() -> None:
    """What `docker compose config` cannot tell without an engine: every command is one
    our CLIs accept, every file it mounts from the repository exists, each long-running
    service has a healthcheck, and the start order runs init before broker and servers."""
    from ingest_server.cli.main import build_parser  # noqa: PLC0415

    doc = _compose()
    services = doc["services"]
    assert {"timescaledb", "init", "mosquitto", "ingest-1", "ingest-2", "api",
            "demo-gateway"} <= set(services)  # fmt: skip
    parser = build_parser()
    for name in ("ingest-1", "ingest-2", "api"):
        args = parser.parse_args(services[name]["command"])  # exits (fails) on a bad option
        assert args.command in {"run", "api"}, name
        assert "healthcheck" in services[name], name
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    ids = [services[n]["command"][services[n]["command"].index("--client-id") + 1]
           for n in ("ingest-1", "ingest-2")]  # fmt: skip
    assert ids[0] != ids[1]  # two sessions on one shared subscription
    for name in ("timescaledb", "mosquitto"):
        assert "healthcheck" in services[name], name
    assert services["mosquitto"]["depends_on"]["init"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["demo-gateway"]["profiles"] == ["demo"]
    # the init script's commands parse too
    script = services["init"]["command"][0].replace("$$", "$")
    parsed = []
    for found in re.findall(r"ingest-server ([^;&|]+)", script):
        words = [w.strip('"') for w in found.split() if w != "fi"]
        parsed.append(parser.parse_args(words).command)
    assert parsed == ["migrate", "registry", "registry", "gateway", "gateway"]
    # init writes the plugin's file where the broker's config reads it, in a volume both mount
    written = re.search(r"broker-files --dynsec (\S+)", script)
    assert written is not None
    volume, _, inside = next(
        v for v in services["init"]["volumes"] if written[1].startswith(v.split(":")[1] + "/")
    ).partition(":")
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    read = re.search(r"^plugin_opt_config_file (\S+)$", conf, re.MULTILINE)
    assert read is not None
    mounted = f"{volume}:{read[1].rsplit('/', 1)[0]}"
    assert mounted in services["mosquitto"]["volumes"], mounted
    assert read[1].rsplit("/", 1)[1] == written[1].removeprefix(inside + "/")
    # files mounted from the repository exist (secrets/ is made by setup.sh)
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith(".") and "/secrets/" not in src and not src.endswith("/secrets"):
                assert (DEPLOY / src).exists(), src
    for secret in doc["secrets"].values():
        assert secret["file"].startswith("./secrets/")
    # the demo gateway's script uses options the simulator and agent accept
    from simulators.cli import build_parser as sim_parser  # noqa: PLC0415

    text = (DEPLOY / "demo-gateway.sh").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("factory-sim agent-config"))
    sim_parser().parse_args(line.split()[1:])


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker client: `docker compose config` cannot run here")
    probe = subprocess.run([docker, "compose", "version"], check=False, capture_output=True,
                           text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"the docker client has no compose plugin: {probe.stderr.strip()[:120]}")
    # the secrets the file names, as setup.sh would make them (config checks they exist)
    work = tmp_path / "deploy"
    shutil.copytree(DEPLOY, work, ignore=shutil.ignore_patterns("secrets"))
    (work / "secrets" / "certs").mkdir(parents=True)
    for name in ("db_password", "pgpass", "mqtt_server_password", "certs/ca.crt"):
        (work / "secrets" / name).write_text("x\n")
    r = subprocess.run([docker, "compose", "-f", str(work / "compose.yaml"), "config", "-q"],
                       check=False, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
