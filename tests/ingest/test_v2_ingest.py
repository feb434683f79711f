"""Contract v2 into the running consumer, over a real Mosquitto into a real PostgreSQL:
signed batches kept as the ledger (every sample in `samples` or `samples_aside`, so the
signed digest can be recomputed from stored rows), refused when not signed by the
enrolled key or not of the gateway's contract, and acknowledged on the gateway's ack
topic after the commit."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.contract import topics
from edge_agent.contract.ack import Ack, parse_ack
from edge_agent.contract.digest import ZERO, batch_digest
from edge_agent.contract.identity import FileSigner, fingerprint
from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import encode_message_v2
from edge_agent.contract.wire_v2_encode import seal_batch_v2
from ingest_server.repo.gateways import enroll_public_key
from tests.harness.broker import Broker
from tests.harness.ingest import ENT, GW, SITE, GatewayPublisher, batch, dump, prepare
from tests.ingest.test_consumer import running_consumer, wait_until

GW2 = "gw-02"  # enrolled for contract v2; GW (gw-01) stays on contract v1
PREFIX1 = topics.prefix(ENT, SITE, GW) + "/"
PREFIX2 = topics.prefix(ENT, SITE, GW2) + "/"
NOW_MS = round(time.time() * 1000) - 60_000


@pytest.fixture
def signer(db: str, tmp_path: Path) -> FileSigner:
    """gw-01 (contract 1) and gw-02 (contract 2, this key) registered in `db`."""
    prepare(db, gateways=(GW, GW2))
    key = FileSigner.create(tmp_path / "gw-02.key")
    with psycopg.connect(db) as conn:
        enroll_public_key(conn, enterprise=ENT, site=SITE, gateway=GW2, public_key=key.public_key())
    return key


class AckListener:
    """Subscribes to gateways' ack topics (as their agents do) and keeps what comes."""

    def __init__(self, broker: Broker, *gateways: str) -> None:
        self.acks: dict[str, list[Ack]] = {g: [] for g in gateways}
        self._lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"acks-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )  # fmt: skip
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(
            [(topics.ack_topic(topics.prefix(ENT, SITE, g)), 1) for g in gateways]
        )
        assert subscribed.wait(10), "no SUBACK for the ack topics"

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        gateway = msg.topic.split("/")[4]
        with self._lock:
            self.acks[gateway].append(parse_ack(msg.payload))

    def stored(self, gateway: str) -> list[tuple[int, int]]:
        with self._lock:
            return [(b, s) for a in self.acks[gateway] for b, f, la in a.stored
                    for s in range(f, la + 1)]  # fmt: skip

    def dead(self, gateway: str) -> list[tuple[int, int, str]]:
        with self._lock:
            return [d for a in self.acks[gateway] for d in a.dead]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def acks(broker: Broker) -> Iterator[AckListener]:
    listener = AckListener(broker, GW, GW2)
    try:
        yield listener
    finally:
        listener.close()


def seal(
    signer: FileSigner, seq: int, samples: list[dict[str, Any]], *, prev: bytes = ZERO,
    boot: int = 1, gw: str = GW2,
) -> tuple[bytes, bytes]:  # fmt: skip
    return seal_batch_v2(signer, gw=gw, boot=boot, seq=seq, sent=NOW_MS, prev=prev, samples=samples)


def recomputed_digests(dsn: str) -> dict[tuple[int, int], tuple[bytes, bytes]]:
    """(boot, seq) -> (digest recomputed from the stored rows, batches.digest) for every v2
    batch: its samples from `samples` and `samples_aside` by batch_pos (each position once,
    0 .. n_total - 1), device and tag from `series`, gw from `gateways`; the value is text
    when `text` is not null, else the number in `value`, else null."""
    out: dict[tuple[int, int], tuple[bytes, bytes]] = {}
    with psycopg.connect(dsn) as conn:
        ledger = conn.execute(
            "SELECT b.id, g.id, b.boot, b.seq, b.prev, b.digest, b.n_total FROM batches b "
            "JOIN gateways g USING (gid) WHERE b.contract = 2"
        ).fetchall()
        for batch_id, gw, boot, seq, prev, digest, n_total in ledger:
            rows = conn.execute(
                """
                SELECT x.batch_pos, s.device, s.tag,
                       (extract(epoch FROM x.ts) * 1000)::bigint, x.value, x.text, x.quality,
                       x.status
                FROM (SELECT batch_pos, series_id, ts, value, text, quality, status
                      FROM samples WHERE batch_id = %(b)s
                      UNION ALL
                      SELECT batch_pos, series_id, ts, value, text, quality, status
                      FROM samples_aside WHERE batch_id = %(b)s) x
                JOIN series s USING (series_id) ORDER BY x.batch_pos
                """,
                {"b": batch_id},
            ).fetchall()
            assert [r[0] for r in rows] == list(range(n_total)), (boot, seq, "positions")
            samples = [
                (d, t, ts, text if text is not None else value, q, status)
                for _, d, t, ts, value, text, q, status in rows
            ]
            again = batch_digest(gw=gw, boot=boot, seq=seq, prev=bytes(prev), samples=samples)
            out[boot, seq] = (again, bytes(digest))
    return out


