"""MQTT side of the agent: one paho-mqtt (MQTT 5) client bridged to asyncio.

    Delivery --publish(topic, payload)--> MqttSink --paho thread--> broker
    broker --PUBACK(mid)--> paho thread --call_soon_threadsafe--> future resolved

paho runs its network loop in its own thread; every callback is handed to the event loop
with ``call_soon_threadsafe`` and the pending acknowledgements are futures keyed by
message id (the aiomqtt pattern). paho keeps an unacknowledged QoS 1 message and resends
it after a reconnect, so a future stays pending across an outage and resolves when the
broker finally acknowledges; the Delivery bounds how many are in flight, so paho's own
queue never grows past that. On connect the sink publishes the retained birth and
``online`` status; the Will publishes ``offline`` if the agent vanishes.

Contract 2: on every (re)connection, before the birth and any data, the sink subscribes
(QoS 1) to the gateway's own ``ack`` topic, where the server says which batches it has
stored; each message goes to ``on_ack`` on the event loop (the Delivery parses it).
Messages are signed by ``encode``: HMAC JSON for contract 1, Ed25519 for contract 2.
A contract-2 status also declares the batches the outbox dropped (``dropped``, set by the
agent; docs/mqtt.md): signed by the gateway, so that the server's ledger can tell that
loss from batches deleted on the server; `announce` publishes it again after a new drop.

Errors: `PublishRefusedError` (the broker answered PUBACK with a failure reason code, e.g.
not authorised) resolves the future; nothing else does.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.config import AgentConfig
from edge_agent.contract.secrets import read_secret
from edge_agent.contract.topics import ack_topic, topic

logger = logging.getLogger(__name__)


class PublishRefusedError(Exception):
    """The broker refused a publish (PUBACK reason code >= 0x80)."""


Encode = Callable[[dict[str, Any]], bytes]


class MqttSink:
    def __init__(
        self,
        config: AgentConfig,
        *,
        encode: Encode,
        boot: int,
        birth: bytes,
        dropped: list[list[Any]] | None = None,
    ) -> None:
        self.config = config
        self.encode = encode
        self.boot = boot
        self.birth = birth
        self.prefix = config.topic_prefix
        self.server_acks = config.gateway.contract == 2
        # the outbox's newest dropped ranges, [boot, first, last, reason, ts_ms] (contract
        # 2): replaced whole by the agent, read by the paho thread at each connection
        self.dropped: list[list[Any]] = dropped or []
        self.announced: list[list[Any]] = []  # what the last online status declared
        self.on_ack: Callable[[bytes], None] | None = None
        self.connected = asyncio.Event()
        self.connects = 0
        self.disconnects = 0
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._client = self._make_client()
        self._last_error = ""
        self._stopping = False

    def _status(self, state: str, **extra: Any) -> bytes:
        body = {"gw": self.config.gateway.id, "boot": self.boot, "state": state, **extra}
        dropped = self.dropped
        if self.server_acks and dropped:  # a v1 status has no such member
            body["dropped"] = dropped
        if state == "online":
            self.announced = dropped
        return self.encode(body)

    def _make_client(self) -> mqtt.Client:
        cfg = self.config.mqtt
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5,
        )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.reconnect_delay_set(round(cfg.reconnect_min_s) or 1, round(cfg.reconnect_max_s))
        if cfg.username is not None:
            password = None
            if cfg.password_file is not None:
                password = read_secret(cfg.password_file, "MQTT password").decode()
            client.username_pw_set(cfg.username, password)
        if cfg.uses_tls:
            tls = cfg.tls
            context = ssl.create_default_context(
                cafile=str(tls.ca_file) if tls and tls.ca_file else None
            )
            if tls and tls.cert_file and tls.key_file:
                context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
            client.tls_set_context(context)
        client.will_set(topic(self.prefix, "status"), self._status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # --- paho thread -> event loop ------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._to_loop(self._refused, str(reason))
            return
        if self.server_acks:
            # before any data: an ack for a batch published before the subscription
            # would be lost (and the batch re-sent after mqtt.ack_timeout_s)
            client.subscribe(ack_topic(self.prefix), qos=1)
        # Birth and status go out first on every (re)connection, before any data.
        client.publish(topic(self.prefix, "birth"), self.birth, qos=1, retain=True)
        client.publish(
            topic(self.prefix, "status"),
            self._status("online", ts=round(time.time() * 1000)),
            qos=1,
            retain=True,
        )
        self._to_loop(self._up)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: Any,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._to_loop(self._down, str(reason))

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        mid: int,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        self._to_loop(self._acked, mid, reason.is_failure, str(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == ack_topic(self.prefix):
            self._to_loop(self._ack, bytes(msg.payload))

    def _ack(self, payload: bytes) -> None:
        if self.on_ack is not None:
            self.on_ack(payload)

    def _to_loop(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: the agent is gone, nobody waits
            logger.debug("MQTT event after the event loop closed: %s", callback.__name__)

    def _up(self) -> None:
        self.connects += 1
        self._last_error = ""
        if self.connects > 1:
            logger.info(
                "MQTT reconnected to %s (connection %d)", self.config.mqtt.url, self.connects
            )
        else:
            logger.info("MQTT connected to %s", self.config.mqtt.url)
        self.connected.set()

    def _down(self, reason: str) -> None:
        if self.connected.is_set() and not self._stopping:
            self.disconnects += 1
            logger.warning(
                "MQTT connection to %s lost (%s); %d publish(es) wait for the broker",
                self.config.mqtt.url,
                reason,
                len(self._pending),
            )
        self.connected.clear()

    def _refused(self, reason: str) -> None:
        if reason != self._last_error:
            logger.error(
                "MQTT broker %s refused the connection: %s; check mqtt.username, "
                "mqtt.password_file and the broker's ACL",
                self.config.mqtt.url,
                reason,
            )
            self._last_error = reason

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None or fut.done():
            return
        if failed:
            fut.set_exception(PublishRefusedError(reason))
        else:
            fut.set_result(None)

    # --- API ----------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config.mqtt
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive_s)
        self._client.loop_start()

    def publish(self, kind: str, payload: bytes, *, qos: int = 1) -> asyncio.Future[None]:
        """Publish on the gateway's topic `kind`; the future resolves on PUBACK (QoS 1)."""
        fut: asyncio.Future[None] = self._loop.create_future()
        info = self._client.publish(topic(self.prefix, kind), payload, qos=qos)
        if qos == 0:
            fut.set_result(None)
            return fut
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            fut.set_exception(PublishRefusedError(mqtt.error_string(info.rc)))
            return fut
        # queued by paho; sent now or after the next (re)connect
        self._pending[info.mid] = fut
        return fut

    def announce(self) -> bool:
        """Publish a fresh online status (retained) when connected and `dropped` says more
        than the last one did: a drop is declared soon, not at the next connection only.
        Returns whether it published."""
        if not self.connected.is_set() or self.dropped == self.announced:
            return False
        self._client.publish(
            topic(self.prefix, "status"),
            self._status("online", ts=round(time.time() * 1000)),
            qos=1,
            retain=True,
        )
        return True

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Say offline (retained), wait for what is in flight, disconnect."""
        self._stopping = True
        client = self._client
        if self.connected.is_set():
            info = client.publish(
                topic(self.prefix, "status"),
                self._status("offline", ts=round(time.time() * 1000)),
                qos=1,
                retain=True,
            )
            deadline = time.monotonic() + timeout_s
            # paho offers no awaitable for "everything acknowledged": look every 20 ms
            while (self._pending or not info.is_published()) and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
