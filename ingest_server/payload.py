"""What the server accepts from a gateway: MQTT contract v1 (docs/mqtt.md), checked.

    topic, raw bytes --parse_message--> DataBatch | Birth | Status
                                   \\--> RejectedError(reason)   (to the dead-letter table)

Checks, in order, each with a reason a person can act on: the topic is ours and names
a known gateway; the payload is UTF-8 JSON; the signature verifies with that gateway's
key; the body is contract v1 (pydantic, strict); the gateway in the body is the one in
the topic. Separately, each sample's time must lie within the configured skew of the
server's clock (`split_by_clock`: only the implausible samples are set aside). Pure: the caller
gives the keys and the time.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.wire import SignatureError, check_signature
from edge_agent.yaml12 import validation_problems

_LEVEL = r"([a-z0-9][a-z0-9_-]*)"
TOPIC = re.compile(rf"^fe/v1/{_LEVEL}/{_LEVEL}/{_LEVEL}/(data|birth|status)$")
Ms = Annotated[int, Field(ge=0)]


class RejectedError(Exception):
    """A message that is not stored as data; `reason` says why, for the dead letters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WireSample(_Strict):
    d: str = Field(min_length=1, max_length=64)
    t: str = Field(min_length=1, max_length=64)
    ts: Ms
    v: float | int | str | None
    q: Literal["uncertain", "bad"] | None = None
    s: str | None = Field(default=None, max_length=500)
    gts: Ms | None = None
    sts: Ms | None = None


class DataBatch(_Strict):
    v: Literal[1]
    gw: str
    boot: int = Field(ge=1)
    seq: int = Field(ge=1)
    sent: Ms
    samples: list[WireSample]
    sig: str


class WireTag(_Strict):
    t: str
    role: str
    unit: str | None = None
    type: str | None = None
    scale: float | None = None
    offset: float | None = None
    wrap: float | None = None


class WireDevice(_Strict):
    id: str
    protocol: Literal["opcua", "modbus"]
    metadata: dict[str, str | int | float | bool]
    tags: list[WireTag]


class Birth(_Strict):
    v: Literal[1]
    gw: str
    boot: int = Field(ge=1)
    agent: dict[str, str]
    sent: Ms
    devices: list[WireDevice]
    sig: str


class Status(_Strict):
    v: Literal[1]
    gw: str
    boot: int = Field(ge=1)
    state: Literal["online", "offline"]
    ts: Ms | None = None
    sig: str


@dataclass(frozen=True, slots=True)
class Origin:
    enterprise: str
    site: str
    gateway: str
    kind: str


Message = DataBatch | Birth | Status
_MODEL: dict[str, type[DataBatch] | type[Birth] | type[Status]] = {
    "data": DataBatch,
    "birth": Birth,
    "status": Status,
}


def parse_topic(topic: str) -> Origin:
    m = TOPIC.match(topic)
    if m is None:
        raise RejectedError(
            f"topic {topic!r} is not fe/v1/ENTERPRISE/SITE/GATEWAY/(data|birth|status)"
        )
    return Origin(*m.groups())


def parse_message(
    topic: str, payload: bytes, *, key_of: Callable[[Origin], bytes | None]
) -> tuple[Origin, Message]:
    """Validate one MQTT message; raises RejectedError with the reason."""
    origin = parse_topic(topic)
    key = key_of(origin)
    if key is None:
        raise RejectedError(
            f"unknown gateway {origin.enterprise}/{origin.site}/{origin.gateway}: register it "
            "(ingest-server registry import) before it publishes"
        )
    try:
        check_signature(payload, key)
    except SignatureError as exc:
        raise RejectedError(f"signature: {exc}") from None
    try:
        # straight from the bytes: pydantic's JSON parser, no intermediate dicts
        message = _MODEL[origin.kind].model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise RejectedError(f"not JSON: {first['msg']}") from None
        problems = validation_problems(exc, docs="docs/mqtt.md")
        raise RejectedError("schema: " + "; ".join(problems[:5])) from None
    if message.gw != origin.gateway:
        raise RejectedError(f"body says gateway {message.gw!r}, topic says {origin.gateway!r}")
    return origin, message


def split_by_clock(
    batch: DataBatch, *, now_ms: int, max_past_ms: int, max_future_ms: int
) -> tuple[list[WireSample], list[tuple[WireSample, str]]]:
    """Samples whose time is plausible, and the others with the reason.

    One device with a wrong clock must not cost the batch's other samples: only the
    implausible ones go to the dead letters.
    """
    lo, hi = now_ms - max_past_ms, now_ms + max_future_ms
    good: list[WireSample] = []
    bad: list[tuple[WireSample, str]] = []
    for s in batch.samples:
        if lo <= s.ts <= hi:
            good.append(s)
        else:
            bad.append(
                (
                    s,
                    f"sample time {s.ts} ms is outside [now - {max_past_ms}, now + "
                    f"{max_future_ms}] ms: check the clocks of {s.d} and its gateway (NTP)",
                )
            )
    return good, bad