def test_v2_batches_are_the_ledger_every_sample_kept_and_acked(
    db: str, broker: Broker, signer: FileSigner, acks: AckListener
) -> None:
    t = NOW_MS
    first = [
        {"d": "cnc-01", "t": "state", "ts": t, "v": "RUNNING"},
        {"d": "em-1", "t": "energy_kwh", "ts": t, "v": 1000.25},
        {"d": "em-1", "t": "count", "ts": t, "v": 42},
        {"d": "em-1", "t": "energy_kwh", "ts": t + 1, "v": None, "q": "bad", "s": "timeout"},
        {"d": "em-1", "t": "power", "ts": t, "v": 3.5, "q": "uncertain", "s": "stale"},
    ]
    second = [
        {"d": "cnc-01", "t": "state", "ts": t, "v": "IDLE"},  # (series, ts) stored by #1
        {"d": "cnc-01", "t": "state", "ts": t + 5, "v": "IDLE"},
        {"d": "cnc-01", "t": "state", "ts": t + 5, "v": "SETUP"},  # twice in this batch
        {"d": "em-1", "t": "energy_kwh", "ts": t + 86_400_000, "v": 1.0},  # a day ahead
        {"d": "em-1", "t": "energy_kwh", "ts": t + 6, "v": 1001.0},
    ]
    third = [{"d": "em-1", "t": "energy_kwh", "ts": t + 10, "v": 1002.5}]
    p1, d1 = seal(signer, 1, first)
    p2, d2 = seal(signer, 2, second, prev=d1)
    p3, d3 = seal(signer, 3, third, prev=d2)
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", p1, prefix=PREFIX2)
            # the repeat of a stored sample must find #1 stored: wait for its ack
            wait_until(lambda: (1, 1) in acks.stored(GW2), 10, "the ack of batch 1")
            pub.publish("data", p2, prefix=PREFIX2)
            pub.publish("data", p3, prefix=PREFIX2)
            wait_until(lambda: {(1, 2), (1, 3)} <= set(acks.stored(GW2)), 10, "acks of 2, 3")
            pub.publish("data", p2, prefix=PREFIX2)  # sent again: its ack was "lost"
            wait_until(lambda: acks.stored(GW2).count((1, 2)) == 2, 10, "batch 2 acked again")
        finally:
            pub.close()
        assert consumer.counters.batches_v2 == 3
        assert consumer.counters.batches_repeated == 1
        assert consumer.counters.acks_published >= 3
    assert acks.dead(GW2) == []
    assert dump(
        db, "SELECT boot, seq, contract, prev, digest, octet_length(signature), n_total, "
        "samples, rejected FROM batches ORDER BY seq",
    ) == [
        (1, 1, 2, ZERO, d1, 64, 5, 5, 0),
        (1, 2, 2, d1, d2, 64, 5, 4, 1),
        (1, 3, 2, d2, d3, 64, 1, 1, 0),
    ]  # fmt: skip
    for key, (again, stored) in recomputed_digests(db).items():
        assert again == stored, key
    aside = dump(
        db, "SELECT b.seq, a.batch_pos, a.reason FROM samples_aside a "
        "JOIN batches b ON b.id = a.batch_id ORDER BY 1, 2",
    )  # fmt: skip
    # the stored sample repeated (pos 0), one of the two at t + 5 (1 or 2), the future one
    assert aside[0] == (2, 0, 1)
    assert aside[1] in {(2, 1, 1), (2, 2, 1)}
    assert aside[2] == (2, 3, 2)
    assert len(aside) == 3
    assert dump(db, "SELECT count(*) FROM samples") == [(5 + 2 + 1,)]
    assert dump(db, "SELECT text FROM samples s JOIN series USING (series_id) "
                    "WHERE tag = 'state' ORDER BY ts") [0] == ("RUNNING",)  # fmt: skip
    # the future sample is also a dead letter, as for v1; nothing else is
    reasons = dump(db, "SELECT reason FROM dead_letters")
    assert len(reasons) == 1
    assert "1 sample(s) of batch 1/2: sample time" in reasons[0][0]


