"""What the server accepts from a gateway: MQTT contract v1 (docs/mqtt.md), checked.

    topic, raw bytes --parse_message--> DataBatch | Birth | Status
                                   \\--> RejectedError(reason)   (to the dead-letter table)

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

Contract v2 (issue 16; `parse_batch_v2`, `parse_message_v2`): a data payload starting
with b"FEW" is decoded (wire_v2.py, with the decoder's limits), must name the topic's
gateway, and its signature must verify under the gateway's enrolled Ed25519 key over the
digest recomputed from the decoder's columns. The decoder holds every sample to each
limit `WireSample` checks (the mapping is at `parse_batch_v2`), so the batch stays in
columns (`BatchV2.columns`, stored by copybin.encode_v2) with no per-sample schema pass.
Births and status of a contract-2 gateway are v1's JSON with "v": 2 and an Ed25519 "sig";
a v2 status may declare the batches the gateway's outbox dropped (`dropped`: at most
MAX_DROPPED ranges [boot, first_seq, last_seq, reason, ts], in (boot, seq) order, not
overlapping, none of a boot after the status's own).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from typing import Annotated, Any, Literal, NamedTuple, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from edge_agent.contract import topics
from edge_agent.contract.digest import verify_batch
from edge_agent.contract.identity import fingerprint
from edge_agent.contract.topics import Origin
from edge_agent.contract.wire import (
    MAX_MS,
    MAX_STATUS_CHARS,
    MAX_TEXT_BYTES,
    SignatureError,
    check_signature,
    check_signature_v2,
)
from edge_agent.contract.wire import SignatureMismatchError as WrongKeyError
from edge_agent.contract.wire_v2 import (
    QUALITY_OF_HEAD,
    BatchColumns,
    WireV2Error,
    decode_columns_v2,
)
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


class RejectedError(RefusedError):
    """A message that is not stored as data; `reason` says why, for the dead letters."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SignatureMismatchError(RejectedError):
    """Signed, but not with the key the server holds for the gateway (or for the other
    contract than the one it is enrolled for): the consumer asks for the gateway's key
    once more (it may have been rotated, or the gateway enrolled) before dead-lettering."""


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


class BirthV2(Birth):
    v: Literal[2]  # type: ignore[assignment]  # the same body, signed with Ed25519


MAX_DROPPED = 100  # ranges one status declares (the agent sends its newest 100)
DropReason = Literal["full", "expired"]
# [boot, first_seq, last_seq, reason, ts]: batches boot/first_seq..last_seq dropped by the
# gateway's outbox, the last of them at ts; a JSON array, checked member by member
DroppedRange = tuple[Boot, Seq, Seq, DropReason, Ms]


def _dropped_ranges(ranges: list[DroppedRange]) -> list[DroppedRange]:
    """Each range first <= last, the ranges in (boot, seq) order and apart: what an
    outbox dropped, which the ledger takes as the gateway's word for those batches."""
    for i, (boot, first, last, _reason, _ts) in enumerate(ranges):
        if first > last:
            raise ValueError(f"range {i}: first seq {first} is after last seq {last}")
        if i and (boot, first) <= (ranges[i - 1][0], ranges[i - 1][2]):
            raise ValueError(
                f"range {i} (boot {boot} seq {first}..{last}) does not follow range {i - 1} "
                f"(boot {ranges[i - 1][0]} seq {ranges[i - 1][1]}..{ranges[i - 1][2]}): "
                "give them in (boot, seq) order, without overlap"
            )
    return ranges


class StatusV2(Status):
    v: Literal[2]  # type: ignore[assignment]
    dropped: (
        Annotated[list[DroppedRange], Field(min_length=1, max_length=MAX_DROPPED),
                  AfterValidator(_dropped_ranges)]
        | None
    ) = None  # fmt: skip

    @field_validator("dropped")
    @classmethod
    def _no_later_boot(
        cls, dropped: list[DroppedRange] | None, info: ValidationInfo
    ) -> list[DroppedRange] | None:
        boot = info.data.get("boot")  # absent: the boot itself was refused
        late = [r for r in dropped or () if boot is not None and r[0] > boot]
        if late:
            raise ValueError(
                f"boot {late[0][0]} is after the status's own boot {boot}: a gateway "
                "declares only what it has dropped"
            )
        return dropped


