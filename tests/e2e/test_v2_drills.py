"""Contract v2 end to end under the fault that lost data with v1: the server stopped, then
the broker killed before its autosave, then both back. Everything real: the simulators'
Modbus devices, the agent (contract 2: its own Ed25519 key, deleting a batch only on the
server's ack), Mosquitto with persistence as deployed (`autosave_interval 60`), the
server's consumer, PostgreSQL, and `ingest-server ledger check` over the result.

With v1 the agent let go of each batch at the broker's PUBACK: the broker's queue for the
stopped server died with it (242 of 854 samples lost, the issue measured). With v2 the
batches the broker forgot are re-sent after the ack timeout and stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
import signal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from edge_agent.contract.identity import FileSigner
from ingest_server.cli.main import main as ingest_server
from ingest_server.ingest.consumer import Consumer, ConsumerConfig
from ingest_server.repo.gateways import enroll_public_key
from simulators.cli import free_ports
from simulators.scenario import default_scenario_path, load_scenario
from tests.agent.test_faults import ticking
from tests.harness.agent import running_agent, running_sim, sim_agent_config
from tests.harness.backfill import import_scenario_registry
from tests.harness.broker import Broker, start_broker
from tests.harness.ingest import dump
from tests.ingest.test_consumer import wait_until

pytestmark = pytest.mark.slow
DEVICES = {"ht-01", "em-main", "wm-main"}  # a few Modbus devices: the drill is about delivery
ENTERPRISE, SITE, GATEWAY = "hf-precision", "hf-plant1", "gw-01"


def consumer_for(db: str, broker: Broker, client_id: str) -> Consumer:
    """The server as deployed: a fixed client id, so a restart resumes its session."""
    mode = dump(db, "SELECT value FROM settings WHERE key = 'storage_mode'")[0][0]
    cfg = ConsumerConfig(
        mqtt_url=f"mqtt://{broker.host}:{broker.port}", dsn=db, client_id=client_id, mode=mode,
        db_retry_min_s=0.2, db_retry_max_s=2.0,
    )  # fmt: skip
    consumer = Consumer(cfg)
    consumer.start()
    assert consumer.subscribed.wait(10), "the consumer did not subscribe"
    return consumer


def ledger(db: str) -> list[tuple[int, int, int]]:
    """(boot, seq, samples signed) of every batch stored from the gateway."""
    return [
        (int(b), int(s), int(n))
        for b, s, n in dump(
            db,
            "SELECT b.boot, b.seq, b.n_total FROM batches b JOIN gateways g USING (gid) "
            f"WHERE g.id = '{GATEWAY}' AND b.contract = 2 ORDER BY b.boot, b.seq",
        )
    ]


async def test_server_stopped_then_broker_killed_loses_nothing(db: str, tmp_path: Path) -> None:
    scenario = free_ports(load_scenario(default_scenario_path()))
    broker = start_broker(tmp_path / "broker", persistence=True, autosave_interval_s=60)
    port, server_id = broker.port, f"ingest-{secrets.token_hex(3)}"
    async with running_sim(scenario, tmp_path) as sim:
        config, public_key = sim_agent_config(
            scenario, sim, broker, tmp_path / "agent", only=DEVICES, poll_interval_s=0.1,
            contract=2, mqtt_overrides={"ack_timeout_s": 1.0, "ack_backoff_max_s": 2.0},
        )  # fmt: skip
        import_scenario_registry(db, scenario, secrets.token_hex(32).encode())
        with psycopg.connect(db) as conn:
            enroll_public_key(
                conn, enterprise=ENTERPRISE, site=SITE, gateway=GATEWAY, public_key=public_key
            )
        consumer = consumer_for(db, broker, server_id)
        try:
            async with running_agent(config) as agent, ticking(sim):
                await asyncio.to_thread(wait_until, lambda: len(ledger(db)) >= 3, 20, "batches")
                consumer.stop()  # the server stops; the broker queues for its session
                stored_before = len(ledger(db))
                await asyncio.sleep(3)
                assert agent.metrics_snapshot()["sent_unacked_batches"] > 0, (
                    "the broker took batches the server has not stored: the agent keeps them"
                )
                broker.process.send_signal(signal.SIGKILL)  # before its 60 s autosave
                broker.process.wait(5)
                await asyncio.sleep(3)
                broker = start_broker(
                    tmp_path / "broker", port=port, persistence=True, autosave_interval_s=60
                )
                consumer = consumer_for(db, broker, server_id)
                await asyncio.sleep(3)
                # what the killed broker had queued for the server died with it: only the
                # agent's re-sends can have brought it
                resent = agent.metrics_snapshot()["batches_resent"]
            # the agent stopped cleanly: it waited for the acks of what it had sealed
            final_seq = agent.seq
            dead_letters = consumer.counters.dead_letters
        finally:
            consumer.stop()
            broker.stop()

    rows = ledger(db)
    keys = [(b, s) for b, s, _ in rows]
    assert len(rows) > stored_before + 20, "the drill ran long enough to publish a backlog"
    assert keys == [(1, s) for s in range(1, final_seq + 1)], "every sealed batch, once"
    assert dead_letters == 0
    assert resent > 0
    # every sample the agent sealed is stored once, in samples or (repeats) samples_aside
    signed = sum(n for _, _, n in rows)
    assert signed == agent.samples_sealed
    held = dump(
        db,
        "SELECT (SELECT count(*) FROM samples s JOIN batches b ON b.id = s.batch_id) "
        "     + (SELECT count(*) FROM samples_aside)",
    )[0][0]
    assert held == signed
    # and a verifier recomputing every batch from those rows finds nothing wrong
    tz = ZoneInfo(scenario.site.timezone)
    first, last = dump(db, "SELECT min(sent), max(sent) FROM batches")[0]
    days = [first.astimezone(tz).date(), last.astimezone(tz).date()]
    check = ("ledger", "check", "--dsn", db, "--enterprise", ENTERPRISE,
             "--from", str(days[0]), "--to", str(days[1]))  # fmt: skip
    code, out = _cli(*check)
    assert code == 0, out
    assert f"{len(rows)} batch" in out, out
    # ... and one number changed in the database afterwards is found, by batch
    boot, seq = dump(
        db,
        "UPDATE samples SET value = value + 1 WHERE (series_id, ts) = (SELECT series_id, ts "
        "FROM samples WHERE value IS NOT NULL AND batch_id IS NOT NULL ORDER BY ts LIMIT 1) "
        "RETURNING (SELECT boot FROM batches WHERE id = batch_id), "
        "(SELECT seq FROM batches WHERE id = batch_id)",
    )[0]
    code, out = _cli(*check)
    assert code == 3, out
    assert f"boot {boot} seq {seq}" in out, out


async def test_moving_a_gateway_to_contract_2_agent_first_loses_nothing(
    db: str, tmp_path: Path
) -> None:
    """docs/agent.md's order: the agent restarted with contract 2 first (its v2 batches
    refused and kept until the server knows its key), then the key enrolled."""
    scenario = free_ports(load_scenario(default_scenario_path()))
    broker = start_broker(tmp_path / "broker")
    workdir = tmp_path / "agent"
    async with running_sim(scenario, tmp_path) as sim:
        config, hmac_key = sim_agent_config(
            scenario, sim, broker, workdir, only=DEVICES, poll_interval_s=0.1,
            mqtt_overrides={"ack_timeout_s": 1.0, "ack_backoff_max_s": 2.0},
        )  # fmt: skip
        import_scenario_registry(db, scenario, hmac_key)
        consumer = consumer_for(db, broker, f"ingest-{secrets.token_hex(3)}")
        try:
            async with running_agent(config) as v1_agent, ticking(sim):
                await asyncio.to_thread(
                    wait_until, lambda: len(batches(db, 1)) >= 3, 20, "v1 batches"
                )
            # steps 1 and 2: the gateway's key, contract 2 in its config, a restart
            public_key = FileSigner.create(workdir / "gateway.ed25519").public_key()
            doc = json.loads(config.read_text(encoding="utf-8"))
            doc["gateway"] |= {"contract": 2, "key_file": "gateway.ed25519"}
            config.write_text(json.dumps(doc), encoding="utf-8")
            async with running_agent(config) as agent, ticking(sim):
                await asyncio.sleep(3)
                assert batches(db, 2) == [], "refused until the key is enrolled"
                waiting = agent.metrics_snapshot()["sent_unacked_batches"]
                assert waiting > 0, "kept by the agent, not acknowledged"
                # step 3: the server enrols the key
                with psycopg.connect(db) as conn:
                    enroll_public_key(
                        conn, enterprise=ENTERPRISE, site=SITE, gateway=GATEWAY,
                        public_key=public_key,
                    )  # fmt: skip
                await asyncio.sleep(3)
        finally:
            consumer.stop()
            broker.stop()
    # every batch of both contracts stored, once: boot 1 signed with HMAC, boot 2 by the key
    assert batches(db, 1) == [(1, s) for s in range(1, v1_agent.seq + 1)]
    assert batches(db, 2) == [(agent.boot, s) for s in range(1, agent.seq + 1)]
    refused = dump(db, "SELECT count(*) FROM dead_letters WHERE reason LIKE '%contract v1%'")
    assert refused[0][0] >= waiting  # each attempt before the enrolment was refused


def batches(db: str, contract: int) -> list[tuple[int, int]]:
    """(boot, seq) of the gateway's stored batches of one contract."""
    return [
        (int(b), int(s))
        for b, s in dump(
            db,
            "SELECT b.boot, b.seq FROM batches b JOIN gateways g USING (gid) "
            f"WHERE g.id = '{GATEWAY}' AND b.contract = {contract} ORDER BY b.boot, b.seq",
        )
    ]


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = ingest_server(list(argv))
    return code, out.getvalue()
