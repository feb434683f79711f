"""Checking what the consumer took from the broker: each message becomes part of the
group one transaction writes, or a dead letter with its reason and code.

    (topic, payload) ... --check()--> Group: births, statuses, batches, dead letters

In order: the topic, the gateway (registered, with a key), the payload's size, then the
message against the contract the gateway is enrolled for (ingest/payload.py: contract 1,
JSON + HMAC; contract 2, a v2 batch or JSON signed with the gateway's Ed25519 key; then
signature, schema, limits). A batch's samples whose time is implausible are set aside as
a dead letter of their own, written with the batch. A signature that fails under a
cached key (or a message of the other contract) is checked once more under the entry
read afresh (a key rotated, or a gateway enrolled, while the server runs).

A dead letter of a batch refused for its content carries the batch's key (`ack`), so the
gateway is told not to send it again; one of an unknown gateway, or of a gateway the
server holds no key for, does not: it stays in the gateway's outbox until it is enrolled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from edge_agent.contract.topics import Origin
from edge_agent.contract.wire_v2 import DEFAULT_MAX_BYTES_DECOMPRESSED, DEFAULT_MAX_SAMPLES
from ingest_server.ingest.gateway_keys import Gateway, GatewayDirectory
from ingest_server.ingest.payload import (
    Birth,
    DataBatch,
    RefusalCode,
    RejectedError,
    SignatureMismatchError,
    Status,
    WireSample,
    parse_message,
    parse_topic,
    split_by_clock,
)
from ingest_server.ingest.payload_v2 import (
    V2_MAGIC,
    BatchV2,
    Message,
    V2Sample,
    batch_key_v2,
    enrolled_for,
    parse_batch_v2,
    parse_message_v2,
    split_v2_by_clock,
)


@dataclass
class DataItem:
    origin: Origin
    batch: DataBatch | BatchV2
    # v1: the samples to store; v2: empty, its samples stay in the batch's columns
    # (`good_pos` says which)
    good: list[WireSample]
    rejected: int
    # the samples set aside (implausible times), written with the batch and only when the
    # batch is new: a redelivery or a batch the database refuses adds no second letter
    set_aside: DeadLetter | None = None
    # v2: each good sample's and each set-aside sample's 0-based place in the batch
    # (None: every sample is good, in order)
    good_pos: list[int] | None = None
    aside: list[tuple[int, V2Sample]] = field(default_factory=list)

    @property
    def n_good(self) -> int:
        """How many samples of the batch are to be stored."""
        if isinstance(self.batch, BatchV2):
            return len(self.batch) if self.good_pos is None else len(self.good_pos)
        return len(self.good)


@dataclass
class DeadLetter:
    topic: str
    payload: bytes
    reason: str
    gid: int | None = None
    # (origin, boot, seq) of a batch refused for its content by a gateway the server
    # holds a key for: acknowledged as dead, so the gateway stops sending it
    ack: tuple[Origin, int, int] | None = None
    # what kind of refusal (payload.REFUSAL_CODES): the console words it per language
    code: RefusalCode = "other"


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
    # v2 batches: what the decoder takes (a small payload can inflate a lot)
    max_batch_samples: int = DEFAULT_MAX_SAMPLES
    max_bytes_decompressed: int = DEFAULT_MAX_BYTES_DECOMPRESSED


def _constant(key: bytes | None) -> Callable[[Origin], bytes | None]:
    return lambda _origin: key


def _parse(
    topic: str, payload: bytes, origin: Origin, gw: Gateway | None, limits: Limits
) -> Message:
    """The message, checked against the contract `gw` is enrolled for."""
    v2 = payload[:3] == V2_MAGIC
    if gw is not None and gw.contract == 2:
        if gw.public_key is None:
            raise RejectedError(
                f"gateway {_name(origin)} has no public key enrolled (revoked?): "
                f"ingest-server gateway enroll {origin.enterprise} {origin.site} "
                f"{origin.gateway} --public-key KEY",
                code="no_public_key",
            )
        if origin.kind == "data":
            if not v2:
                raise enrolled_for(origin, 2)
            return parse_batch_v2(
                origin, payload, gw.public_key, max_samples=limits.max_batch_samples,
                max_bytes_decompressed=limits.max_bytes_decompressed,
            )  # fmt: skip
        return parse_message_v2(origin, payload, gw.public_key)
    if v2 and gw is not None:
        raise enrolled_for(origin, 1)
    if gw is not None and gw.key is None:
        raise RejectedError(
            f"gateway {_name(origin)} has no HMAC key: ingest-server registry import FILE "
            f"--key {origin.gateway}=KEYFILE",
            code="no_hmac_key",
        )
    return parse_message(topic, payload, key_of=_constant(None if gw is None else gw.key))[1]


def _name(origin: Origin) -> str:
    return f"{origin.enterprise}/{origin.site}/{origin.gateway}"


def _dead_key(origin: Origin, gw: Gateway | None, payload: bytes) -> tuple[Origin, int, int] | None:
    """The batch a dead letter acknowledges: a batch of a gateway enrolled for v2 with its
    key (a v1 agent does not read acks; a gateway without a key gets none). That includes
    a v1 batch left in the outbox of a gateway moved to contract 2: the server will never
    take it, so the agent may let it go rather than send it again until it expires."""
    if origin.kind != "data" or gw is None or gw.contract != 2 or gw.public_key is None:
        return None
    key = batch_key_v2(payload) or _batch_key_v1(payload)
    return None if key is None else (origin, *key)


def _batch_key_v1(payload: bytes) -> tuple[int, int] | None:
    """(boot, seq) of a v1 JSON batch, or None when it has none to read."""
    if not payload.startswith(b"{"):
        return None
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    boot, seq = (obj.get("boot"), obj.get("seq")) if isinstance(obj, dict) else (None, None)
    if not isinstance(boot, int) or isinstance(boot, bool) or not 1 <= boot <= 2**31 - 1:
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= 2**63 - 1:
        return None
    return boot, seq


def check(
    taken: Sequence[Received], *, directory: GatewayDirectory, limits: Limits, now_ms: int
) -> Group:
    """The group to write for `taken`. Raises psycopg.OperationalError when a gateway's
    key cannot be looked up (the caller retries the whole group)."""
    group = Group()
    for item in taken:
        gid: int | None = None
        gw: Gateway | None = None
        origin: Origin | None = None
        try:
            origin = parse_topic(item.topic)
            gw = directory.lookup(origin)
            gid = None if gw is None else gw.gid
            if len(item.payload) > limits.max_payload_bytes:
                raise RejectedError(
                    f"payload of {len(item.payload)} bytes is over the limit of "
                    f"{limits.max_payload_bytes}: lower the agent's batch_max_samples",
                    code="payload_too_large",
                )
            try:
                message = _parse(item.topic, item.payload, origin, gw, limits)
            except SignatureMismatchError:
                # the key may have been rotated (or the gateway enrolled) since it was
                # cached: ask once more
                fresh = directory.lookup(origin, stale_ok=False)
                if fresh is None or fresh == gw:
                    raise
                gw = fresh
                message = _parse(item.topic, item.payload, origin, gw, limits)
        except RejectedError as exc:
            ack = None if origin is None else _dead_key(origin, gw, item.payload)
            group.dead.append(
                DeadLetter(item.topic, item.payload, exc.reason, gid, ack, code=exc.code)
            )
            continue
        assert origin is not None
        group.raw[id(message)] = (item.topic, item.payload)
        if isinstance(message, DataBatch | BatchV2):
            group.data.append(_data_item(item.topic, origin, message, gid, limits, now_ms))
        elif isinstance(message, Birth):
            group.births.append((origin, message))
        elif isinstance(message, Status):
            group.statuses.append((origin, message))
    return group


def _data_item(  # noqa: PLR0917
    topic: str,
    origin: Origin,
    message: DataBatch | BatchV2,
    gid: int | None,
    limits: Limits,
    now_ms: int,
) -> DataItem:
    window = {"now_ms": now_ms, "max_past_ms": limits.max_past_ms,
              "max_future_ms": limits.max_future_ms}  # fmt: skip
    bad: Sequence[tuple[WireSample | V2Sample, str]]
    if isinstance(message, BatchV2):
        good_pos, bad_at = split_v2_by_clock(message, **window)
        data = DataItem(origin, message, [], len(bad_at), good_pos=good_pos)
        data.aside = [(i, x) for i, x, _ in bad_at]
        bad = [(x, why) for _, x, why in bad_at]
    else:
        good, bad = split_by_clock(message, **window)
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
        data.set_aside = DeadLetter(topic, body, reason, gid, code="implausible_time")
    return data
