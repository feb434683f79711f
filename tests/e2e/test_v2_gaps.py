"""A gateway's own loss, end to end: its outbox drops batches while the server is away,
it declares them in its signed status, and `ledger check` reports the hole as that
declared loss (exit 0, a note), not as batches deleted on the server.

Everything real but the plant: a contract-2 agent (in process, its smallest outbox, fed
large text samples through `Agent.emit`, the sources' entry), Mosquitto, the server's
consumer and PostgreSQL. The server's MQTT session ends when it stops (session expiry 0),
so the broker keeps nothing for it: what the agent dropped meanwhile is lost for good.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg

from edge_agent.contract.sample import Sample
from ingest_server.ingest.consumer import Consumer, ConsumerConfig
from ingest_server.repo.gateways import enroll_public_key
from tests.agent.test_contract2 import quiet_config, until
from tests.e2e.test_v2_drills import _cli
from tests.harness.agent import running_agent
from tests.harness.broker import Broker
from tests.harness.ingest import ENT, GW, SITE, dump, prepare
from tests.ingest.test_consumer import wait_until


def consumer_for(db: str, broker: Broker) -> Consumer:
    """The server, with a session that ends with its connection."""
    mode = dump(db, "SELECT value FROM settings WHERE key = 'storage_mode'")[0][0]
    cfg = ConsumerConfig(
        mqtt_url=f"mqtt://{broker.host}:{broker.port}", dsn=db, mode=mode, session_expiry_s=0,
        client_id=f"ingest-{secrets.token_hex(3)}", db_retry_min_s=0.2, db_retry_max_s=2.0,
    )  # fmt: skip
    consumer = Consumer(cfg)
    consumer.start()
    assert consumer.subscribed.wait(10), "the consumer did not subscribe"
    return consumer


def stored(db: str) -> list[tuple[int, int]]:
    return [(int(b), int(s)) for b, s in dump(db, "SELECT boot, seq FROM batches ORDER BY 1, 2")]


async def test_batches_dropped_while_the_server_is_away_are_a_declared_loss(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    config, public_key, _ = quiet_config(
        tmp_path, broker, mqtt_extra={"ack_timeout_s": 0.5, "ack_backoff_max_s": 1.0}
    )
    data = json.loads(config.read_text())
    data["gateway"] |= {"enterprise": ENT, "site": SITE, "id": GW}  # the harness's registry
    data["outbox"]["max_bytes"] = 1 << 20  # the least allowed: four batches of ~300 kB
    config.write_text(json.dumps(data))
    prepare(db)
    with psycopg.connect(db) as conn:
        enroll_public_key(conn, enterprise=ENT, site=SITE, gateway=GW, public_key=public_key)
    consumer = consumer_for(db, broker)
    try:
        async with running_agent(config) as agent:

            def emit(n: int, text_bytes: int) -> None:
                now = time.time()
                agent.emit([Sample("em-1", "note", now + i / 1000, secrets.token_urlsafe(size))
                            for i, size in enumerate([text_bytes] * n)])  # fmt: skip

            emit(3, 10)
            await asyncio.to_thread(wait_until, lambda: stored(db) != [], 10, "a first batch")
            consumer.stop()  # the server is away; the agent's outbox fills and drops
            seq = agent.seq
            while agent.outbox_dropped_batches < 3:
                emit(100, 3000)  # texts that do not compress
                await until(lambda s=seq: agent.seq > s, 10, "a batch sealed")
                seq = agent.seq
            sink = agent._sink
            assert sink is not None
            await until(lambda: sink.announced != [], 10, "a status declaring the drops")
            emit(3, 10)
            await until(lambda: agent.seq > seq, 10, "a last batch sealed")
            # back: only the agent's re-sends bring what it still holds
            consumer = consumer_for(db, broker)
            await until(
                lambda: agent.metrics_snapshot()["outbox_batches"] == 0, 20, "every batch acked"
            )
            # drops after the first status are declared within DECLARE_EVERY_S
            await until(lambda: sink.announced == sink.dropped, 10, "every drop declared")
            declared = agent.outbox_dropped_batches
            last_dropped = sink.dropped[-1][2]
            await asyncio.to_thread(
                wait_until,
                lambda: dump(db, "SELECT max(last_seq) FROM declared_gaps")[0][0] == last_dropped,
                10,
                "the declaration stored",
            )
    finally:
        consumer.stop()
    ranges = dump(db, "SELECT boot, first_seq, last_seq, reason FROM declared_gaps")
    assert len(ranges) == 1
    boot, first, last, reason = ranges[0]
    assert (first, reason) == (2, "full")  # batch 1 was stored before the server went
    keys = stored(db)
    missing = [(boot, s) for s in range(1, max(s for _, s in keys)) if (boot, s) not in keys]
    assert missing == [(boot, s) for s in range(first, last + 1)]
    assert len(missing) == declared
    (tz,) = dump(db, f"SELECT timezone FROM sites WHERE id = '{SITE}'")[0]
    lo, hi = dump(db, "SELECT min(sent), max(sent) FROM batches")[0]
    days = [str(t.astimezone(ZoneInfo(tz)).date()) for t in (lo, hi)]
    code, out = _cli("ledger", "check", "--dsn", db, "--enterprise", ENT, "--from", days[0],
                     "--to", days[1])  # fmt: skip
    assert code == 0, out
    what = f"batch boot {boot} seq {first}" if first == last else (
        f"batches boot {boot} seq {first}..{last}")  # fmt: skip
    assert f"{what} lost: dropped by the gateway's outbox: full, declared in its signed " in out
    assert f"1 loss(es) declared by the gateways, {len(missing)} batch(es) known lost" in out
    assert out.splitlines()[-1] == "LEDGER OK"
    # the server's status: every missing batch of the chain is one the gateway declared
    code, out = _cli("status", "--dsn", db, "--json")
    assert code == 0, out
    (gw,) = [g for g in json.loads(out)["gateways"] if g["gateway"].endswith(f"/{GW}")]
    assert gw["missing_batches"] == gw["declared_dropped"] == len(missing), gw
