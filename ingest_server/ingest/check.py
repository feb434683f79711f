"""Checking what the consumer took from the broker: each message becomes part of the
group one transaction writes, or a dead letter with its reason.

    (topic, payload) ... --check()--> Group: births, statuses, batches, dead letters

In order: the payload's size, the topic, the gateway (registered, with a key), then the
message against the contract (ingest/payload.py: signature, schema, limits). A batch's
samples whose time is implausible are set aside as a dead letter of their own, written
with the batch. A signature that fails under a cached key is checked once more under the
key read afresh (a key rotated while the server runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.contract.topics import Origin
from ingest_server.ingest.gateway_keys import GatewayDirectory
from ingest_server.ingest.payload import (
    Birth,
    DataBatch,
    RejectedError,
    SignatureMismatchError,
    Status,
    WireSample,
    parse_message,
    parse_topic,
    split_by_clock,
)


@dataclass
class DataItem:
    origin: Origin
    batch: DataBatch
    good: list[WireSample]
    rejected: int
    # the samples set aside (implausible times), written with the batch and only when the
    # batch is new: a redelivery or a batch the database refuses adds no second letter
    set_aside: DeadLetter | None = None


@dataclass
class DeadLetter:
    topic: str
    payload: bytes
    reason: str
    gid: int | None = None


@dataclass
class Group:
    """What one transaction writes."""

    births: list[tuple[Origin, Birth]] = field(default_factory=list)
    statuses: list[tuple[Origin, Status]] = field(default_factory=list)
    data: list[DataItem] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    # id(parsed message) -> (topic, payload) as it arrived, to dead-letter what fails
    raw: dict[int, tuple[str, bytes]] = field(default_factory=dict)


class Received(Protocol):
    """A message as it came from the broker."""

    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


@dataclass(frozen=True)
class Limits:
    max_payload_bytes: int
    # sample times: a backlog can be old (outbox max age), a future time is a clock error
    max_past_ms: int
    max_future_ms: int


def _constant(key: bytes | None) -> Callable[[Origin], bytes | None]:
    return lambda _origin: key


def check(
    taken: Sequence[Received], *, directory: GatewayDirectory, limits: Limits, now_ms: int
) -> Group:
    """The group to write for `taken`. Raises psycopg.OperationalError when a gateway's
    key cannot be looked up (the caller retries the whole group)."""
    group = Group()
    for item in taken:
        gid: int | None = None
        try:
            if len(item.payload) > limits.max_payload_bytes:
                raise RejectedError(
                    f"payload of {len(item.payload)} bytes is over the limit of "
                    f"{limits.max_payload_bytes}: lower the agent's batch_max_samples"
                )
            origin: Origin = parse_topic(item.topic)
            gw = directory.lookup(origin)
            gid = None if gw is None else gw.gid
            if gw is not None and gw.key is None:
                raise RejectedError(
                    f"gateway {origin.enterprise}/{origin.site}/{origin.gateway} has no HMAC "
                    f"key: ingest-server registry import FILE --key {origin.gateway}=KEYFILE"
                )
            try:
                origin, message = parse_message(
                    item.topic, item.payload, key_of=_constant(None if gw is None else gw.key)
                )
            except SignatureMismatchError:
                # the key may have been rotated since it was cached: ask once more
                fresh = directory.lookup(origin, stale_ok=False)
                if fresh is None or fresh == gw:
                    raise
                origin, message = parse_message(
                    item.topic, item.payload, key_of=_constant(fresh.key)
                )
        except RejectedError as exc:
            group.dead.append(DeadLetter(item.topic, item.payload, exc.reason, gid))
            continue
        group.raw[id(message)] = (item.topic, item.payload)
        if isinstance(message, DataBatch):
            group.data.append(_data_item(item.topic, origin, message, gid, limits, now_ms))
        elif isinstance(message, Birth):
            group.births.append((origin, message))
        elif isinstance(message, Status):
            group.statuses.append((origin, message))
    return group


def _data_item(  # noqa: PLR0917
    topic: str, origin: Origin, message: DataBatch, gid: int | None, limits: Limits, now_ms: int
) -> DataItem:
    good, bad = split_by_clock(
        message, now_ms=now_ms, max_past_ms=limits.max_past_ms, max_future_ms=limits.max_future_ms
    )
    data = DataItem(origin, message, good, len(bad))
    if bad:
        body = json.dumps(
            {
                "gw": message.gw,
                "boot": message.boot,
                "seq": message.seq,
                "samples": [s.model_dump(exclude_none=True) for s, _ in bad],
            }
        ).encode()
        reason = f"{len(bad)} sample(s) of batch {message.boot}/{message.seq}: {bad[0][1]}"
        data.set_aside = DeadLetter(topic, body, reason, gid)
    return data
