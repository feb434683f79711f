"""OPC UA collection: one session per device, kept alive by one supervisor loop.

    run(): connect -> resolve nodes -> read limits -> read all -> subscribe (or poll)
           -> online ... connection lost -> offline -> backoff with jitter -> again

Polling reads every node on a fixed schedule (`poll_schedule`): tick k at the session's
first read + k x poll_interval_s, so read time does not add up; a read that overruns
the period skips the ticks it missed and counts them (``skipped_polls``).

Everything a session holds is re-created on each pass: namespace indices (a restarted
server may number its namespaces differently, so configs use ``nsu=<uri>;...``), the
server's operation limits, the subscription and its monitored items. The requests are
split to fit ``MaxNodesPerRead`` and ``MaxMonitoredItemsPerCall``, so a server with low
limits works. Each value keeps its SourceTimestamp (the sample's ``ts``) and the gateway
time it arrived (``gw_ts``); its StatusCode becomes the quality, with the code's name.

A device is online while its session is up and at least one of its values is not bad: an
aggregating server (one endpoint for several machines) reports a lost machine as
BadNoCommunication, and that is offline too. The umati machine state is read from two
nodes (MachineryItemState and OperationMode, OPC 40501-1) and mapped by `umati`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import StatusChangeEvent, Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from asyncua.ua.uaerrors import UaError

from edge_agent.config import OpcUaDeviceConfig, OpcUaNodeConfig
from edge_agent.contract.backoff import Backoff
from edge_agent.contract.sample import Quality, Sample, status_sample
from edge_agent.contract.secrets import read_secret
from edge_agent.poll_schedule import PollSchedule
from edge_agent.umati import umati_state

logger = logging.getLogger(__name__)

Emit = Callable[[list[Sample]], None]
_CAPS = ua.ObjectIds
_MAX_NODES_PER_READ = _CAPS.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
_MAX_ITEMS_PER_CALL = _CAPS.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
_CHUNK_DEFAULT = 1000  # when a server states no limit, still keep messages moderate
_RANK = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_GOOD, _BAD = Quality.GOOD, Quality.BAD


class NodeResolveError(Exception):
    """A configured NodeId names a namespace the server does not have."""


@dataclass(slots=True)
class _Input:
    """One monitored node: a tag's own value, or the OperationMode half of a umati state."""

    tag: OpcUaNodeConfig
    node_id: ua.NodeId
    is_mode: bool = False
    value: Any = None
    quality: Quality = Quality.BAD
    ts: float = 0.0
    status: str | None = None
    server_ts: float | None = None
    simple: bool = True  # its value is the tag's value (no umati pair, no state_map)


@dataclass(slots=True)
class _Limits:
    read: int = _CHUNK_DEFAULT
    monitor: int = _CHUNK_DEFAULT
    raw: dict[str, int] = field(default_factory=dict)


def resolve_node_id(text: str, namespaces: list[str]) -> ua.NodeId:
    """``nsu=<uri>;s=x`` or ``ns=2;s=x`` to a NodeId with the server's current index."""
    if text.startswith("nsu="):
        uri, _, rest = text[4:].partition(";")
        try:
            index = namespaces.index(uri)
        except ValueError:
            raise NodeResolveError(f"namespace {uri!r} is not on this server") from None
        return ua.NodeId.from_string(f"ns={index};{rest}")
    return ua.NodeId.from_string(text)


def _quality(code: ua.StatusCode | None) -> Quality:
    if code is None or code.is_good():  # an absent StatusCode means Good (Part 4, 7.7.1)
        return Quality.GOOD
    if code.is_uncertain():
        return Quality.UNCERTAIN
    return Quality.BAD


