"""The agent: sources in, batches out, one asyncio loop.

    Source (OpcUaSource / ModbusSource) --emit--> ExceptionFilter --> pending samples
        --seal (every batch_interval_s or batch_max_samples)--> Outbox (SQLite)
        --Delivery--> MqttSink --> broker

Start order follows Telegraf's: the outbox and the MQTT sink first, then the sources;
stop order is the reverse: sources first, then the last samples are sealed into the
outbox, then in-flight batches get a few seconds for their PUBACK. A seal under way when
the stop comes is finished first (`through`). What is in the outbox
when the agent stops (or dies) is published by the next start.

Contract 2 (``gateway.contract: 2``): each batch is signed with the gateway's own key and
chained to the one sealed before it (`Sealer`), births, status and metrics are signed
with the same key, and a batch stays in the outbox until the server acks it (Delivery).
What the outbox drops under its bounds is declared in the signed status (`dropped`, the
newest DECLARED_RANGES ranges), published again soon after each new drop
(DECLARE_EVERY_S at most): the ledger then reports that loss as the gateway's.

Every queue is bounded: pending samples at ``PENDING_BATCHES`` x ``batch_max_samples``
(drop oldest, counted: only reachable when the disk stalls), the outbox by bytes and age
(drop oldest, counted), the in-flight window by ``max_inflight``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from edge_agent import __version__
from edge_agent.config import AgentConfig
from edge_agent.contract.digest import ZERO
from edge_agent.contract.identity import FileSigner, KeyFileError, Signer
from edge_agent.contract.sample import Sample
from edge_agent.contract.secrets import ConfigError, read_secret
from edge_agent.contract.wire import (
    encode_batch,
    encode_message,
    encode_message_v2,
    fit_late,
    ms,
    sample_dicts,
)
from edge_agent.contract.wire_v2 import DEFAULT_LEVEL
from edge_agent.contract.wire_v2_encode import seal_batch_v2, split_samples
from edge_agent.delivery import Delivery
from edge_agent.outbox import Outbox, OutboxError
from edge_agent.publisher import MqttSink
from edge_agent.report import ExceptionFilter
from edge_agent.source import Source, Sources, birth_tags, device_tags
from edge_agent.through import through

logger = logging.getLogger(__name__)

PENDING_BATCHES = 20
EXPIRE_EVERY_S = 60.0  # the age bound is checked this often (a scan of the outbox)
DECLARED_RANGES = 100  # dropped ranges a status declares (the server takes at most 100)
# a status declaring new drops at most this often: an outbox full while the broker is up
# drops at each seal, and one retained status per batch interval would be noise
DECLARE_EVERY_S = 5.0


def birth_body(config: AgentConfig, boot: int) -> dict[str, Any]:
    """What the server must know to interpret the data: devices, tags, roles, units."""
    devices = [
        {"id": d.id, "protocol": d.protocol, "metadata": dict(d.metadata), "tags": birth_tags(d)}
        for d in config.devices
    ]
    return {
        "gw": config.gateway.id,
        "boot": boot,
        "agent": {"name": "factory-evidence edge-agent", "version": __version__},
        "sent": ms(time.time()),
        "devices": devices,
    }


def open_outbox(config: AgentConfig) -> Outbox:
    """The config's outbox (blocking: call it in a thread)."""
    o = config.outbox
    return Outbox(o.path, max_bytes=o.max_bytes, max_age_s=o.max_age_s, durability=o.durability)


Row = tuple[int, int, bytes, bytes | None]  # (seq, samples, payload, digest): Outbox.append_many


