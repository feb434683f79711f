"""What the server accepts from a gateway: MQTT contract v1 (docs/mqtt.md), checked.

    topic, raw bytes --parse_message--> DataBatch | Birth | Status
                                   \\--> RejectedError(reason, code)   (to the dead-letter table)

Checks, in order, each with a reason a person can act on: the topic is ours and names
a known gateway; the payload is UTF-8 JSON; the signature verifies with that gateway's
key; the body is contract v1 (pydantic, strict); the gateway in the body is the one in
the topic. The schema also holds every value to what the database stores and reads back
(docs/mqtt.md "Limits"): ids of a fixed charset and length, text without NUL and within a
byte limit, integers within their columns, times within 1970..9999, finite numbers; so
nothing that passes is refused later by PostgreSQL with a misleading reason. Separately,
each sample's time must lie within the configured skew of the server's clock
(`split_by_clock`: only the implausible samples are set aside). Pure: the caller gives the
keys and the time.

Contract v2 (binary batches signed by the gateway's own key) is checked in payload_v2.py,
with this module's schema, limits and errors.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)
from pydantic_core import ErrorDetails

from edge_agent.contract import topics
from edge_agent.contract.topics import Origin
from edge_agent.contract.wire import (
    MAX_MS,
    MAX_STATUS_CHARS,
    MAX_TEXT_BYTES,
    SignatureError,
    check_signature,
)
from edge_agent.contract.wire import SignatureMismatchError as WrongKeyError
from edge_agent.contract.yaml12 import format_location
from ingest_server.errors import RefusedError

# --- limits (docs/mqtt.md "Limits" gives each with its reason) ----------------------------
# Device and tag ids: every id the agent's config allows ([a-z0-9][a-z0-9_.-]{0,62}, and the
# reserved `_status`), with room for other producers' upper case and longer names.
ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
MAX_ID_CHARS = 128
MAX_NAME_BYTES = 256  # roles, units, data types, metadata keys
# shared with the agent (edge_agent/contract/wire.py), which makes its samples fit them: a string
# value at most MAX_TEXT_BYTES of UTF-8, a status text MAX_STATUS_CHARS; times in ms since
# the Unix epoch from 0 to MAX_MS (9999-12-31T23:59:59.999Z), the last instant both
# PostgreSQL's timestamptz and the server's readers (Python datetime) hold
MAX_BOOT = 2**31 - 1  # batches.boot and gateways.boot are `integer`
MAX_SEQ = 2**63 - 1  # batches.seq is `bigint`


def _text(max_bytes: int) -> Callable[[str], str]:
    """A check for text PostgreSQL stores: no NUL, at most `max_bytes` of UTF-8."""

    def check(v: str) -> str:
        if "\x00" in v:
            raise ValueError(
                "contains a NUL character (U+0000), which PostgreSQL text cannot hold: remove it"
            )
        # a character is at most 4 bytes of UTF-8: encode only what may be too long
        if len(v) * 4 > max_bytes and (n := len(v.encode())) > max_bytes:
            raise ValueError(f"a string of {n} bytes (UTF-8), over the limit of {max_bytes}")
        return v

    return check


# Pydantic checks these in Rust; only strings (a minority of values) call back into Python.
Ms = Annotated[int, Field(ge=0, le=MAX_MS)]
WireId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=ID_PATTERN)]
Name = Annotated[str, AfterValidator(_text(MAX_NAME_BYTES))]
Text = Annotated[str, AfterValidator(_text(MAX_TEXT_BYTES))]
# a number is stored as a double: an integer is accepted as one (beyond 2^53 rounded, as
# the column would); NaN, Infinity and anything beyond the double's range are refused
Number = Annotated[float, Field(allow_inf_nan=False)]
StatusText = Annotated[
    str, Field(max_length=MAX_STATUS_CHARS), AfterValidator(_text(4 * MAX_STATUS_CHARS))
]
Boot = Annotated[int, Field(ge=1, le=MAX_BOOT)]
Seq = Annotated[int, Field(ge=1, le=MAX_SEQ)]


# Why a message was refused, as a closed vocabulary stored beside the reason
# (dead_letters.code, migration 0014): the console says each code's meaning and what to
# do in the user's language (i18n.js `dl_<code>`), with the reason, English, as the
# server's own words; `ingest-server status` counts by it. docs/ingest.md lists them.
RefusalCode = Literal[
    "unknown_topic",  # not a topic of the contract
    "unknown_gateway",  # a gateway not in the registry
    "no_hmac_key",  # a contract-1 gateway the server holds no HMAC key for
    "no_public_key",  # a contract-2 gateway without an enrolled public key
    "payload_too_large",  # over the server's max_payload_bytes
    "no_signature",  # no signature where the contract puts it
    "signature_mismatch",  # signed, but not with the gateway's key
    "contract_mismatch",  # a message of the other contract than the gateway's
    "not_json",  # a JSON message that does not parse
    "schema",  # JSON, but not the contract's fields, types or limits
    "gateway_mismatch",  # the body names another gateway than the topic
    "v2_payload",  # a v2 binary batch that does not decode
    "implausible_time",  # samples set aside: their time is outside the clock window
    "digest_conflict",  # a v2 batch (boot, seq) stored already with another digest
    "database_refused",  # passed every check, refused by PostgreSQL
    "other",  # none of these (and the rows written before the codes)
]
REFUSAL_CODES: tuple[str, ...] = get_args(RefusalCode)


class RejectedError(RefusedError):
    """A message that is not stored as data; `reason` says why, for the dead letters,
    and `code` (one of REFUSAL_CODES) what kind of refusal it is."""

    def __init__(self, reason: str, *, code: RefusalCode = "other") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code: RefusalCode = code


class SignatureMismatchError(RejectedError):
    """Signed, but not with the key the server holds for the gateway (or for the other
    contract than the one it is enrolled for): the consumer asks for the gateway's key
    once more (it may have been rotated, or the gateway enrolled) before dead-lettering."""

    def __init__(self, reason: str, *, code: RefusalCode = "signature_mismatch") -> None:
        super().__init__(reason, code=code)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class WireSample(_Strict):
    d: WireId
    t: WireId
    ts: Ms
    v: Number | Text | None
    q: Literal["uncertain", "bad"] | None = None
    s: StatusText | None = None
    gts: Ms | None = None
    sts: Ms | None = None


class DataBatch(_Strict):
    v: Literal[1]
    gw: str
    boot: Boot
    seq: Seq
    sent: Ms
    samples: list[WireSample]
    sig: str


class WireTag(_Strict):
    t: WireId
    role: Name
    unit: Name | None = None
    type: Name | None = None
    scale: Number | None = None
    offset: Number | None = None
    wrap: Number | None = None


class WireDevice(_Strict):
    id: WireId
    protocol: Literal["opcua", "modbus"]
    metadata: dict[Name, bool | int | Number | Text]  # jsonb: any integer, no NaN
    tags: list[WireTag]


class Birth(_Strict):
    v: Literal[1]
    gw: str
    boot: Boot
    agent: dict[Name, Text]
    sent: Ms
    devices: list[WireDevice]
    sig: str


class Status(_Strict):
    v: Literal[1]
    gw: str
    boot: Boot
    state: Literal["online", "offline"]
    ts: Ms | None = None
    sig: str


Message = DataBatch | Birth | Status
_MODEL: dict[str, type[DataBatch] | type[Birth] | type[Status]] = {
    "data": DataBatch,
    "birth": Birth,
    "status": Status,
}


def parse_topic(topic: str) -> Origin:
    origin = topics.parse_stored(topic)
    if origin is None:
        raise RejectedError(f"topic {topic!r} is not {topics.STORED_PATTERN}", code="unknown_topic")
    return origin


def parse_message(
    topic: str, payload: bytes, *, key_of: Callable[[Origin], bytes | None]
) -> tuple[Origin, Message]:
    """Validate one MQTT message; raises RejectedError with the reason."""
    origin = parse_topic(topic)
    key = key_of(origin)
    if key is None:
        raise RejectedError(
            f"unknown gateway {origin.enterprise}/{origin.site}/{origin.gateway}: register it "
            "(ingest-server registry import) before it publishes",
            code="unknown_gateway",
        )
    try:
        check_signature(payload, key)
    except SignatureError as exc:
        if isinstance(exc, WrongKeyError):
            raise SignatureMismatchError(f"signature: {exc}") from None
        raise RejectedError(f"signature: {exc}", code="no_signature") from None
    message = validated(_MODEL[origin.kind], payload, origin)
    return origin, message


def _name(origin: Origin) -> str:
    return f"{origin.enterprise}/{origin.site}/{origin.gateway}"


_WHY = {
    "boot": "the server stores boot as a 32-bit integer",
    "seq": "the server stores seq as a 64-bit integer",
}
_MS_FIELDS = frozenset({"ts", "gts", "sts", "sent"})
_ID_FIELDS = frozenset({"d", "t", "id"})
# the step pydantic adds for each member of a union (`v`: a number, a text or null)
_MEMBER = re.compile(r"^(float|int|str|bool|function-after\[.*\])$")
_KIND = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false"}


def validated(model: Any, payload: bytes, origin: Origin) -> Any:
    """A signed JSON message against its model, straight from the bytes (pydantic's JSON
    parser, no intermediate dicts), and its `gw` against the topic's gateway."""
    try:
        message = model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise RejectedError(f"not JSON: {first['msg']}", code="not_json") from None
        problems = "; ".join(schema_problems(exc)[:5])
        raise RejectedError(f"schema: {problems}", code="schema") from None
    if message.gw != origin.gateway:
        raise RejectedError(
            f"body says gateway {short(message.gw)}, topic says {origin.gateway!r}",
            code="gateway_mismatch",
        )
    return message


