"""What the server accepts from a contract-2 gateway (issue 16; docs/mqtt.md "Contract v2"),
checked: the v2 half of payload.py, whose schema, limits and errors it shares.

    topic, raw bytes (b"FEW..."), enrolled key --parse_batch_v2--> BatchV2 (columns)
    topic, JSON with "v": 2, enrolled key     --parse_message_v2--> BirthV2 | StatusV2
                                        \\--> RejectedError(reason, code)  (to the dead letters)

A data payload starting with b"FEW" is decoded (wire_v2.py, with the decoder's limits),
must name the topic's gateway, and its signature must verify under the gateway's enrolled
Ed25519 key over the digest recomputed from the decoder's columns. The decoder holds every
sample to each limit `WireSample` checks (the mapping is at `parse_batch_v2`), so the
batch stays in columns (`BatchV2.columns`, stored by copybin.encode_v2) with no per-sample
schema pass. Births and status of a contract-2 gateway are v1's JSON with "v": 2 and an
Ed25519 "sig"; a v2 status may declare the batches the gateway's outbox dropped
(`dropped`: at most MAX_DROPPED ranges [boot, first_seq, last_seq, reason, ts], in (boot,
seq) order, not overlapping, none of a boot after the status's own).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from itertools import compress
from typing import Annotated, Any, Literal, NamedTuple, cast

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from edge_agent.contract.digest import verify_batch
from edge_agent.contract.identity import fingerprint
from edge_agent.contract.topics import Origin
from edge_agent.contract.wire import SignatureError, check_signature_v2
from edge_agent.contract.wire import SignatureMismatchError as WrongKeyError
from edge_agent.contract.wire_v2 import (
    QUALITY_OF_HEAD,
    BatchColumns,
    WireV2Error,
    decode_columns_v2,
)
from ingest_server.ingest.payload import (
    MAX_BOOT,
    MAX_SEQ,
    Birth,
    Boot,
    DataBatch,
    Ms,
    RejectedError,
    Seq,
    SignatureMismatchError,
    Status,
    implausible,
    short,
    validated,
)


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


Message = DataBatch | BatchV2 | Birth | Status  # what check.py hands the store
_MODEL_V2: dict[str, type[Birth] | type[Status]] = {"birth": BirthV2, "status": StatusV2}
V2_MAGIC = b"FEW"


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
        raise RejectedError(f"v2 payload: {exc}", code="v2_payload") from None
    if cols.gw != origin.gateway:
        raise RejectedError(
            f"body says gateway {short(cols.gw)}, topic says {origin.gateway!r}",
            code="gateway_mismatch",
        )
    try:
        digest = cols.digest()
    except ValueError as exc:  # the decoder's checks should leave nothing for this
        raise RejectedError(f"v2 payload: {exc}", code="v2_payload") from None
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
        raise RejectedError(f"signature: {exc}", code="no_signature") from None
    return cast("Birth | Status", validated(_MODEL_V2[origin.kind], payload, origin))


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
            f"{e} {s} {g})",
            code="contract_mismatch",
        )
    return SignatureMismatchError(
        f"gateway {_name(origin)} is enrolled for contract v1 (HMAC) and sent a v2 batch: "
        f"enrol its public key (edge-agent keys init prints it): ingest-server gateway "
        f"enroll {e} {s} {g} --public-key KEY",
        code="contract_mismatch",
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
        (i, x, implausible(x, max_past_ms, max_future_ms))
        for i in compress(range(len(ts)), [not o for o in ok])
        for x in (batch.sample(i),)
    ]
    return list(compress(range(len(ts)), ok)), bad