class V2Sample(NamedTuple):
    """One sample of a v2 batch with `WireSample`'s fields, made from the columns only
    where a sample is handled alone (set aside for its time, dead-lettered)."""

    d: str
    t: str
    ts: int
    v: float | str | None
    q: Literal["uncertain", "bad"] | None = None
    s: str | None = None
    gts: int | None = None
    sts: int | None = None

    def model_dump(self, *, exclude_none: bool = False) -> dict[str, Any]:
        """As `WireSample.model_dump`: the same dict for the dead letters."""
        out = self._asdict()
        return {k: v for k, v in out.items() if v is not None} if exclude_none else out


_QUALITY_NAME: tuple[Literal["uncertain", "bad"] | None, ...] = (None, "uncertain", "bad")


@dataclass(frozen=True)
class BatchV2:
    """A contract v2 batch, decoded, its signature verified: what the ledger keeps.
    The samples stay in the decoder's columns; `samples` makes objects of them."""

    gw: str
    boot: int
    seq: int
    sent: int
    columns: BatchColumns
    prev: bytes
    digest: bytes
    signature: bytes

    def __len__(self) -> int:
        return len(self.columns.ts)

    @cached_property
    def samples(self) -> list[V2Sample]:
        """Every sample as an object (an integer as its double, as `WireSample` has it)."""
        return [self.sample(i) for i in range(len(self))]

    def sample(self, i: int) -> V2Sample:
        c = self.columns
        d, t = c.series[c.series_ix[i]]
        v = c.values[i]
        status, gts, sts = c.extras.get(i, (None, None, None))
        return V2Sample(
            d, t, c.ts[i], float(v) if v.__class__ is int else v,
            _QUALITY_NAME[QUALITY_OF_HEAD[c.heads[i]]],
            None if status is None else c.texts[status], gts, sts,
        )  # fmt: skip


Message = DataBatch | BatchV2 | Birth | Status
_MODEL: dict[str, type[DataBatch] | type[Birth] | type[Status]] = {
    "data": DataBatch,
    "birth": Birth,
    "status": Status,
}
_MODEL_V2: dict[str, type[Birth] | type[Status]] = {"birth": BirthV2, "status": StatusV2}
V2_MAGIC = b"FEW"


def parse_topic(topic: str) -> Origin:
    origin = topics.parse_stored(topic)
    if origin is None:
        raise RejectedError(f"topic {topic!r} is not {topics.STORED_PATTERN}")
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
            "(ingest-server registry import) before it publishes"
        )
    try:
        check_signature(payload, key)
    except SignatureError as exc:
        kind = SignatureMismatchError if isinstance(exc, WrongKeyError) else RejectedError
        raise kind(f"signature: {exc}") from None
    message = _validated(_MODEL[origin.kind], payload, origin)
    return origin, message


def _name(origin: Origin) -> str:
    return f"{origin.enterprise}/{origin.site}/{origin.gateway}"


def _not_enrolled_key(origin: Origin, public_key: bytes) -> SignatureMismatchError:
    return SignatureMismatchError(
        f"signature: does not verify with gateway {_name(origin)}'s enrolled key (fingerprint "
        f"{fingerprint(public_key)}); if the gateway made a new key, compare its fingerprint "
        f"and enrol it: ingest-server gateway enroll {origin.enterprise} {origin.site} "
        f"{origin.gateway} --public-key KEY --replace"
    )