def _plain(value: Any) -> float | str | None:
    if value is None:
        return None
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    return str(value)


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class OpcUaSource:
    def __init__(
        self,
        device: OpcUaDeviceConfig,
        emit: Emit,
        *,
        application_uri: str = "urn:factory-evidence:edge-agent",
    ) -> None:
        self.device = device
        # the URI in the agent's certificate must be this one (OPC UA Part 4, 5.6.2)
        self.application_uri = application_uri
        self.emit = emit
        self.online: bool | None = None
        self.sessions = 0
        self.values_read = 0
        self.read_errors = 0
        self.polls = 0  # polling mode: reads done on the schedule, each session's first too
        self.skipped_polls = 0  # polling mode: ticks a late read made the schedule skip
        self.limits = _Limits()
        self._inputs: dict[ua.NodeId, _Input] = {}
        self._pairs: dict[str, tuple[_Input, _Input | None]] = {}  # tag -> (value, mode)
        self._bad = 0  # inputs whose last quality is bad: all of them means offline
        self._lost = asyncio.Event()
        self._backoff = Backoff(device.reconnect_min_s, device.reconnect_max_s)
        self._last_error = ""

    # --- supervisor ---------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except NodeResolveError as exc:
                self._log_failure(f"{exc}; check the device's nodes in the config")
            except (OSError, TimeoutError, UaError, ConnectionError) as exc:
                name = type(exc).__name__
                self._log_failure(f"{name}: {exc}" if str(exc) else name)
            self._set_online(False)
            await asyncio.sleep(self._backoff.next())

    def _log_failure(self, text: str) -> None:
        self.read_errors += 1
        if text != self._last_error:
            logger.warning("%s (%s): %s", self.device.id, self.device.endpoint, text)
            self._last_error = text

    async def _client(self) -> Client:
        d = self.device
        client = Client(d.endpoint, timeout=d.timeout_s, watchdog_intervall=1.0)
        client.application_uri = self.application_uri
        client.name = client.description = "factory-evidence edge agent"
        if d.username is not None and d.password_file is not None:
            client.set_user(d.username)
            client.set_password(read_secret(d.password_file, "OPC UA password").decode())
        sec = d.security
        if sec.policy == "Basic256Sha256":
            assert sec.certificate is not None
            assert sec.private_key is not None
            mode = getattr(ua.MessageSecurityMode, sec.mode)
            await client.set_security(
                SecurityPolicyBasic256Sha256,
                str(sec.certificate),
                str(sec.private_key),
                server_certificate=str(sec.server_certificate) if sec.server_certificate else None,
                mode=mode,
            )
        return client

    async def _session(self) -> None:
        client = await self._client()
        self._lost.clear()

        async def lost(exc: Exception) -> None:
            self._lost.set()

        client.connection_lost_callback = lost
        async with asyncio.timeout(self.device.timeout_s * 2):
            await client.connect()
        try:
            self.sessions += 1
            await self._prepare(client)
            started = asyncio.get_running_loop().time()
            await self._read_all(client)
            if self.device.mode == "subscription":
                await self._subscribe_and_wait(client)
            else:
                await self._poll_until_lost(client, started)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.disconnect()

    async def _prepare(self, client: Client) -> None:
        namespaces = await client.get_namespace_array()
        self._inputs = {}
        self._pairs = {}
        for tag in self.device.nodes:
            nid = resolve_node_id(tag.node, namespaces)
            simple = tag.umati_operation_mode is None and not tag.state_map
            main = self._inputs[nid] = _Input(tag, nid, simple=simple)
            mode = None
            if tag.umati_operation_mode is not None:
                mid = resolve_node_id(tag.umati_operation_mode, namespaces)
                mode = self._inputs[mid] = _Input(tag, mid, is_mode=True, simple=False)
            self._pairs[tag.tag] = (main, mode)
        self._bad = len(self._inputs)  # nothing read yet
        self.limits = await self._read_limits(client)
        logger.info(
            "%s: session %d on %s, %d nodes, limits %s",
            self.device.id,
            self.sessions,
            self.device.endpoint,
            len(self._inputs),
            self.limits.raw or "none stated",
        )
        self._last_error = ""

    async def _read_limits(self, client: Client) -> _Limits:
        limits = _Limits()
        nodes = [client.get_node(ua.NodeId(n)) for n in (_MAX_NODES_PER_READ, _MAX_ITEMS_PER_CALL)]
        values = await client.read_attributes(nodes)
        for name, dv in zip(("MaxNodesPerRead", "MaxMonitoredItemsPerCall"), values, strict=True):
            good = _quality(dv.StatusCode) is Quality.GOOD
            v = dv.Value.Value if good and dv.Value is not None else None
            if isinstance(v, int) and v > 0:
                limits.raw[name] = v
        limits.read = limits.raw.get("MaxNodesPerRead", _CHUNK_DEFAULT)
        limits.monitor = limits.raw.get("MaxMonitoredItemsPerCall", _CHUNK_DEFAULT)
        return limits

    # --- reading ------------------------------------------------------------------------

    async def _read_all(self, client: Client) -> None:
        ids = list(self._inputs)
        for chunk in _chunks(ids, self.limits.read):
            values = await client.read_attributes([client.get_node(n) for n in chunk])
            inputs = self._inputs
            self._absorb((inputs.get(n), dv) for n, dv in zip(chunk, values, strict=True))

    async def _poll_until_lost(self, client: Client, started: float) -> None:
        """Read everything on a fixed schedule (`PollSchedule`): tick 0 is the session's
        first read, which began at `started` (loop time); a late read skips missed ticks."""
        loop = asyncio.get_running_loop()
        d = self.device
        schedule = PollSchedule(d.poll_interval_s, started, name=d.id)
        while True:
            self.polls += 1
            self.skipped_polls += schedule.finished(loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(schedule.due):
                    await self._lost.wait()
            if self._lost.is_set():
                break
            await self._read_all(client)

    async def _subscribe_and_wait(self, client: Client) -> None:
        d = self.device
        sub = await client.create_subscription(d.publishing_interval_ms, queue_maxsize=1000)
        try:
            await self._monitor(sub, client)
            queue = sub._event_queue
            assert queue is not None
            while not self._lost.is_set():
                getter = asyncio.ensure_future(queue.get())
                waiter = asyncio.ensure_future(self._lost.wait())
                done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if getter not in done:
                    getter.cancel()
                    break
                event = getter.result()
                # data changes never get here (see _monitor); a bad status change is the
                # server saying the subscription is gone: start over with a new session
                if isinstance(event, StatusChangeEvent):
                    code = event.notification.Status
                    if not code.is_good():
                        self._log_failure(f"subscription status {code.name}")
                        break
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await sub.delete()

    async def _monitor(self, sub: Subscription, client: Client) -> None:
        requests = []
        by_handle: dict[int, _Input] = {}
        for nid, inp in self._inputs.items():
            mfilter = None
            if inp.tag.deadband > 0 and not inp.is_mode and inp.tag.role != "machine_state":
                mfilter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=int(ua.DeadbandType.Absolute),
                    DeadbandValue=inp.tag.deadband,
                )
            request = sub._make_monitored_item_request(
                client.get_node(nid),
                ua.AttributeIds.Value,
                mfilter,
                0,
                ua.MonitoringMode.Reporting,
                float(self.device.sampling_interval_ms),
            )
            by_handle[request.RequestedParameters.ClientHandle] = inp
            requests.append(request)
        # Data changes go straight from the decoded publish response into _absorb,
        # without asyncua's per-item event objects and queue. Installed before the items
        # exist, so none is missed. (asyncua is pinned; the hook is its
        # Subscription._explode_notifications, which publish_callback looks up on self.)
        explode = sub._explode_notifications

        def take_data_changes(notifications: Iterable[Any]) -> Iterable[Any]:
            rest = []
            for notif in notifications:
                if isinstance(notif, ua.DataChangeNotification):
                    items = notif.MonitoredItems
                    self._absorb((by_handle.get(i.ClientHandle), i.Value) for i in items)
                else:
                    rest.append(notif)
            return explode(rest)

        sub._explode_notifications = take_data_changes  # type: ignore[method-assign,assignment]
        failed = []
        for chunk in _chunks(requests, self.limits.monitor):
            results = await sub.create_monitored_items(chunk)
            for req, res in zip(chunk, results, strict=True):
                if isinstance(res, ua.StatusCode):
                    failed.append(f"{req.ItemToMonitor.NodeId.to_string()}: {res.name}")
        if failed:
            logger.warning(
                "%s: %d node(s) cannot be monitored: %s",
                self.device.id,
                len(failed),
                "; ".join(failed),
            )

    def _absorb(self, values: Iterable[tuple[_Input | None, ua.DataValue]]) -> None:
        """New DataValues in: emit the samples of the tags they touch, then the status.

        The hot path of a subscription: a plain tag's sample is built right here; only
        umati pairs and state maps go through `_sample`.
        """
        now = time.time()
        dev = self.device.id
        out: list[Sample] = []
        derived: dict[str, OpcUaNodeConfig] = {}
        n = 0
        for inp, dv in values:
            if inp is None:
                continue
            n += 1
            code = dv.StatusCode
            quality = _quality(code)
            if quality is not inp.quality:
                self._bad += (quality is _BAD) - (inp.quality is _BAD)
                inp.quality = quality
            inp.status = None if quality is _GOOD or code is None else str(code.name)
            stamp, server = dv.SourceTimestamp, dv.ServerTimestamp
            source_ts = stamp.timestamp() if stamp is not None else None
            if server is None:
                inp.server_ts = None
            else:  # often the same instant: skip the second conversion
                inp.server_ts = source_ts if server == stamp else server.timestamp()
            inp.ts = source_ts if source_ts is not None else (inp.server_ts or now)
            variant = dv.Value
            inp.value = None if quality is _BAD or variant is None else _plain(variant.Value)
            if inp.simple:
                out.append(
                    Sample(
                        dev, inp.tag.tag, inp.ts, inp.value, quality, now, inp.status, inp.server_ts
                    )
                )
            else:
                derived[inp.tag.tag] = inp.tag
        self.values_read += n
        out.extend(self._sample(tag, now) for tag in derived.values())
        self._set_online(self._bad < len(self._inputs), out)
        if out:
            self.emit(out)

    def _sample(self, tag: OpcUaNodeConfig, now: float) -> Sample:
        """A derived tag: a umati state from its pair, or a code through its state_map."""
        main, mode = self._pairs[tag.tag]
        dev, tid = self.device.id, tag.tag
        if mode is not None:
            worst = max((main, mode), key=lambda i: _RANK[i.quality])
            ts = max(main.ts, mode.ts)
            stamps = [x for x in (main.server_ts, mode.server_ts) if x is not None]
            sts = max(stamps) if stamps else None
            if worst.quality is Quality.BAD:
                return Sample(dev, tid, ts, None, Quality.BAD, now, worst.status, sts)
            try:
                state = umati_state(str(main.value), mode.value, self.device.umati_states)
            except ValueError as exc:
                return Sample(dev, tid, ts, None, Quality.BAD, now, str(exc), sts)
            return Sample(dev, tid, ts, state.value, worst.quality, now, worst.status, sts)
        ts, sts = main.ts, main.server_ts
        if main.quality is Quality.BAD:
            return Sample(dev, tid, ts, None, Quality.BAD, now, main.status, sts)
        value = main.value
        key = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
        mapped = tag.state_map.get(key)
        if mapped is None:
            return Sample(dev, tid, ts, None, Quality.BAD, now, f"unmapped state {key}", sts)
        return Sample(dev, tid, ts, mapped.value, main.quality, now, main.status, sts)

    def _set_online(self, online: bool, out: list[Sample] | None = None) -> None:
        if online == self.online:
            return
        self.online = online
        logger.info("%s is %s", self.device.id, "online" if online else "offline")
        if online:
            self._backoff.reset()
        sample = status_sample(self.device.id, online, time.time())
        if out is None:
            self.emit([sample])
        else:
            out.insert(0, sample)

    def stats(self) -> dict[str, Any]:
        out = {
            "online": self.online,
            "sessions": self.sessions,
            "values_read": self.values_read,
            "read_errors": self.read_errors,
            "limits": dict(self.limits.raw),
        }
        if self.device.mode == "polling":
            out |= {"polls": self.polls, "skipped_polls": self.skipped_polls}
        return out