def test_a_batch_not_signed_by_the_enrolled_key_is_dead_and_acked_dead(
    db: str, broker: Broker, signer: FileSigner, acks: AckListener, tmp_path: Path
) -> None:
    other = FileSigner.create(tmp_path / "other.key")
    samples = [{"d": "em-1", "t": "energy_kwh", "ts": NOW_MS, "v": 5.0}]
    forged, _ = seal(other, 1, samples)
    good, _ = seal(signer, 2, samples)
    # the same (boot, seq) as the good one, other content: a second batch under one key
    twin, _ = seal(signer, 2, [{"d": "em-1", "t": "energy_kwh", "ts": NOW_MS, "v": 6.0}])
    with running_consumer(db, broker) as _consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", forged, prefix=PREFIX2)
            wait_until(lambda: len(acks.dead(GW2)) == 1, 10, "the ack of the forged batch")
            pub.publish("data", good, prefix=PREFIX2)
            wait_until(lambda: (1, 2) in acks.stored(GW2), 10, "the ack of the good batch")
            pub.publish("data", twin, prefix=PREFIX2)
            wait_until(lambda: len(acks.dead(GW2)) == 2, 10, "the ack of the twin")
        finally:
            pub.close()
    name = f"{ENT}/{SITE}/{GW2}"
    want = (
        f"signature: does not verify with gateway {name}'s enrolled key (fingerprint "
        f"{fingerprint(signer.public_key())})"
    )
    (boot, seq, reason), (boot2, seq2, reason2) = acks.dead(GW2)
    assert (boot, seq) == (1, 1)
    assert reason.startswith(want)
    assert (boot2, seq2) == (1, 2)
    assert "batch 1/2 was stored with another digest" in reason2
    letters = dump(db, "SELECT reason, payload FROM dead_letters ORDER BY id")
    assert [r for r, _ in letters] == [reason, reason2]
    assert [bytes(p) for _, p in letters] == [forged, twin]
    assert dump(db, "SELECT seq FROM batches") == [(2,)]
    assert dump(db, "SELECT value FROM samples") == [(5.0,)]


def test_each_gateway_is_held_to_its_contract_on_one_server(
    db: str, broker: Broker, signer: FileSigner, acks: AckListener
) -> None:
    now = NOW_MS / 1000
    v1_good = batch(1, [Sample("cnc-01", "state", now, "RUNNING")])
    v2_good, _ = seal(signer, 1, [{"d": "cnc-01", "t": "state", "ts": NOW_MS, "v": "IDLE"}])
    # gw-01 is on contract 1: a v2 batch from it (its key is not enrolled) is refused
    v2_from_v1, _ = seal(signer, 9, [{"d": "x", "t": "y", "ts": NOW_MS, "v": 1.0}], gw=GW)
    body = {"gw": GW2, "boot": 1, "agent": {"name": "t", "version": "0"}, "sent": NOW_MS,
            "devices": [{"id": "cnc-01", "protocol": "opcua", "metadata": {},
                         "tags": [{"t": "state", "role": "machine_state"}]}]}  # fmt: skip
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", v2_from_v1, prefix=PREFIX1)
            # gw-02 is on contract 2: its old HMAC-signed batch is refused
            pub.publish("data", batch(5, [Sample("cnc-01", "state", now, "DOWN")]),
                        prefix=PREFIX2)  # fmt: skip
            pub.publish("birth", encode_message_v2(body, signer), prefix=PREFIX2)
            pub.publish("data", v2_good, prefix=PREFIX2)
            pub.publish("data", v1_good, prefix=PREFIX1)
            wait_until(lambda: (1, 1) in acks.stored(GW), 10, "the v1 batch's ack")
            wait_until(lambda: (1, 1) in acks.stored(GW2), 10, "the v2 batch's ack")
            wait_until(lambda: consumer.counters.messages >= 5, 10, "every message")
        finally:
            pub.close()
    assert acks.dead(GW) == []  # a gateway without a v2 key is never acked a v2 batch
    # gw-02's HMAC batch, left in its outbox from before the move to contract 2: acked as
    # dead, so the agent lets go of what the server will never take
    wait_until(lambda: bool(acks.dead(GW2)), 10, "the dead ack of gw-02's v1 batch")
    assert [(b, s) for b, s, _ in acks.dead(GW2)] == [(1, 5)]
    reasons = sorted(r for (r,) in dump(db, "SELECT reason FROM dead_letters"))
    assert len(reasons) == 2
    assert reasons[0].startswith(f"gateway {ENT}/{SITE}/{GW} is enrolled for contract v1")
    assert f"ingest-server gateway enroll {ENT} {SITE} {GW} --public-key KEY" in reasons[0]
    assert reasons[1].startswith(f"gateway {ENT}/{SITE}/{GW2} is enrolled for contract v2")
    rows = dump(
        db, "SELECT g.id, b.contract, s.text, s.batch_id IS NULL, s.batch_pos FROM samples s "
        "JOIN series USING (series_id) JOIN gateways g USING (gid) "
        "LEFT JOIN batches b ON b.id = s.batch_id ORDER BY g.id",
    )  # fmt: skip
    assert rows == [(GW, None, "RUNNING", True, None), (GW2, 2, "IDLE", False, 0)]
    assert dump(db, "SELECT contract FROM batches ORDER BY contract") == [(1,), (2,)]
    # the v2-signed birth registered gw-02's device
    assert dump(
        db, "SELECT d.device FROM devices d JOIN gateways g USING (gid) WHERE g.id = 'gw-02'"
    ) == [("cnc-01",)]
