"""The consumer against a real Mosquitto and a real PostgreSQL: bad input dead-lettered
with its reason, shared subscriptions, and faults (database down, server killed) that
lose nothing and store nothing twice."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import encode_message, sign
from ingest_server.ingest.consumer import Consumer, ConsumerConfig
from ingest_server.repo.registry import import_registry
from tests.harness.broker import Broker, start_broker
from tests.harness.ingest import (
    CNC_BIRTH,
    GW,
    KEY,
    GatewayPublisher,
    batch,
    dump,
    prepare,
    s,
    small_registry,
    synthetic_batches,
)
from tests.harness.netutil import free_port
from tests.harness.pg import PASSWORD_HBA, login_role, own_postgres

NOW = time.time()


@contextlib.contextmanager
def running_consumer(dsn: str, broker: Broker, **overrides: Any) -> Iterator[Consumer]:
    mode = dump(dsn, "SELECT value FROM settings WHERE key = 'storage_mode'")[0][0]
    cfg = ConsumerConfig(
        mqtt_url=f"mqtt://{broker.host}:{broker.port}",
        dsn=dsn,
        client_id=f"ingest-{secrets.token_hex(3)}",
        mode=mode,
        db_retry_min_s=0.2,
        db_retry_max_s=2.0,
        **overrides,
    )
    consumer = Consumer(cfg)
    consumer.start()
    try:
        assert consumer.subscribed.wait(10), "the consumer did not subscribe"
        yield consumer
    finally:
        consumer.stop()


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stored(dsn: str) -> int:
    return int(dump(dsn, "SELECT count(*) FROM samples")[0][0])


def test_bad_payloads_are_dead_lettered_with_their_reason_and_good_traffic_goes_on(
    db: str, broker: Broker
) -> None:
    prepare(db)
    good = [s("cnc-01", "state", NOW, "RUNNING"), s("em-1", "energy_kwh", NOW, 5.0)]
    future = Sample("em-1", "energy_kwh", NOW + 365 * 86400, 6.0)
    cases = [
        ("data", sign(b'{"v":1,"gw":"gw-01", oops}', KEY), "not JSON"),
        ("data", encode_message({"gw": GW, "boot": 1, "seq": 0, "sent": 1, "samples": []}, KEY),
         "schema: seq: Input should be greater than or equal to 1"),
        ("data", batch(1, good, key=b"not the gateway's key"), "signature does not match"),
        ("data", batch(2, [*good, future]), "1 sample(s) of batch 1/2: sample time"),
        ("status", encode_message({"gw": GW, "boot": 1, "state": "napping"}, KEY),
         "schema: state: Input should be 'online' or 'offline'"),
        ("data", batch(3, good * 400), "over the limit of 20000"),
    ]  # fmt: skip
    with running_consumer(db, broker, max_payload_bytes=20_000) as consumer:
        pub = GatewayPublisher(broker)
        try:
            for kind, payload, _ in cases:
                pub.publish(kind, payload)
            pub.publish("data", batch(4, good), prefix="fe/v1/hf/p1/gw-99/")
            pub.publish("data", batch(5, [s("cnc-01", "state", NOW + 1, "IDLE")]))
            wait_until(lambda: consumer.counters.messages >= 8, 10, "every message")
        finally:
            pub.close()
    reasons = [r for (r,) in dump(db, "SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == len(cases) + 1
    for _, _, reason in cases:
        assert any(reason in r for r in reasons), (reason, reasons)
    assert any("unknown gateway hf/p1/gw-99" in r for r in reasons)
    # the good samples of batch 2 and all of batch 5 are stored; nothing of the others
    assert dump(db, "SELECT text, value FROM samples ORDER BY ts, text NULLS LAST") == [
        ("RUNNING", None),
        (None, 5.0),
        ("IDLE", None),
    ]
    assert dump(db, "SELECT seq, samples, rejected FROM batches ORDER BY seq") == [
        (2, 2, 1),
        (5, 1, 0),
    ]
    sizes = dump(db, "SELECT payload_bytes, length(payload) FROM dead_letters")
    assert all(stored_len <= 64 * 1024 and stored_len <= total for total, stored_len in sizes)


def test_two_servers_on_a_shared_subscription_store_each_batch_once(
    db: str, broker: Broker
) -> None:
    prepare(db)
    batches = synthetic_batches(300, 20, t0=NOW - 3600)
    with running_consumer(db, broker) as a, running_consumer(db, broker) as b:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("birth", CNC_BIRTH)
            for i, samples in enumerate(batches, 1):
                pub.publish("data", batch(i, samples))
        finally:
            pub.close()
        wait_until(lambda: stored(db) == 300 * 20, 30, "every sample")
    assert a.counters.batches_new > 30, "both servers took a share"
    assert b.counters.batches_new > 30, "both servers took a share"
    assert a.counters.batches_new + b.counters.batches_new == 300
    assert dump(db, "SELECT count(*), count(DISTINCT seq) FROM batches") == [(300, 300)]
    # the state flips every 7 batches: 300 batches give 43 intervals
    assert dump(db, "SELECT count(*) FROM state_intervals") == [(43,)]


class Streamer(threading.Thread):
    """Publishes batches at a steady rate until told to stop; remembers what it sent."""

    def __init__(self, broker: Broker, *, per_batch: int = 50, rate_hz: float = 20) -> None:
        super().__init__(daemon=True)
        self.pub = GatewayPublisher(broker, client_id=f"gw-{secrets.token_hex(3)}")
        self.per_batch, self.period = per_batch, 1 / rate_hz
        self.sent = 0
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            t0 = NOW - 7200
            while not self.halt.is_set():
                seq = self.sent + 1
                samples = synthetic_batches(1, self.per_batch, t0=t0 + seq)[0]
                self.pub.publish("data", batch(seq, samples))
                self.sent = seq
                time.sleep(self.period)
        except BaseException as exc:
            self.error = exc
        finally:
            self.pub.close()


def check_exact(dsn: str, streamer: Streamer) -> None:
    assert streamer.error is None, streamer.error
    n = streamer.sent
    assert dump(dsn, "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM batches") == [
        (n, n, 1, n)
    ]
    assert stored(dsn) == n * streamer.per_batch


@pytest.mark.slow
def test_the_database_down_for_30_s_loses_and_duplicates_nothing(broker: Broker) -> None:
    with own_postgres() as pg:
        dsn = pg.dsn()
        prepare(dsn)
        with running_consumer(dsn, broker) as consumer:
            streamer = Streamer(broker)
            streamer.start()
            wait_until(lambda: stored(dsn) > 1000, 15, "samples flowing")
            pg.stop("fast")
            time.sleep(30)
            sent_while_down = streamer.sent
            pg.start()
            time.sleep(3)
            streamer.halt.set()
            streamer.join(10)
            wait_until(lambda: stored(dsn) == streamer.sent * 50, 60, "the backlog")
        assert consumer.counters.db_errors >= 1
        assert sent_while_down > 300, "the gateway kept publishing while the database was down"
        check_exact(dsn, streamer)


def launch_server(
    dsn: str, broker: Broker, workdir: Path, client_id: str, *extra: str
) -> subprocess.Popen[bytes]:
    """`ingest-server run` as a process, logging to WORKDIR/CLIENT_ID.log; not waited for."""
    ready = workdir / f"{client_id}.ready"
    ready.unlink(missing_ok=True)
    with open(workdir / f"{client_id}.log", "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ingest_server.cli.main", "run", "--dsn", dsn,
             "--mqtt", f"mqtt://{broker.host}:{broker.port}", "--client-id", client_id,
             "--ready-file", str(ready), "--summary-every", "1",
             "--signing-key", str(workdir / "report-signing.pem"), *extra],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip


def start_server(
    dsn: str, broker: Broker, workdir: Path, client_id: str, *extra: str
) -> subprocess.Popen[bytes]:
    """launch_server, then wait until it consumes."""
    proc = launch_server(dsn, broker, workdir, client_id, *extra)
    ready = workdir / f"{client_id}.ready"
    try:
        wait_until(lambda: ready.exists() or proc.poll() is not None, 30, "the server to start")
        assert proc.poll() is None, (workdir / f"{client_id}.log").read_text()
        assert json.loads(ready.read_text())["mode"] in ("plain", "timescale")
    except BaseException:
        # stop what was started: a process left running fails a later test too
        proc.kill()
        proc.wait(10)
        raise
    return proc


@pytest.mark.slow
def test_a_server_killed_mid_run_and_restarted_loses_and_duplicates_nothing(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    prepare(db)
    server = start_server(db, broker, tmp_path, "ingest-a")
    streamer = Streamer(broker)
    try:
        time.sleep(1)  # the subscription is in place once the server says it is ready
        streamer.start()
        wait_until(lambda: stored(db) > 2000, 20, "samples flowing")
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        time.sleep(3)
        at_kill = stored(db)
        server = start_server(db, broker, tmp_path, "ingest-a")
        time.sleep(2)
        streamer.halt.set()
        streamer.join(10)
        wait_until(lambda: stored(db) == streamer.sent * 50, 60, "everything after the restart")
    finally:
        streamer.halt.set()
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    assert at_kill < streamer.sent * 50, "messages were sent while the server was dead"
    assert server.returncode == 0
    check_exact(db, streamer)


def test_a_key_rotated_while_the_server_runs_is_picked_up(db: str, broker: Broker) -> None:
    prepare(db)
    new_key = b"fedcba9876543210" * 4
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", batch(1, [s("em-1", "energy_kwh", NOW, 1.0)]))
            wait_until(lambda: stored(db) == 1, 10, "the first sample")
            with psycopg.connect(db) as conn:
                import_registry(conn, small_registry(), {GW: new_key})
            time.sleep(consumer._directory.refresh_s + 0.2)  # the cached key is stale now
            pub.publish("data", batch(2, [s("em-1", "energy_kwh", NOW + 1, 2.0)], key=new_key))
            pub.publish("data", batch(3, [s("em-1", "energy_kwh", NOW + 2, 3.0)]))  # old key
            wait_until(lambda: consumer.counters.messages >= 3, 10, "three messages")
        finally:
            pub.close()
    assert dump(db, "SELECT seq FROM batches ORDER BY seq") == [(1,), (2,)]
    reasons = dump(db, "SELECT reason FROM dead_letters")
    assert len(reasons) == 1
    assert "signature does not match" in reasons[0][0]


@pytest.mark.slow
def test_workers_split_the_load_and_stop_together(db: str, broker: Broker, tmp_path: Path) -> None:
    prepare(db)
    server = start_server(db, broker, tmp_path, "ingest-w", "--workers", "2")
    ready = json.loads((tmp_path / "ingest-w.ready").read_text())
    assert len(ready["workers"]) == 2
    try:
        pub = GatewayPublisher(broker)
        try:
            for i, samples in enumerate(synthetic_batches(200, 10, t0=NOW - 600), 1):
                pub.publish("data", batch(i, samples))
        finally:
            pub.close()
        wait_until(lambda: stored(db) == 2000, 30, "every sample")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    assert server.returncode == 0
    log = (tmp_path / "ingest-w.log").read_text()
    # each worker logs its own summary under its own client id; both stored batches
    for worker in ("ingest-w-0", "ingest-w-1"):
        assert f"as {worker} (session new)" in log
    assert dump(db, "SELECT count(*) FROM batches") == [(200,)]
    for pid in ready["workers"]:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


@pytest.mark.slow
def test_the_ready_file_means_subscribed_not_connecting(db: str, tmp_path: Path) -> None:
    """--ready-file is written once the server consumes. It was written as soon as the
    connection began, so a message published right after it could reach a new session
    before its subscription, and no one (seen as a flaky test). With the broker away, no
    ready file; once it is there, the ready file, and what is published then is stored."""
    prepare(db)
    gone = start_broker(tmp_path / "gone")
    gone.stop()  # its port, with nothing listening
    proc = launch_server(db, gone, tmp_path, "ingest-wait")
    ready = tmp_path / "ingest-wait.ready"
    broker = None
    try:
        wait_until(lambda: "storage mode" in (tmp_path / "ingest-wait.log").read_text(), 30,
                   "the server to be up to its broker connection")  # fmt: skip
        time.sleep(2)
        assert proc.poll() is None
        assert not ready.exists(), "ready while the broker cannot be reached"
        broker = start_broker(tmp_path / "back", port=gone.port)
        wait_until(ready.exists, 30, "the ready file once the broker is there")
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", batch(1, [s("em-1", "energy_kwh", NOW, 1.0)]))
        finally:
            pub.close()
        wait_until(lambda: stored(db) == 1, 20, "the sample published right after ready")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if broker is not None:
            broker.stop()


@pytest.mark.slow
def test_a_database_unreachable_at_start_is_waited_for(broker: Broker, tmp_path: Path) -> None:
    import tempfile  # noqa: PLC0415

    from ingest_server.db.embedded_pg import EmbeddedPostgres  # noqa: PLC0415

    root = Path(tempfile.mkdtemp(prefix="fe-pg-late-"))
    root.chmod(0o755)
    pg = EmbeddedPostgres(root, port=free_port())
    dsn = pg.dsn()
    log_path = tmp_path / "ingest-late.log"
    ready = tmp_path / "ingest-late.ready"
    proc = launch_server(dsn, broker, tmp_path, "ingest-late")
    try:
        wait_until(lambda: "database unreachable" in log_path.read_text(), 20, "a warning")
        assert proc.poll() is None, "the server waits for its database"
        assert not ready.exists()
        pg.start()  # the database comes up after the server
        prepare(dsn)
        wait_until(ready.exists, 60, "the server to start once the database is up")
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", batch(1, [s("em-1", "energy_kwh", NOW, 1.0)]))
        finally:
            pub.close()
        wait_until(lambda: stored(dsn) == 1, 20, "the sample")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
    text = log_path.read_text()
    assert "retrying in" in text
    assert "Traceback" not in text
    assert proc.returncode == 0


def test_a_message_the_database_refuses_is_dead_lettered_not_retried_forever(
    db: str, broker: Broker
) -> None:
    """Whatever the schema lets through and PostgreSQL still refuses (here a rule of the
    site's DBA the schema cannot know; a NUL in a string was one before the schema
    refused it) is dead-lettered with the database's words, and what follows is stored."""
    prepare(db)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE samples ADD CONSTRAINT dba_rule CHECK (text IS DISTINCT FROM 'O9999')"
        )
    refused = [s("cnc-01", "program", NOW, "O9999")]
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            pub.publish("data", batch(1, [s("em-1", "energy_kwh", NOW, 1.0)]))
            pub.publish("data", batch(2, refused))
            pub.publish("data", batch(3, [s("em-1", "energy_kwh", NOW + 1, 2.0)]))
            wait_until(lambda: consumer.counters.messages >= 3, 10, "three messages")
            wait_until(lambda: stored(db) == 2, 10, "the good samples")
        finally:
            pub.close()
    assert dump(db, "SELECT seq FROM batches ORDER BY seq") == [(1,), (3,)]
    reasons = dump(db, "SELECT reason, topic, payload_bytes > 0 FROM dead_letters")
    assert len(reasons) == 1
    reason, topic, has_payload = reasons[0]
    assert reason.startswith("refused by the database:")
    assert "dba_rule" in reason, reason  # PostgreSQL's own words, naming the constraint
    assert topic.endswith("/data")
    assert has_payload