def schema_problems(exc: ValidationError) -> list[str]:
    """'path: message' for each problem, in the contract's words.

    A union (a sample's value: a number, a string or null) reports why each member refused
    the value; the errors that are not "wrong type" say what is wrong (NaN for a number, a
    NUL in a string), and when every member only says "wrong type", one line names the
    types the field takes.
    """
    groups: dict[tuple[int | str, ...], list[ErrorDetails]] = {}
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        member = bool(loc) and isinstance(loc[-1], str) and _MEMBER.match(loc[-1]) is not None
        groups.setdefault(loc[:-1] if member else loc, []).append(err)
    problems: list[str] = []
    for loc, errs in groups.items():
        where = format_location(loc)
        telling = [e for e in errs if e["loc"] == loc or not e["type"].endswith("_type")]
        if telling:
            problems.extend(f"{where}: {_message(e, loc)}" for e in telling)
        else:
            kinds = [_KIND.get(str(e["loc"][-1]).split(", ")[-1].rstrip("]"), "?") for e in errs]
            problems.append(f"{where}: {short(errs[0]['input'])} is not {' or '.join(kinds)}")
    return problems


def short(value: object, limit: int = 60) -> str:
    """A value for a reason: its repr, cut (a 4 MiB id must not make a 4 MiB reason)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _message(err: ErrorDetails, loc: tuple[int | str, ...]) -> str:
    name = loc[-1] if loc else ""
    kind = err["type"]
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        return "unknown field; check its spelling against docs/mqtt.md"
    if kind == "missing":
        return "required field is missing"
    if kind == "finite_number":
        return 'not a finite number (NaN, Infinity or beyond 1.8e308): send null with "q":"bad"'
    if name in _MS_FIELDS and kind in {"less_than_equal", "greater_than_equal"}:
        return (
            f"{short(err['input'])} is not a time: give ms since 1970-01-01 UTC, 0 to {MAX_MS} "
            "(9999-12-31T23:59:59.999Z)"
        )
    if name in _WHY and kind == "less_than_equal":
        return f"{msg} ({_WHY[str(name)]})"
    if name in _ID_FIELDS and kind.startswith("string_"):
        return (
            f"{short(err['input'])} is not an id: 1 to {MAX_ID_CHARS} ASCII letters, digits, "
            "'_', '.' or '-', the first not '.' or '-'"
        )
    return msg


class Timed(Protocol):
    """A sample as the clock check reads it (`WireSample`, payload_v2's `V2Sample`)."""

    @property
    def d(self) -> str: ...
    @property
    def ts(self) -> int: ...


def implausible(s: Timed, max_past_ms: int, max_future_ms: int) -> str:
    return (
        f"sample time {s.ts} ms is outside [now - {max_past_ms}, now + "
        f"{max_future_ms}] ms: check the clocks of {s.d} and its gateway (NTP)"
    )


def split_by_clock(
    batch: DataBatch, *, now_ms: int, max_past_ms: int, max_future_ms: int
) -> tuple[list[Any], list[tuple[Any, str]]]:
    """Samples whose time is plausible, and the others with the reason.

    One device with a wrong clock must not cost the batch's other samples: only the
    implausible ones go to the dead letters.
    """
    lo, hi = now_ms - max_past_ms, now_ms + max_future_ms
    good: list[Any] = []
    bad: list[tuple[Any, str]] = []
    for s in batch.samples:
        if lo <= s.ts <= hi:
            good.append(s)
        else:
            bad.append((s, implausible(s, max_past_ms, max_future_ms)))
    return good, bad