class Sealer:
    """Samples to signed payloads, by the config's contract.

    Contract 1: one HMAC-signed JSON batch. Contract 2: one compact batch signed with the
    gateway's key, whose ``prev`` is the digest of the batch sealed before it (the
    outbox's `last_digest` at start, so the chain runs across restarts); a batch over
    ``mqtt.batch_max_bytes`` is cut into several, each with its own seq, chained in
    turn. Sealing is pure: `sealed` moves the chain on once the rows are in the outbox.
    Blocking (a file to read): build it in a thread.
    """

    def __init__(self, config: AgentConfig, outbox: Outbox) -> None:
        self.gw = config.gateway.id
        self.contract = config.gateway.contract
        self.max_bytes = config.mqtt.batch_max_bytes
        self.level = DEFAULT_LEVEL if config.mqtt.compress == "zlib" else 0
        self.key = b""
        self.signer: Signer | None = None
        self.prev = ZERO
        if self.contract == 1:
            self.key = read_secret(config.hmac_key_file, "HMAC key")
            return
        key_file = config.gateway.key_file
        assert key_file is not None  # the config's validator requires it for contract 2
        try:
            self.signer = FileSigner.load(key_file)
        except KeyFileError as exc:
            raise ConfigError(str(key_file), [f"gateway.key_file: {exc}"]) from None
        self.prev = outbox.last_digest() or ZERO

    def message(self, body: dict[str, Any]) -> bytes:
        """A birth, status or metrics payload, signed by the contract's key."""
        if self.signer is not None:
            return encode_message_v2(body, self.signer)
        return encode_message(body, self.key)

    def seal(self, boot: int, seq: int, samples: Sequence[Sample]) -> list[Row]:
        """The outbox rows of these samples, the first with `seq`."""
        now = time.time()
        if self.signer is None:
            payload = encode_batch(
                gw=self.gw, boot=boot, seq=seq, sent=now, samples=samples, key=self.key
            )
            return [(seq, len(samples), payload, None)]
        dicts = sample_dicts(samples)
        sent = ms(now)
        try:
            payload, digest = self._seal(boot, seq, sent, self.prev, dicts)
        except ValueError:  # NaN, infinity, text that is not UTF-8: rare, so fitted late
            fit_late(dicts)
            payload, digest = self._seal(boot, seq, sent, self.prev, dicts)
        if len(payload) <= self.max_bytes:
            return [(seq, len(dicts), payload, digest)]
        rows: list[Row] = []
        prev = self.prev
        for chunk in split_samples(dicts, max_bytes=self.max_bytes, level=self.level):
            payload, prev = self._seal(boot, seq + len(rows), sent, prev, chunk)
            rows.append((seq + len(rows), len(chunk), payload, prev))
        return rows

    def _seal(
        self, boot: int, seq: int, sent: int, prev: bytes, dicts: Sequence[Mapping[str, Any]]
    ) -> tuple[bytes, bytes]:
        assert self.signer is not None
        return seal_batch_v2(
            self.signer,
            gw=self.gw,
            boot=boot,
            seq=seq,
            sent=sent,
            prev=prev,
            samples=dicts,
            level=self.level,
        )

    def sealed(self, rows: Sequence[Row]) -> None:
        """These rows are in the outbox: the next batch chains to the last of them."""
        digest = rows[-1][3]
        if digest is not None:
            self.prev = digest


def declared(outbox: Outbox) -> list[list[Any]]:
    """The outbox's dropped ranges as a v2 status declares them (blocking)."""
    return [r.wire() for r in outbox.dropped_ranges(DECLARED_RANGES)]


def uplink(
    config: AgentConfig,
    outbox: Outbox,
    *,
    sealer: Sealer,
    boot: int,
    live: bool = True,
    dropped: list[list[Any]] | None = None,
) -> tuple[MqttSink, Delivery]:
    """The MQTT sink, with the birth of this boot and (contract 2) the dropped ranges to
    declare (None: read from the outbox here, blocking), and the delivery from the
    outbox to it (started by the caller: ``sink.start()``, ``delivery.run()``)."""
    birth = sealer.message(birth_body(config, boot))
    if dropped is None and config.gateway.contract == 2:
        dropped = declared(outbox)
    sink = MqttSink(config, encode=sealer.message, boot=boot, birth=birth, dropped=dropped)
    m = config.mqtt
    delivery = Delivery(
        outbox,
        sink,
        max_inflight=m.max_inflight,
        backlog_per_s=m.backlog_batches_per_s,
        next_key=(boot, 1),
        live=live,
        server_acks=config.gateway.contract == 2,
        ack_timeout_s=m.ack_timeout_s,
        ack_backoff_max_s=m.ack_backoff_max_s,
    )
    return sink, delivery


