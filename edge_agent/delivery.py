"""From the outbox to the broker: live batches first, the backlog at a bounded rate.

    Agent._seal (Backfill._seal) --append--> Outbox, then --sealed(key)--> Delivery
    contract 1: Delivery --newest/pending--> MqttSink.publish --PUBACK--> Outbox.delete
    contract 2: ... --PUBACK--> Outbox.mark_sent; server --ack--> Outbox.remove

Contract 1: a batch leaves the outbox once the broker acknowledged it (PUBACK).
Contract 2: the broker's PUBACK only makes it *sent*; it leaves the outbox when the
server's ack (contract/ack.py) lists it as stored, or as dead-lettered for its content
(logged as an error, counted: resending it would change nothing). A broker that
accepted a batch may still lose it before the server stores it (a broker restart
without persistence, a server down for longer than the broker queues), so a sent batch
with no ack is due again after ``mqtt.ack_timeout_s``, then after twice as long each
time up to ``mqtt.ack_backoff_max_s``; due batches drain with the backlog, oldest first,
at its rate. A new connection makes every sent batch due at once. Either way a crash at
any point republishes a batch at worst (the server drops the replay by ``(gw, boot,
seq)``).
Batches sealed since the current MQTT connection came up are *live* and go out at once;
older ones are the *backlog* of an outage and drain oldest first at
``backlog_batches_per_s``, so a long outage does not flood a 4G link or the broker while
live data keeps flowing. At most ``max_inflight`` batches wait for a PUBACK. A Delivery
without a live lane (``live=False``: a backfill of past data) drains everything as
backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time

from edge_agent.contract.ack import AckError, parse_ack
from edge_agent.outbox import Outbox, StoredBatch
from edge_agent.publisher import MqttSink, PublishRefusedError
from edge_agent.through import through

logger = logging.getLogger(__name__)

Key = tuple[int, int]


class Delivery:
    def __init__(
        self,
        outbox: Outbox,
        sink: MqttSink,
        *,
        max_inflight: int,
        backlog_per_s: float,
        next_key: Key,
        live: bool = True,
        server_acks: bool = False,
        ack_timeout_s: float = 30.0,
        ack_backoff_max_s: float = 300.0,
    ) -> None:
        """server_acks: contract 2, keep a batch until the server's ack lists it."""
        self.outbox = outbox
        self.sink = sink
        self.server_acks = server_acks
        self.ack_timeout_s = ack_timeout_s
        self.ack_backoff_max_s = ack_backoff_max_s
        self._acks: list[bytes] = []
        if server_acks:
            sink.on_ack = self._ack_arrived
        self.max_inflight = max_inflight
        self.backlog_per_s = backlog_per_s
        self.live = live
        self._live_since: Key = next_key
        self._next_key = next_key
        self._inflight: dict[Key, asyncio.Future[None]] = {}
        self._samples: dict[Key, int] = {}
        self._paused_until = 0.0  # after a refusal, do not hammer the broker
        self._wake = asyncio.Event()
        self._acked_event = asyncio.Event()
        self._tokens = 1.0
        self._tokens_at = time.monotonic()
        self._seen_connects = 0
        self._refused_logged = False
        self.published = 0
        self.acked = 0  # batches gone from the outbox: PUBACK (contract 1), stored (2)
        self.acked_samples = 0
        self.refused = 0
        self.resent = 0  # contract 2: published again for want of the server's ack
        self.dead_lettered = 0  # contract 2: refused by the server for their content

    def sealed(self, key: Key) -> None:
        """A batch was appended to the outbox: publish it soon."""
        self._next_key = (key[0], key[1] + 1)
        self._wake.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def run(self) -> None:
        while True:
            await self.sink.connected.wait()
            if self.sink.connects != self._seen_connects:
                # a new connection: what was sealed before it is backlog
                self._seen_connects = self.sink.connects
                self._live_since = self._next_key
                if self.server_acks:
                    due = await through(asyncio.to_thread(self.outbox.resend_all))
                    if due:
                        logger.info(
                            "new MQTT connection: %d batch(es) the server has not acked are "
                            "due again",
                            due,
                        )
            await self._fill()
            await self._settle(wait_s=0.25)

    async def _fill(self) -> None:
        free = self.max_inflight - len(self._inflight)
        if free <= 0 or time.monotonic() < self._paused_until:
            return
        if self.live:
            live = await asyncio.to_thread(
                self.outbox.newest, free, since=self._live_since, exclude=set(self._inflight)
            )
            for batch in live:
                self._publish(batch)
            free -= len(live)
        budget = min(free, self._take_tokens())
        if budget <= 0:
            return
        now, horizon = time.time(), math.inf
        if self.server_acks:
            horizon = now + self.ack_backoff_max_s
        backlog = await asyncio.to_thread(
            self.outbox.pending, budget, exclude=set(self._inflight), now=now, horizon=horizon
        )
        for batch in backlog:
            self._publish(batch)
            self.resent += batch.resend
        self._tokens -= sum(1 for b in backlog if b.resend or not self._is_live((b.boot, b.seq)))

    def _is_live(self, key: Key) -> bool:
        return self.live and key >= self._live_since

    def _take_tokens(self) -> int:
        if self.backlog_per_s == float("inf"):
            return self.max_inflight
        now = time.monotonic()
        cap = max(1.0, self.backlog_per_s)
        self._tokens = min(cap, self._tokens + (now - self._tokens_at) * self.backlog_per_s)
        self._tokens_at = now
        return int(self._tokens)

    def _publish(self, batch: StoredBatch) -> None:
        key = (batch.boot, batch.seq)
        fut = self.sink.publish("data", batch.payload)
        fut.add_done_callback(lambda _f: self._wake.set())
        self._inflight[key] = fut
        self._samples[key] = batch.samples
        self.published += 1

    def _ack_arrived(self, payload: bytes) -> None:
        self._acks.append(payload)
        self._wake.set()

    async def _settle(self, wait_s: float) -> None:
        """Wait for an ack, a new batch or a tick; delete what the broker acknowledged
        (contract 1), or mark it sent and delete what the server acknowledged (2)."""
        if not self._acks and not any(f.done() for f in self._inflight.values()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await self._wake.wait()
        self._wake.clear()
        done = [k for k, f in self._inflight.items() if f.done()]
        acked: list[Key] = []
        for key in done:
            fut = self._inflight.pop(key)
            samples = self._samples.pop(key, 0)
            if fut.cancelled():
                continue
            exc = fut.exception()
            if exc is None:
                acked.append(key)
                self.acked_samples += samples
            elif isinstance(exc, PublishRefusedError):
                self.refused += 1
                self._paused_until = time.monotonic() + 5.0
                if not self._refused_logged:
                    logger.error(
                        "the broker refused batch %s: %s; it stays in the outbox and is retried "
                        "(check the broker ACL for this gateway's topics)",
                        key,
                        exc,
                    )
                    self._refused_logged = True
        if acked:
            self._refused_logged = False
            await through(self._broker_acked(acked))
        if self._acks:
            await through(self._server_acked())

    async def _broker_acked(self, acked: list[Key]) -> None:
        """The broker has these: sent, awaiting the server's ack (contract 2), or gone from
        the outbox (contract 1). Seen through when the agent stops (edge_agent/through.py):
        the keys are already out of _inflight."""
        if self.server_acks:
            await asyncio.to_thread(
                self.outbox.mark_sent,
                acked,
                now=time.time(),
                timeout_s=self.ack_timeout_s,
                backoff_max_s=self.ack_backoff_max_s,
            )
        else:
            await asyncio.to_thread(self.outbox.delete, acked)
            self.acked += len(acked)  # counted once gone from the outbox
            self._acked_event.set()

    async def _server_acked(self) -> None:
        """The server's acks: their batches leave the outbox. Seen through when the agent
        stops (edge_agent/through.py): the acks are taken from the queue first."""
        payloads, self._acks = self._acks, []
        keys: list[Key] = []
        dead: dict[Key, str] = {}
        for payload in payloads:
            try:
                ack = parse_ack(payload)
            except AckError as exc:
                logger.warning(
                    "ignored a message on %s that is not an ack (%s): %.200r",
                    f"{self.sink.prefix}/ack",
                    exc,
                    payload,
                )
                continue
            keys.extend(ack.keys())
            dead.update(((boot, seq), reason) for boot, seq, reason in ack.dead)
        if not keys:
            return
        gone = await asyncio.to_thread(self.outbox.remove, keys)
        for key, samples in gone.items():
            reason = dead.get(key)
            if reason is None:
                self.acked += 1
                self.acked_samples += samples
                continue
            self.dead_lettered += 1
            logger.error(
                "the server refused batch %d/%d (%d samples) and dead-lettered it: %s; "
                "deleted from the outbox, since sending it again would change nothing",
                key[0],
                key[1],
                samples,
                reason,
            )
        if gone:
            self._acked_event.set()

    async def wait_acked(self, beyond: int, timeout_s: float) -> bool:
        """Wait until more than `beyond` batches have been acknowledged (and deleted from
        the outbox) in all; False if timeout_s passed first."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while self.acked <= beyond:
                    self._acked_event.clear()
                    await self._acked_event.wait()
        return self.acked > beyond

    async def flush(self, timeout_s: float) -> int:
        """On shutdown (run() cancelled): for up to timeout_s, publish what the outbox
        holds, backlog included and unthrottled, and collect the acknowledgements (with
        contract 2 the server's too). Returns the batches still unacknowledged, in
        flight or sent; the rest of the outbox waits for the next start."""
        deadline = time.monotonic() + timeout_s
        self.backlog_per_s = float("inf")
        unacked = 0
        while time.monotonic() < deadline:
            if self.sink.connected.is_set():
                await self._fill()
            if self.server_acks:
                unacked = (await asyncio.to_thread(self.outbox.stats)).sent
            if not self._inflight and not unacked:
                break
            await self._settle(wait_s=min(0.1, max(0.0, deadline - time.monotonic())))
        return len(self._inflight) + unacked