def parse_batch_v2(
    origin: Origin,
    payload: bytes,
    public_key: bytes,
    *,
    max_samples: int,
    max_bytes_decompressed: int,
) -> BatchV2:
    """Decode and check a v2 data payload; raises RejectedError with the reason (a
    SignatureMismatchError when the signature does not verify under `public_key`).

    No `WireSample` pass: the decoder (wire_v2._decode) refuses, naming the byte, every
    sample `WireSample` would refuse (tests/ingest/test_v2_limits.py holds each):
      d, t: WireId (1-128 chars, ID_PATTERN)  device and tag tables: length, ID_PATTERN
      ts: Ms (0..MAX_MS)                      ts column `_in(ts, 0, MAX_MS)`
      v: Number (finite double)               ints within i64, mantissas within 2^53
                                              (m / 10^k is finite), f32/f64 NaN/inf refused
      v: Text (no NUL, <= MAX_TEXT_BYTES)     every text table entry NUL-free; each text
                                              value's UTF-8 length
      q: "uncertain" | "bad" | absent         head byte quality 3 refused
      s: StatusText (<= MAX_STATUS_CHARS, no NUL)  status length 1..MAX_STATUS_CHARS
                                              (empty too: the wire leaves it out), NUL above
      gts, sts: Ms                            `_in(gts/sts, 0, MAX_MS)` after adding ts
      extra fields                            none can be encoded: unknown head or extras
                                              bits refused
      boot, seq, sent (DataBatch)             header ranges: 1..MAX_BOOT, 1..MAX_SEQ,
                                              0..MAX_MS
    Strings come from strict UTF-8, so none holds a lone surrogate. The constants are
    the same objects' values (a test compares them)."""
    try:
        cols = decode_columns_v2(
            payload, max_samples=max_samples, max_bytes_decompressed=max_bytes_decompressed
        )
    except WireV2Error as exc:
        raise RejectedError(f"v2 payload: {exc}") from None
    if cols.gw != origin.gateway:
        raise RejectedError(f"body says gateway {_short(cols.gw)}, topic says {origin.gateway!r}")
    try:
        digest = cols.digest()
    except ValueError as exc:  # the decoder's checks should leave nothing for this
        raise RejectedError(f"v2 payload: {exc}") from None
    if not verify_batch(public_key, digest, cols.signature):
        raise _not_enrolled_key(origin, public_key)
    return BatchV2(cols.gw, cols.boot, cols.seq, cols.sent, cols, cols.prev, digest, cols.signature)


def parse_message_v2(origin: Origin, payload: bytes, public_key: bytes) -> Birth | Status:
    """A birth or status of a contract-2 gateway: JSON with "v": 2 and an Ed25519 "sig";
    raises RejectedError with the reason."""
    try:
        check_signature_v2(payload, public_key)
    except WrongKeyError:
        raise _not_enrolled_key(origin, public_key) from None
    except SignatureError as exc:
        if _V1_SIG_TAIL.search(payload):
            raise enrolled_for(origin, 2) from None
        raise RejectedError(f"signature: {exc}") from None
    return cast("Birth | Status", _validated(_MODEL_V2[origin.kind], payload, origin))


_V1_SIG_TAIL = re.compile(rb',"sig":"[0-9a-f]{64}"\}$')


def enrolled_for(origin: Origin, contract: int) -> SignatureMismatchError:
    """A message of the other contract than the gateway's (a SignatureMismatchError: the
    gateway may have been enrolled or re-added since its entry was cached)."""
    e, s, g = origin.enterprise, origin.site, origin.gateway
    if contract == 2:
        return SignatureMismatchError(
            f"gateway {_name(origin)} is enrolled for contract v2: it must sign with its own "
            "key (agent: gateway.key_file, contract v2), not the HMAC key; to take v1 from "
            f"it again, give it new secrets without a public key (ingest-server gateway add "
            f"{e} {s} {g})"
        )
    return SignatureMismatchError(
        f"gateway {_name(origin)} is enrolled for contract v1 (HMAC) and sent a v2 batch: "
        f"enrol its public key (edge-agent keys init prints it): ingest-server gateway "
        f"enroll {e} {s} {g} --public-key KEY"
    )