def application_uri(config: AgentConfig) -> str:
    """The agent's OPC UA ApplicationUri; its certificate must carry it."""
    g = config.gateway
    return f"urn:factory-evidence:edge-agent:{g.enterprise}:{g.site}:{g.id}"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.filter = ExceptionFilter()
        self.sources: list[Source] = []
        self._pending: deque[Sample] = deque()
        self._pending_cap = PENDING_BATCHES * config.mqtt.batch_max_samples
        self._full = asyncio.Event()
        self.boot = 0
        self.seq = 0
        self.samples_in = 0
        self.samples_sealed = 0
        self.pending_dropped = 0
        self.outbox_dropped_batches = 0  # this run's, by the outbox's bounds
        self.started = time.time()
        self._outbox: Outbox | None = None
        self._outbox_failing = False
        self._expired_at = 0.0
        self._declared_at = -math.inf  # when a status last declared new drops (monotonic)
        self._delivery: Delivery | None = None
        self._sink: MqttSink | None = None
        for d in config.devices:
            beat = d.heartbeat_s or config.heartbeat_s
            for t in device_tags(d):
                hb = t.heartbeat_s or beat
                self.filter.configure(d.id, t.tag, deadband=t.deadband, heartbeat_s=hb)

    # --- sources -> pending -------------------------------------------------------------

    def emit(self, samples: list[Sample]) -> None:
        """Called by sources (synchronously, on the loop) with what they read."""
        now = time.time()
        offer = self.filter.offer
        self.samples_in += len(samples)
        kept = [s for s in samples if offer(s, now)]
        self._pending.extend(kept)
        over = len(self._pending) - self._pending_cap
        if over > 0:
            for _ in range(over):
                self._pending.popleft()
            self.pending_dropped += over
            logger.error(
                "the outbox cannot keep up: dropped the %d oldest unsealed samples (%d in all)",
                over,
                self.pending_dropped,
            )
        if len(self._pending) >= self.config.mqtt.batch_max_samples:
            self._full.set()

    def _build_sources(self) -> Sources:
        built = Sources(self.config, self.emit, application_uri=application_uri(self.config))
        for plan in built.plans:
            logger.info("read plan %s", plan)
        self.sources = built.sources
        return built

    # --- pending -> outbox --------------------------------------------------------------

    async def _seal(self, outbox: Outbox, delivery: Delivery, sealer: Sealer) -> None:
        """Seal what is pending into the outbox, batch by batch. Each batch is seen through
        (edge_agent/through.py) when the agent stops meanwhile: its samples are out of
        pending once it starts, and its seq and the chain move on only after it."""
        while self._pending:
            if not await through(self._seal_one(outbox, delivery, sealer)):
                return

    async def _seal_one(self, outbox: Outbox, delivery: Delivery, sealer: Sealer) -> bool:
        """One batch from the head of pending into the outbox; False if the outbox refused
        it (the samples are back in pending)."""
        n = min(len(self._pending), self.config.mqtt.batch_max_samples)
        if n == len(self._pending):
            batch = list(self._pending)
            self._pending.clear()
        else:
            batch = [self._pending.popleft() for _ in range(n)]
        try:
            rows, dropped, ranges = await asyncio.to_thread(
                self._seal_batch, outbox, sealer, self.seq + 1, batch
            )
        except OutboxError as exc:
            # a full or failing disk: keep the samples (pending is bounded), the seq
            # and the chain, and try again at the next interval
            self._pending.extendleft(reversed(batch))
            if not self._outbox_failing:
                logger.error("%s; samples wait in memory and are retried", exc)
                self._outbox_failing = True
            return False
        if self._outbox_failing:
            logger.info("the outbox accepts batches again")
            self._outbox_failing = False
        sealer.sealed(rows)
        self.seq = rows[-1][0]
        self.samples_sealed += n
        self.outbox_dropped_batches += len(dropped)
        self._dropped(ranges)
        delivery.sealed((self.boot, self.seq))
        return True

    def _seal_batch(
        self, outbox: Outbox, sealer: Sealer, seq: int, batch: list[Sample]
    ) -> tuple[list[Row], list[Any], list[list[Any]] | None]:
        """Sign and append (in a thread: both take a while for a big batch); after a drop
        (contract 2) also the ranges to declare now."""
        rows = sealer.seal(self.boot, seq, batch)
        dropped = outbox.append_many(self.boot, time.time(), rows)
        return rows, dropped, self._ranges_after(outbox, dropped)

    def _ranges_after(self, outbox: Outbox, dropped: list[Any]) -> list[list[Any]] | None:
        """The ranges to declare after a drop (blocking), None when nothing was dropped
        or the contract declares nothing."""
        if not dropped or self.config.gateway.contract != 2:
            return None
        return declared(outbox)

    def _dropped(self, ranges: list[list[Any]] | None) -> None:
        """Hand new ranges to the sink (every later status declares them) and publish a
        status now, unless one did less than DECLARE_EVERY_S ago (then the next seal or
        the next connection does)."""
        sink = self._sink
        if sink is None:
            return
        if ranges is not None:
            sink.dropped = ranges
        if time.monotonic() - self._declared_at >= DECLARE_EVERY_S and sink.announce():
            self._declared_at = time.monotonic()

    async def _sealer(self, outbox: Outbox, delivery: Delivery, sealer: Sealer) -> None:
        interval = self.config.mqtt.batch_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._full.wait()
            self._full.clear()
            beats = self.filter.heartbeats(time.time())
            if beats:
                self._pending.extend(beats)
            await self._seal(outbox, delivery, sealer)
            self._dropped(None)  # a status held back by DECLARE_EVERY_S goes out now
            if time.monotonic() - self._expired_at < EXPIRE_EVERY_S:
                continue
            self._expired_at = time.monotonic()
            expired = await asyncio.to_thread(self._expire, outbox)
            self.outbox_dropped_batches += len(expired[0])
            self._dropped(expired[1])

    def _expire(self, outbox: Outbox) -> tuple[list[Any], list[list[Any]] | None]:
        """The age bound (blocking): what it dropped, and the ranges to declare."""
        dropped = outbox.expire()
        return dropped, self._ranges_after(outbox, dropped)

    # --- metrics ------------------------------------------------------------------------

    def metrics_snapshot(self) -> dict[str, Any]:
        """The agent's counters now (while it runs; for tests and the metrics topic)."""
        assert self._outbox is not None
        assert self._delivery is not None
        assert self._sink is not None
        return self.metrics(self._outbox, self._delivery, self._sink)

    def metrics(self, outbox: Outbox, delivery: Delivery, sink: MqttSink) -> dict[str, Any]:
        stats = outbox.stats()
        now = time.time()
        oldest_sent = stats.oldest_sent
        return {
            "gw": self.config.gateway.id,
            "boot": self.boot,
            "ts": ms(now),
            "uptime_s": round(now - self.started, 1),
            "samples_read": self.samples_in,
            "samples_suppressed": self.filter.suppressed,
            "samples_sealed": self.samples_sealed,
            "samples_acked": delivery.acked_samples,
            "batches_published": delivery.published,
            "batches_acked": delivery.acked,
            "batches_refused": delivery.refused,
            "in_flight": delivery.in_flight,
            "outbox_batches": stats.batches,
            "outbox_bytes": stats.bytes,
            "outbox_oldest_age_s": (
                round(now - stats.oldest_created, 1) if stats.oldest_created else 0.0
            ),
            "dropped_samples": self.pending_dropped + stats.dropped_samples,
            "sent_unacked_batches": stats.sent,
            "sent_unacked_oldest_age_s": round(now - oldest_sent, 1) if oldest_sent else 0.0,
            "batches_resent": delivery.resent,
            "batches_dead_lettered": delivery.dead_lettered,
            "mqtt_connects": sink.connects,
            "mqtt_disconnects": sink.disconnects,
            "devices": {(s.device.id): s.stats() for s in self.sources},
        }

    async def _reporter(
        self, outbox: Outbox, delivery: Delivery, sink: MqttSink, sealer: Sealer
    ) -> None:
        while True:
            await asyncio.sleep(self.config.metrics_interval_s)
            m = await asyncio.to_thread(self.metrics, outbox, delivery, sink)
            offline = sorted(d for d, s in m["devices"].items() if not s["online"])
            logger.info(
                "metrics: read %d, sealed %d, acked %d, outbox %d batches (oldest %.0f s, "
                "%d sent and not acked by the server, oldest %.0f s), mqtt connects %d, "
                "offline devices %s",
                m["samples_read"],
                m["samples_sealed"],
                m["samples_acked"],
                m["outbox_batches"],
                m["outbox_oldest_age_s"],
                m["sent_unacked_batches"],
                m["sent_unacked_oldest_age_s"],
                m["mqtt_connects"],
                ", ".join(offline) or "none",
            )
            if sink.connected.is_set():
                sink.publish("metrics", sealer.message(m), qos=0)

    # --- lifecycle ----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        cfg = self.config
        outbox = await asyncio.to_thread(open_outbox, cfg)
        try:
            sealer = await asyncio.to_thread(Sealer, cfg, outbox)
            self.boot = await asyncio.to_thread(outbox.start_boot)
            stats = await asyncio.to_thread(outbox.stats)
            logger.info(
                "agent %s boot %d: %d device(s); outbox %s holds %d batch(es) to publish",
                cfg.gateway.id,
                self.boot,
                len(cfg.devices),
                cfg.outbox.path,
                stats.batches,
            )
            ranges = await asyncio.to_thread(declared, outbox) if cfg.gateway.contract == 2 else []
            sink, delivery = uplink(cfg, outbox, sealer=sealer, boot=self.boot, dropped=ranges)
            self._outbox, self._delivery, self._sink = outbox, delivery, sink
            await sink.start()
            service = [
                asyncio.create_task(delivery.run(), name="delivery"),
                asyncio.create_task(self._sealer(outbox, delivery, sealer), name="sealer"),
                asyncio.create_task(self._reporter(outbox, delivery, sink, sealer), name="metrics"),
            ]
            sources = self._build_sources()
            readers = [
                asyncio.create_task(s.run(), name=f"source:{s.device.id}") for s in self.sources
            ]
            if ready is not None:
                ready.set()
            await self._until(stop, service + readers)
            # stop sources first, then seal what they read, then give in-flight batches a chance
            await _cancel(readers)
            sources.close()
            await _cancel(service)
            await self._seal(outbox, delivery, sealer)
            left = await delivery.flush(timeout_s=5.0)
            await sink.stop()
            stats = await asyncio.to_thread(outbox.stats)
            logger.info(
                "agent stopped: %d batch(es) stay in the outbox for the next start (%d unacked)",
                stats.batches,
                left,
            )
        finally:
            await asyncio.to_thread(outbox.close)

    async def _until(self, stop: asyncio.Event, tasks: list[asyncio.Task[None]]) -> None:
        """Wait for stop; a task that dies is a bug: say so and stop."""
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for t in done:
            if t is not stopper and not t.cancelled() and t.exception() is not None:
                logger.error("task %s failed", t.get_name(), exc_info=t.exception())


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel and wait; cancel again what is still running.

    On Python 3.11 a wait_for inside a library (pymodbus waits for each response so) can
    swallow a cancellation that arrives as its future completes; the task then runs on.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    for t in tasks:
        if not t.cancelled() and t.exception() is not None:
            logger.error("task %s failed", t.get_name(), exc_info=t.exception())
