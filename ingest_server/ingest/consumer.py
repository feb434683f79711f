"""The MQTT consumer: receive, validate, write, and only then acknowledge.

    paho network thread --on_message--> queue --writer thread--> validate -> Store.write
                                                     |                            | commit
                                                     '<-------- PUBACK -----------'

Data and status arrive through the shared subscription `$share/<group>/fe/v1/+/+/+/data`
(and `/status`), so N servers split the load. Births come through a plain subscription:
the broker does not hand retained messages to shared subscriptions, and every server
needs every gateway's tags and roles; writing a birth twice changes nothing.

Acknowledgements are manual: a message is PUBACKed only after the transaction holding it
has committed. If the database goes away the writer keeps the group, reconnects with
backoff and writes it again; the broker holds back further messages once Receive Maximum
are unacknowledged, so nothing piles up in memory and nothing is lost. If the server
dies, the broker redelivers the unacknowledged messages to the same session (clean
start off, session expiry on) or, for the shared group, to the other servers; repeats
are removed by `(gateway, boot, seq)` and the sample key.

Nothing a gateway sends can stop the writer: every message is either written or
dead-lettered with the reason, and counted.

After the commit (and the PUBACKs) the server tells each gateway, on its `ack` topic
(contract v2, edge_agent/contract/ack.py), which of its batches the database now holds
and which it dead-lettered for their content. Acks are best effort: queued in paho
without waiting (a bounded queue; one that finds it full is dropped and counted), since a
lost ack only makes the agent send the batch again, which is stored once.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import queue
import random
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edge_agent.contract import topics
from edge_agent.contract.ack import encode_ack
from edge_agent.contract.backoff import Backoff
from edge_agent.contract.wire_v2 import DEFAULT_MAX_BYTES_DECOMPRESSED, DEFAULT_MAX_SAMPLES
from ingest_server.ingest.check import DeadLetter, Group, Limits, check
from ingest_server.ingest.gateway_keys import GatewayDirectory
from ingest_server.ingest.payload_v2 import BatchV2
from ingest_server.ingest.store import Store, WriteResult

log = logging.getLogger(__name__)

DAY_MS = 86_400_000
# SQLSTATE class 40: the transaction lost to another one; write it again at once
_RETRY_NOW = (
    psycopg.errors.TransactionRollback,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)


@dataclass
class ConsumerConfig:
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    dsn: str = ""
    client_id: str = "ingest-1"
    share_group: str = "ingest"
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    # the session (and the messages queued for it) outlives a disconnection this long
    session_expiry_s: int = 7 * 86_400
    receive_maximum: int = 200
    group_max_samples: int = 50_000
    group_max_delay_s: float = 0.2
    max_payload_bytes: int = 4 * 1024 * 1024
    # v2 batches: samples in one, and bytes a compressed body may inflate to
    max_batch_samples: int = DEFAULT_MAX_SAMPLES
    max_bytes_decompressed: int = DEFAULT_MAX_BYTES_DECOMPRESSED
    # acks waiting in paho to be sent; one more is dropped (the agent sends again)
    max_queued_acks: int = 1000
    # sample times: a backlog can be old (outbox max age), a future time is a clock error
    max_past_ms: int = 400 * DAY_MS
    max_future_ms: int = 5 * 60_000
    db_retry_min_s: float = 0.5
    db_retry_max_s: float = 30.0
    mode: str = "plain"
    # leave the share group, drain this session's queue, then end the session
    retire: bool = False


@dataclass
class Counters:
    messages: int = 0
    batches_new: int = 0
    batches_repeated: int = 0
    batches_v2: int = 0  # new batches of contract v2
    samples_new: int = 0
    samples_repeated: int = 0
    dead_letters: int = 0
    births: int = 0
    statuses: int = 0
    commits: int = 0
    db_errors: int = 0
    connects: int = 0
    # messages that found the inbound queue full (the broker sent beyond Receive Maximum):
    # QoS 0 ones dropped, QoS 1 ones waited for room (held unacknowledged meanwhile)
    inbound_full: int = 0
    inbound_dropped: int = 0
    # acks published (one per gateway per group), and dropped with paho's queue full
    acks_published: int = 0
    acks_dropped: int = 0
    last_error: str | None = None
    # time span of samples written since the last `take_written_span()`
    written_first: datetime | None = None
    written_last: datetime | None = None

    def add(self, r: WriteResult) -> None:
        if r.first is not None and r.last is not None:
            self.written_first = min(r.first, self.written_first or r.first)
            self.written_last = max(r.last, self.written_last or r.last)
        self.batches_new += r.batches_new
        self.batches_repeated += r.batches_repeated
        self.batches_v2 += r.batches_v2
        self.samples_new += r.samples_new
        self.samples_repeated += r.samples_repeated
        self.dead_letters += r.dead_letters
        self.commits += 1

    def take_written_span(self) -> tuple[datetime, datetime] | None:
        first, last = self.written_first, self.written_last
        self.written_first = self.written_last = None
        return None if first is None or last is None else (first, last)


@dataclass
class _Inbound:  # what check() reads: topic, payload
    generation: int
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass
class Consumer:
    config: ConsumerConfig
    connect_db: Callable[[], psycopg.Connection] | None = None
    counters: Counters = field(default_factory=Counters)
    connected: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # inbound: paho's thread -> validator. Bounded by Receive Maximum, which the broker
        # may not exceed with unacknowledged QoS 1 messages (and we acknowledge only after
        # the commit); the slack covers QoS 0 messages, which it does not count
        self._queue: queue.Queue[_Inbound] = queue.Queue(self.config.receive_maximum + 64)
        self._stop = threading.Event()
        self._generation = 0
        self._lock = threading.Lock()
        self._received = self._acked = 0
        self._last_message = time.monotonic()
        self._client = self._make_client()
        # validate -> write: checking one group overlaps with the database writing the last
        self._validated: queue.Queue[tuple[list[_Inbound], Group] | None] = queue.Queue(2)
        self._validator = threading.Thread(
            target=self._validate_loop, name="ingest-validate", daemon=True
        )
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self._store: Store | None = None
        self._directory = GatewayDirectory(self._connect)
        cfg = self.config
        self._limits = Limits(
            cfg.max_payload_bytes, cfg.max_past_ms, cfg.max_future_ms,
            cfg.max_batch_samples, cfg.max_bytes_decompressed,
        )  # fmt: skip

    # --- MQTT --------------------------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if urlsplit(cfg.mqtt_url).scheme == "mqtts":
            context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            client.tls_set_context(context)
        client.reconnect_delay_set(1, 30)
        # acks are the only messages the server publishes: bound what waits in memory
        client.max_queued_messages_set(cfg.max_queued_acks)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def _on_connect(
        self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any
    ) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            self.counters.last_error = f"broker refused: {reason}"
            return
        with self._lock:
            self._generation += 1
        self.counters.connects += 1
        g = self.config.share_group
        filters = [
            f"$share/{g}/{topics.every_gateway('data')}",
            f"$share/{g}/{topics.every_gateway('status')}",
            topics.every_gateway("birth"),
        ]
        if self.config.retire:
            # leave the group: nothing new comes here; what the broker queued for this
            # session is still delivered, written and acknowledged, then the session ends
            client.unsubscribe(filters)
        else:
            client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        log.info(
            "connected to %s as %s (session %s)",
            self.config.mqtt_url,
            self.config.client_id,
            "resumed" if flags.session_present else "new",
        )
        self.connected.set()

    def _on_unsubscribe(self, _c: Any, _u: Any, _mid: int, _r: Any, _p: Any) -> None:
        log.info("retiring: left the share group; draining what the broker queued")
        self.subscribed.set()

    def _on_subscribe(
        self, _c: Any, _u: Any, _mid: int, reasons: list[ReasonCode], _p: Any
    ) -> None:
        bad = [str(r) for r in reasons if r.is_failure]
        if bad:
            log.error("subscription refused by the broker: %s (check its ACL)", ", ".join(bad))
            self.counters.last_error = "subscription refused: " + ", ".join(bad)
        else:
            self.subscribed.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop.is_set():
            log.warning("lost the MQTT broker (%s); reconnecting", reason)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._received += 1
            self._last_message = time.monotonic()
        item = _Inbound(self._generation, msg.topic, bytes(msg.payload), msg.mid, msg.qos)
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # a broker beyond its Receive Maximum: a QoS 0 message carries no promise and
            # is dropped; a QoS 1 message waits for room (paho's thread pauses reading, so
            # the broker is held back), never lost: it is acknowledged only once written
            self.counters.inbound_full += 1
            if msg.qos == 0:
                self.counters.inbound_dropped += 1
                log.warning("inbound queue full: dropped a QoS 0 message on %s", msg.topic)
                return
            self._queue.put(item)

    def start(self) -> None:
        parts = urlsplit(self.config.mqtt_url)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        # a group keeps tens of thousands of small objects alive: collect less often
        gc.set_threshold(50_000, 20, 100)
        self._validator.start()
        self._writer.start()
        self._client.connect_async(
            parts.hostname or "127.0.0.1",
            parts.port or (8883 if parts.scheme == "mqtts" else 1883),
            keepalive=30,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def drained(self, idle_s: float) -> bool:
        """Everything received is acknowledged and nothing came for `idle_s`."""
        with self._lock:
            quiet = time.monotonic() - self._last_message > idle_s
            return quiet and self._acked == self._received and self.subscribed.is_set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the group in hand, acknowledge it, disconnect (ending the broker session
        when retiring)."""
        self._stop.set()
        self._validator.join(timeout_s)
        self._writer.join(timeout_s)
        if self.config.retire:
            props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props)
        else:
            self._client.disconnect()
        self._client.loop_stop()
        self._directory.close()
        if self._store is not None:
            with contextlib.suppress(psycopg.Error):
                self._store.conn.close()

    # --- the writer thread -------------------------------------------------------------

    def _take(self) -> list[_Inbound]:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        taken = [first]
        samples = len(first.payload) // 60  # a rough count, to bound the group
        deadline = time.monotonic() + self.config.group_max_delay_s
        while samples < self.config.group_max_samples:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=max(remaining, 0))
                    if remaining > 0
                    else (self._queue.get_nowait())
                )
            except queue.Empty:
                break
            taken.append(item)
            samples += len(item.payload) // 60
        return taken

    def _connect(self) -> psycopg.Connection:
        if self.connect_db is not None:
            return self.connect_db()
        return psycopg.connect(self.config.dsn, connect_timeout=10)

    def _db(self) -> Store:
        if self._store is None or self._store.conn.closed:
            self._store = Store(self._connect(), self.config.mode)
        return self._store

    def _backoff(self) -> Backoff:
        return Backoff(self.config.db_retry_min_s, self.config.db_retry_max_s)

    def _validate_loop(self) -> None:
        backoff = self._backoff()
        while not self._stop.is_set() or not self._queue.empty():
            taken = self._take()
            if not taken:
                continue
            while True:
                try:
                    group = check(
                        taken, directory=self._directory, limits=self._limits,
                        now_ms=round(time.time() * 1000),
                    )  # fmt: skip
                    break
                except psycopg.OperationalError as exc:  # looking up a gateway's key
                    self._db_lost(exc, backoff.next())
            backoff.reset()
            self.counters.messages += len(taken)
            self.counters.births += len(group.births)
            self.counters.statuses += len(group.statuses)
            self._validated.put((taken, group))
        self._validated.put(None)

    def _write_loop(self) -> None:
        backoff = self._backoff()
        while True:
            item = self._validated.get()
            if item is None:
                break
            taken, group = item
            while True:
                try:
                    result = self._db().write(group)
                    break
                except _RETRY_NOW as exc:
                    # a deadlock or serialisation failure with another server: nothing is
                    # wrong with the database or the group; write it again
                    log.info("transaction rolled back (%s); writing the group again", exc)
                    self._sleep(random.uniform(0.04, 0.06))
                except psycopg.OperationalError as exc:
                    self._db_lost(exc, backoff.next())
                except Exception as exc:
                    # something in the group that passed the checks but that the database
                    # refuses (or that trips a bug): write the messages one by one and
                    # dead-letter the ones that fail, so one message cannot stall the rest
                    log.warning("writing a group failed (%s); writing it message by message", exc)
                    self._reset_db()
                    try:
                        result = self._write_singly(group)
                        break
                    except psycopg.OperationalError as lost:
                        self._db_lost(lost, backoff.next())
                    except Exception:
                        # not one message's fault (even a dead letter cannot be written:
                        # permissions, a bug): keep everything unacknowledged and retry
                        delay = backoff.next()
                        log.exception("the database refuses every write; retrying in %.1f s", delay)
                        self.counters.db_errors += 1
                        self._reset_db()
                        self._sleep(delay)
            backoff.reset()
            self.counters.add(result)
            self._ack(taken)
            self._publish_acks(result)

    def _write_singly(self, group: Group) -> WriteResult:
        total = WriteResult()
        parts: list[tuple[Group, Any]] = [(Group(dead=group.dead), None)]
        parts += [(Group(births=[b]), b[1]) for b in group.births]
        parts += [(Group(statuses=[st]), st[1]) for st in group.statuses]
        parts += [(Group(data=[d]), d.batch) for d in group.data]
        for part, message in parts:
            try:
                r = self._db().write(part)
            except psycopg.OperationalError:
                raise
            except Exception as exc:
                self._reset_db()
                topic, payload = group.raw.get(id(message), ("?", b""))
                reason = f"refused by the database: {str(exc).strip().splitlines()[0]}"
                log.warning("dead-lettering a message: %s", reason)
                ack = None
                if isinstance(message, BatchV2):  # a v2 gateway is told not to resend it
                    ack = (part.data[0].origin, message.boot, message.seq)
                dead = DeadLetter(topic, payload, reason, ack=ack, code="database_refused")
                r = self._db().write(Group(dead=[dead]))
            total.merge(r)
        return total

    def _db_lost(self, exc: Exception, delay: float) -> None:
        self.counters.db_errors += 1
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        self.counters.last_error = f"database: {first}"
        log.warning(
            "database unavailable (%s); %d message(s) held unacknowledged, retrying in %.1f s",
            first,
            self._queue.qsize(),
            delay,
        )
        self._reset_db()
        self._sleep(delay)

    def _reset_db(self) -> None:
        if self._store is not None:
            with contextlib.suppress(psycopg.Error):
                self._store.conn.close()
            self._store = None

    def _sleep(self, seconds: float) -> None:
        # the delays come from a Backoff, jittered already: N servers do not reconnect
        # in step
        time.sleep(seconds)

    def _publish_acks(self, result: WriteResult) -> None:
        """One ack per gateway: its batches now held, and those dead for their content.
        Never waits: paho sends it from its own thread (a full queue drops it)."""
        per: dict[str, tuple[list[tuple[int, int]], list[tuple[int, int, str]]]] = {}
        for origin, boot, seq in result.stored:
            p = topics.prefix(origin.enterprise, origin.site, origin.gateway)
            per.setdefault(p, ([], []))[0].append((boot, seq))
        for origin, boot, seq, reason in result.dead:
            p = topics.prefix(origin.enterprise, origin.site, origin.gateway)
            per.setdefault(p, ([], []))[1].append((boot, seq, reason))
        for p, (stored, dead) in per.items():
            info = self._client.publish(topics.ack_topic(p), encode_ack(stored, dead), qos=1)
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                self.counters.acks_dropped += 1
            else:  # sent, or queued until the connection is back
                self.counters.acks_published += 1

    def _ack(self, taken: list[_Inbound]) -> None:
        with self._lock:
            generation = self._generation
        for item in taken:
            # a message id is only valid on the connection it came on; after a reconnect
            # the broker redelivers the message, and the repeat is dropped
            if item.generation == generation:
                self._client.ack(item.mid, item.qos)
        with self._lock:
            self._acked += len(taken)