@pytest.mark.slow
def test_a_retired_server_drains_its_queued_share_and_leaves_the_group(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    prepare(db)
    a = start_server(db, broker, tmp_path, "ingest-a")
    b = start_server(db, broker, tmp_path, "ingest-b")
    b.send_signal(signal.SIGTERM)  # a clean stop: its session, and its share, stay
    assert b.wait(30) == 0
    try:
        pub = GatewayPublisher(broker)
        try:
            for i, samples in enumerate(synthetic_batches(100, 5, t0=NOW - 600), 1):
                pub.publish("data", batch(i, samples))
            time.sleep(3)
            held = 100 - dump(db, "SELECT count(*) FROM batches")[0][0]
            assert held > 10, "the broker queues the stopped server's share for it"
            b = start_server(db, broker, tmp_path, "ingest-b", "--retire")
            assert b.wait(60) == 0, "a retiring server exits once drained"
            assert dump(db, "SELECT count(*) FROM batches") == [(100,)]
            for i, samples in enumerate(synthetic_batches(20, 5, t0=NOW - 300), 101):
                pub.publish("data", batch(i, samples))
        finally:
            pub.close()
        # the retired session is gone: the remaining server gets everything
        wait_until(lambda: dump(db, "SELECT count(*) FROM batches") == [(120,)], 15, "all")
    finally:
        a.send_signal(signal.SIGTERM)
        a.wait(30)
    assert "retired ingest-b" in (tmp_path / "ingest-b.log").read_text()


@pytest.mark.slow
def test_the_broker_restarting_under_the_server_loses_nothing(db: str, tmp_path: Path) -> None:
    prepare(db)
    broker = start_broker(tmp_path / "persistent", persistence=True)
    try:
        with running_consumer(db, broker) as consumer:
            streamer = Streamer(broker, rate_hz=50)
            streamer.start()
            wait_until(lambda: stored(db) > 500, 15, "samples flowing")
            streamer.halt.set()
            streamer.join(10)
            first = streamer.sent
            broker.stop()
            broker = start_broker(tmp_path / "persistent", port=broker.port, persistence=True)
            wait_until(consumer.connected.is_set, 30, "the server to reconnect")
            pub = GatewayPublisher(broker)
            try:
                t0 = NOW - 7200
                for seq in range(first + 1, first + 51):
                    pub.publish("data", batch(seq, synthetic_batches(1, 50, t0=t0 + seq)[0]))
            finally:
                pub.close()
            wait_until(lambda: stored(db) == (first + 50) * 50, 30, "every sample")
        assert consumer.counters.connects >= 2
        n = first + 50
        assert dump(db, "SELECT count(*), count(DISTINCT seq) FROM batches") == [(n, n)]
    finally:
        broker.stop()


def test_a_database_that_refuses_every_write_holds_messages_until_it_is_fixed(
    db: str, broker: Broker
) -> None:
    prepare(db)
    with login_role(
        db,
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
        "REVOKE INSERT ON samples, dead_letters FROM {role}",
    ) as as_role:
        role = conninfo_to_dict(as_role)["user"]
        with running_consumer(as_role, broker) as consumer:
            pub = GatewayPublisher(broker)
            try:
                pub.publish("data", batch(1, [s("em-1", "energy_kwh", NOW, 1.0)]))
                wait_until(lambda: consumer.counters.db_errors >= 1, 15, "a refused write")
                assert stored(db) == 0
                assert dump(db, "SELECT count(*) FROM dead_letters") == [(0,)]
                with psycopg.connect(db, autocommit=True) as conn:
                    conn.execute(f"GRANT INSERT ON samples, dead_letters TO {role}")
                wait_until(lambda: stored(db) == 1, 30, "the held message, once writable")
            finally:
                pub.close()
        assert dump(db, "SELECT count(*) FROM dead_letters") == [(0,)]


def test_a_test_role_logs_in_to_a_server_that_asks_for_passwords() -> None:
    """FE_TEST_DSN may name a server that authenticates roles by password (a real
    TimescaleDB), not by trust as the embedded one does: a role a test creates must have
    a password, and its DSN must carry it."""
    with own_postgres({"fsync": "off"}, hba=PASSWORD_HBA) as pg:
        admin = pg.dsn("postgres")
        with login_role(admin) as as_role:
            params = conninfo_to_dict(as_role)
            with psycopg.connect(as_role) as conn:
                assert conn.execute("SELECT current_user").fetchone() == (params["user"],)
            # the server really asks: without the password the same role is refused
            params.pop("password", None)
            with pytest.raises(psycopg.OperationalError, match="password"):
                psycopg.connect(make_conninfo(**params), connect_timeout=10).close()


def test_a_batch_the_database_would_refuse_gets_one_dead_letter_with_its_true_reason(
    db: str, broker: Broker
) -> None:
    """Each bad batch alone in its group (published one at a time): before, PostgreSQL
    refused them with its own words, or a batch whose every sample was set aside by the
    clock check wrote a second, misleading letter ("query has 11 placeholders")."""
    prepare(db)
    ms = round(NOW * 1000)

    def raw(seq: int, **sample: object) -> bytes:
        one = {"d": "em-1", "t": "energy_kwh", "ts": ms, "v": 1.0} | sample
        body = {"v": 1, "gw": GW, "boot": 1, "seq": seq, "sent": ms, "samples": [one]}
        return sign(json.dumps(body, separators=(",", ":")).encode(), KEY)

    year_3000 = 32_503_680_000_000
    cases = [
        (raw(2**63), "schema: seq: Input should be less than or equal to 9223372036854775807"),
        (raw(2, ts=2**64), "schema: samples[0].ts: 18446744073709551616 is not a time"),
        (raw(3, d="em\x001"), "schema: samples[0].d: 'em\\x001' is not an id"),
        (raw(4, v="RUN\x00"), "schema: samples[0].v: contains a NUL character (U+0000)"),
        (raw(5, v="x" * 12_000), "schema: samples[0].v: a string of 12000 bytes (UTF-8)"),
        (raw(6, t="t" * 129), "(131 characters) is not an id: 1 to 128"),
        (raw(7, v=10**400), "schema: samples[0].v: not a finite number"),
        # within the schema, but not a plausible time: set aside, the batch recorded
        (raw(8, ts=year_3000), "1 sample(s) of batch 1/8: sample time 32503680000000 ms"),
    ]
    with running_consumer(db, broker) as consumer:
        pub = GatewayPublisher(broker)
        try:
            for i, (payload, _) in enumerate(cases, 1):
                pub.publish("data", payload)
                wait_until(lambda: consumer.counters.commits >= i, 10, f"case {i} written")  # noqa: B023
            pub.publish("data", batch(9, [s("em-1", "energy_kwh", NOW, 7.0)]))
            wait_until(lambda: stored(db) == 1, 10, "the good batch after them")
        finally:
            pub.close()
    reasons = [r for (r,) in dump(db, "SELECT reason FROM dead_letters ORDER BY id")]
    assert len(reasons) == len(cases), reasons
    for (_, reason), got in zip(cases, reasons, strict=True):
        assert reason in got, (reason, got)
    assert dump(db, "SELECT value FROM samples") == [(7.0,)]
    assert dump(db, "SELECT seq, samples, rejected FROM batches ORDER BY seq") == [
        (8, 0, 1),
        (9, 1, 0),
    ]


def test_the_inbound_queue_is_bounded_and_counts_what_found_it_full() -> None:
    """A broker that sends beyond Receive Maximum cannot grow the queue without bound:
    QoS 0 messages are dropped and counted, QoS 1 messages wait for room (nothing lost)."""
    consumer = Consumer(ConsumerConfig(receive_maximum=1))
    room = consumer._queue.maxsize
    assert 0 < room < 1000

    def message(qos: int, n: int) -> mqtt.MQTTMessage:
        msg = mqtt.MQTTMessage(mid=n, topic=b"fe/v1/e/s/g/data")
        msg.qos, msg.payload = qos, b"{}"
        return msg

    for n in range(room):
        consumer._on_message(None, None, message(1, n))
    consumer._on_message(None, None, message(0, room))
    assert (consumer.counters.inbound_full, consumer.counters.inbound_dropped) == (1, 1)
    assert consumer._queue.qsize() == room
    waiting = threading.Thread(target=consumer._on_message, args=(None, None, message(1, 999)))
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive(), "a QoS 1 message must wait for room, not be dropped"
    assert consumer._queue.get_nowait().mid == 0
    waiting.join(5)
    assert not waiting.is_alive()
    assert (consumer.counters.inbound_full, consumer.counters.inbound_dropped) == (2, 1)
    assert [consumer._queue.get_nowait().mid for _ in range(room)][-1] == 999
