"""The agent over MQTT with TLS and a password, against a real Mosquitto that demands both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from simulators.cli import free_ports
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.agent import Collector, running_agent, running_sim, sim_agent_config
from tests.harness.broker import start_broker
from tests.harness.tlsutil import make_ca_and_server

pytestmark = pytest.mark.slow


def _password(path: Path, text: str) -> Path:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path


async def test_tls_and_password(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ca, cert, key = make_ca_and_server(tmp_path / "tls")
    broker = start_broker(
        tmp_path / "broker", tls=(cert, key), passwords={"gw-01": "s3cret", "reader": "r"}
    )
    scenario = free_ports(load_scenario(default_scenario_path()))
    try:
        async with running_sim(scenario, tmp_path) as sim:
            good = {
                "url": f"mqtts://127.0.0.1:{broker.port}",
                "tls": {"ca_file": str(ca)},
                "username": "gw-01",
                "password_file": str(_password(tmp_path / "pw", "s3cret")),
            }
            config, hmac_key = sim_agent_config(
                scenario, sim, broker, tmp_path / "ok", only={"em-main"}, mqtt_overrides=good
            )
            collector = Collector(broker, hmac_key, ca_file=ca, login=("reader", "r"))
            try:
                async with running_agent(config):
                    await collector.wait_for(
                        lambda c: any(s["d"] == "em-main" for s in c.samples()),
                        20,
                        "data over TLS",
                    )
            finally:
                collector.close()

            # a wrong password: refused, and what is read stays in the outbox
            bad = good | {"password_file": str(_password(tmp_path / "pw2", "wrong"))}
            config, hmac_key = sim_agent_config(
                scenario, sim, broker, tmp_path / "bad", only={"em-main"}, mqtt_overrides=bad
            )
            collector = Collector(broker, hmac_key, ca_file=ca, login=("reader", "r"))
            try:
                async with running_agent(config) as agent:
                    await collector.wait_for(
                        lambda _c: agent.metrics_snapshot()["outbox_batches"] >= 1,
                        20,
                        "the first batch in the outbox",
                    )
                    await asyncio.sleep(3)  # several refused connection attempts
                    m = agent.metrics_snapshot()
                    assert m["outbox_batches"] >= 1
                    assert m["mqtt_connects"] == 0
                    assert m["batches_acked"] == 0
                assert collector.batches() == []
                refusals = [r for r in caplog.records if "refused the connection" in r.message]
                assert len(refusals) == 1, "said once, not at every retry"
                assert "mqtt.password_file" in refusals[0].message
            finally:
                collector.close()
    finally:
        broker.stop()