def batch_key_v2(payload: bytes) -> tuple[int, int] | None:
    """(boot, seq) from a v2 payload's header, or None: so that a batch refused for its
    content is acknowledged as dead even when the rest of it cannot be decoded."""
    if payload[:4] != V2_MAGIC + b"\x02":
        return None
    pos = 5
    out: list[int] = []
    for _ in range(3):  # gw length, boot, seq
        n = shift = 0
        while True:
            if pos >= len(payload) or shift > 63:
                return None
            b = payload[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        out.append(n)
        if len(out) == 1:
            pos += n  # skip the gw
    boot, seq = out[1], out[2]
    if not (1 <= boot <= MAX_BOOT and 1 <= seq <= MAX_SEQ):
        return None
    return boot, seq


_WHY = {
    "boot": "the server stores boot as a 32-bit integer",
    "seq": "the server stores seq as a 64-bit integer",
}
_MS_FIELDS = frozenset({"ts", "gts", "sts", "sent"})
_ID_FIELDS = frozenset({"d", "t", "id"})
# the step pydantic adds for each member of a union (`v`: a number, a text or null)
_MEMBER = re.compile(r"^(float|int|str|bool|function-after\[.*\])$")
_KIND = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false"}


def _validated(model: Any, payload: bytes, origin: Origin) -> Any:
    """A signed JSON message against its model, straight from the bytes (pydantic's JSON
    parser, no intermediate dicts), and its `gw` against the topic's gateway."""
    try:
        message = model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise RejectedError(f"not JSON: {first['msg']}") from None
        raise RejectedError("schema: " + "; ".join(schema_problems(exc)[:5])) from None
    if message.gw != origin.gateway:
        raise RejectedError(
            f"body says gateway {_short(message.gw)}, topic says {origin.gateway!r}"
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
            problems.append(f"{where}: {_short(errs[0]['input'])} is not {' or '.join(kinds)}")
    return problems


def _short(value: object, limit: int = 60) -> str:
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
            f"{_short(err['input'])} is not a time: give ms since 1970-01-01 UTC, 0 to {MAX_MS} "
            "(9999-12-31T23:59:59.999Z)"
        )
    if name in _WHY and kind == "less_than_equal":
        return f"{msg} ({_WHY[str(name)]})"
    if name in _ID_FIELDS and kind.startswith("string_"):
        return (
            f"{_short(err['input'])} is not an id: 1 to {MAX_ID_CHARS} ASCII letters, digits, "
            "'_', '.' or '-', the first not '.' or '-'"
        )
    return msg


def split_v2_by_clock(
    batch: BatchV2, *, now_ms: int, max_past_ms: int, max_future_ms: int
) -> tuple[list[int] | None, list[tuple[int, V2Sample, str]]]:
    """`split_by_clock` for a v2 batch's columns: the places of the plausible samples
    (None: all of them, the usual case, found with min and max) and the others, each with
    its place and the reason."""
    lo, hi = now_ms - max_past_ms, now_ms + max_future_ms
    ts = batch.columns.ts
    if not ts or (lo <= min(ts) and max(ts) <= hi):
        return None, []
    ok = [lo <= t <= hi for t in ts]
    bad = [
        (i, x, _implausible(x, max_past_ms, max_future_ms))
        for i in compress(range(len(ts)), [not o for o in ok])
        for x in (batch.sample(i),)
    ]
    return list(compress(range(len(ts)), ok)), bad


def _implausible(s: WireSample | V2Sample, max_past_ms: int, max_future_ms: int) -> str:
    return (
        f"sample time {s.ts} ms is outside [now - {max_past_ms}, now + "
        f"{max_future_ms}] ms: check the clocks of {s.d} and its gateway (NTP)"
    )


def split_by_clock(
    batch: DataBatch | BatchV2, *, now_ms: int, max_past_ms: int, max_future_ms: int
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
            bad.append((s, _implausible(s, max_past_ms, max_future_ms)))
    return good, bad
