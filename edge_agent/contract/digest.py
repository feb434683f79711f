"""Contract v2 (issue 16): the canonical digest of a batch, and its Ed25519 signature.

    samples, as the wire carries them --batch_digest--> 32 bytes --sign_batch--> 64 bytes
    (gateway: from_wire / digest_samples; server: from_wire;        (gateway's Signer)
     offline verifier: stored rows, column-wise)                    --verify_batch--> bool

The digest is SHA-256 over a header H and one fixed 26-byte record per sample R, all
integers big-endian (docs/mqtt.md, "Contract v2 (being built)", has the table and a test
vector; tests/contract/test_digest.py holds the same vector):

    H  b"fe/v2/batch\\0"  gw (u16 len + UTF-8)  boot u32  seq u64  prev 32 bytes
       series table: u32 count, per entry device, tag (each u16 len + UTF-8)
       text table:   u32 count, per entry u32 len + UTF-8
       n_samples u32
    R  series u32  ts_ms i64  quality u8  kind u8  status u32  value 8 bytes

Tables list distinct entries in order of first appearance (texts: a sample's text value,
then its status). A status that is None or empty has no entry and is 0xFFFFFFFF, as the
wire leaves an empty status out. `gts`, `sts` and `sent` are not covered: diagnostics.

Pure and fast: one pass with precompiled structs and dict lookups for the tables; a batch
that fails any check is walked again slowly (`_explain`) to name the sample and field.
`columns_digest` is the gateway's faster way to the same bytes: the encoder has already
built the tables and the columns (wire_v2_encode.seal_batch_v2), so the records are
interleaved from packed columns in C rather than packed one sample at a time.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any, NamedTuple

from edge_agent.contract.identity import Signer, verify
from edge_agent.contract.sample import Sample
from edge_agent.contract.wire import sample_dict

MAGIC = b"fe/v2/batch\x00"
DIGEST_BYTES = 32
ZERO = bytes(DIGEST_BYTES)  # `prev` of the first batch, and of the first after a gap
RECORD_BYTES = 26
NO_STATUS = 0xFFFFFFFF
GOOD, UNCERTAIN, BAD = 0, 1, 2
KIND_NULL, KIND_NUMBER, KIND_TEXT = 0, 1, 2

_U16, _U32, _U64 = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF
_I64 = 1 << 63
_NUMBER = struct.Struct(">IqBBId")  # value: IEEE 754 binary64
_INDEX = struct.Struct(">IqBBIQ")  # value: text-table index (kind 2), or 0 (kind 0)
_HEAD = struct.Struct(">IQ32s")  # boot, seq, prev
_COUNT = struct.Struct(">I")
_LEN16 = struct.Struct(">H")
_QUALITIES = frozenset({GOOD, UNCERTAIN, BAD})
_WIRE_QUALITY = {"good": GOOD, "uncertain": UNCERTAIN, "bad": BAD}
assert _NUMBER.size == _INDEX.size == RECORD_BYTES
_FIELDS = ((4, 0), (8, 4), (1, 12), (1, 13), (4, 14), (8, 18))  # (width, offset) in a record


class DigestSample(NamedTuple):
    """One sample as the wire carries it: what the digest covers.

    A NamedTuple, like `Sample`, because a batch builds one per sample; a plain 6-tuple
    in this order does as well."""

    device: str
    tag: str
    ts_ms: int  # ms since the Unix epoch, UTC
    value: float | int | str | None
    quality: int  # GOOD 0, UNCERTAIN 1, BAD 2
    status: str | None


# A DigestSample, or a plain tuple in its order (built in half the time)
SampleRow = tuple[str, str, int, float | int | str | None, int, str | None]


def from_wire(samples: Iterable[Mapping[str, Any]]) -> list[SampleRow]:
    """Sample objects as the contract carries them (``d t ts v`` and, when not good,
    ``q s``; docs/mqtt.md), e.g. a received payload's ``samples``, or those the gateway
    is about to send."""
    q = _WIRE_QUALITY
    try:
        return [
            (s["d"], s["t"], s["ts"], s["v"], q[s.get("q", "good")], s.get("s")) for s in samples
        ]
    except KeyError as exc:
        raise ValueError(f"a wire sample without {exc} or with an unknown quality") from None


def digest_samples(samples: Iterable[Sample]) -> list[SampleRow]:
    """What the wire carries for these samples: each made to fit the contract as
    `wire.sample_dict` makes it (ts rounded to ms, a NaN sent as bad quality, ...).
    The gateway's fast way is `from_wire` over the sample objects it sends."""
    return from_wire(sample_dict(s) for s in samples)


def batch_digest(
    *, gw: str, boot: int, seq: int, prev: bytes, samples: Sequence[SampleRow]
) -> bytes:
    """The 32-byte SHA-256 digest of a batch (module docstring; docs/mqtt.md)."""
    head = _head(gw, boot, seq, prev)
    try:
        records, series, texts = _records(samples)
        tables = _tables(series, texts)
    except (ValueError, TypeError, OverflowError, struct.error) as exc:
        _explain(samples)
        raise ValueError(f"samples: cannot be digested ({exc})") from exc
    if len(records) > _U32:
        raise ValueError(f"samples: {len(records)} samples, over the u32 count 4294967295")
    h = hashlib.sha256(head)
    h.update(tables)
    h.update(_COUNT.pack(len(records)))
    h.update(b"".join(records))
    return h.digest()


def columns_digest(
    *,
    gw: str,
    boot: int,
    seq: int,
    prev: bytes,
    series: Sequence[tuple[str, str]],
    texts: Sequence[str],
    columns: Sequence[bytes],
) -> bytes:
    """`batch_digest` of a batch given as its tables (distinct entries in order of first
    appearance) and its six record fields packed column by column, each n big-endian
    items: series u32, ts i64, quality u8, kind u8, status u32, value 8 bytes.

    For an encoder that has built and checked all of these already: the tables' strings
    are checked here (as `batch_digest` checks them), the columns only for their lengths;
    values in range (quality 0-2, finite numbers, indices into the tables) are the
    caller's to vouch for. Each distinct device and tag is encoded once, not per series."""
    head = _head(gw, boot, seq, prev)
    n, rest = divmod(len(columns[0]), 4) if len(columns) == len(_FIELDS) else (0, 1)
    if rest or [len(c) for c in columns] != [w * n for w, _ in _FIELDS]:
        raise ValueError(
            "columns: six columns of n packed items (4, 8, 1, 1, 4 and 8 bytes each) wanted"
        )
    if n > _U32 or len(series) > _U32 or len(texts) > _U32:
        raise ValueError("samples: over 4294967295 samples or table entries")
    devices, tags = [d for d, _ in series], [t for _, t in series]
    dev = {d: _id("device", d) for d in dict.fromkeys(devices)}
    tag = {t: _id("tag", t) for t in dict.fromkeys(tags)}
    parts = [head, _COUNT.pack(len(series))]
    parts += chain.from_iterable(
        zip(map(dev.__getitem__, devices), map(tag.__getitem__, tags), strict=True)
    )
    parts.append(_COUNT.pack(len(texts)))
    for text in texts:
        raw = _utf8("text", text)
        parts += (_COUNT.pack(len(raw)), raw)
    parts.append(_COUNT.pack(n))
    # byte j of every record's field at `offset` is byte j of each column item: strided
    # slice copies, 26 of them per batch whatever its size
    records = bytearray(RECORD_BYTES * n)
    for column, (width, offset) in zip(columns, _FIELDS, strict=True):
        for j in range(width):
            records[offset + j :: RECORD_BYTES] = column[j::width]
    h = hashlib.sha256(b"".join(parts))
    h.update(records)
    return h.digest()


def sign_batch(signer: Signer, digest: bytes) -> bytes:
    """The gateway's 64-byte Ed25519 signature of a batch digest."""
    return signer.sign(_checked_digest(digest))


def verify_batch(public_key: bytes, digest: bytes, signature: bytes) -> bool:
    """Whether `signature` is the key's signature of this batch digest."""
    return verify(public_key, signature, _checked_digest(digest))


def _checked_digest(digest: bytes) -> bytes:
    if len(digest) != DIGEST_BYTES:
        raise ValueError(f"digest: a batch digest is {DIGEST_BYTES} bytes, not {len(digest)}")
    return bytes(digest)


def _head(gw: str, boot: int, seq: int, prev: bytes) -> bytes:
    for name, number, top, kind in (("boot", boot, _U32, "u32"), ("seq", seq, _U64, "u64")):
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= top:
            raise ValueError(f"{name}: {number!r} is not an integer in the {kind} range 0..{top}")
    if not isinstance(prev, bytes | bytearray | memoryview) or len(prev) != DIGEST_BYTES:
        got = f"{len(prev)} bytes" if isinstance(prev, bytes | bytearray) else type(prev).__name__
        raise ValueError(
            f"prev: the previous batch's digest is {DIGEST_BYTES} bytes (ZERO when there is "
            f"none), not {got}"
        )
    return MAGIC + _id("gw", gw) + _HEAD.pack(boot, seq, bytes(prev))


def _id(field: str, text: object) -> bytes:
    """A gateway, device or tag id: u16 length + UTF-8."""
    raw = _utf8(field, text)
    if len(raw) > _U16:
        raise ValueError(f"{field}: {len(raw)} bytes of UTF-8, over the u16 length 65535")
    return _LEN16.pack(len(raw)) + raw


def _utf8(field: str, text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{field}: {text!r} is not a string")
    try:
        return text.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{field}: {text[exc.start : exc.end]!r} at {exc.start} cannot be UTF-8 ({exc.reason})"
        ) from None


def _records(
    samples: Iterable[SampleRow],
) -> tuple[list[bytes], dict[tuple[str, str], int], dict[str, int]]:
    """The records and the two tables, in one pass. Checks only what packing does not:
    quality and finite numbers (the rest fails in struct or in `_tables`)."""
    series: dict[tuple[str, str], int] = {}
    texts: dict[str, int] = {}
    records: list[bytes] = []
    append = records.append
    pack_number, pack_index = _NUMBER.pack, _INDEX.pack
    in_series, in_texts = series.setdefault, texts.setdefault
    qualities = _QUALITIES
    for device, tag, ts_ms, given, quality, status in samples:
        i = in_series((device, tag), len(series))
        if quality not in qualities:
            raise ValueError("quality")
        value, cls = given, given.__class__
        if cls is not float and cls is not str and given is not None:
            value = _plain(given)
            cls = value.__class__
        if cls is str:
            t = in_texts(value, len(texts))  # type: ignore[arg-type]  # cls is str
            s = in_texts(status, len(texts)) if status else NO_STATUS
            append(pack_index(i, ts_ms, quality, KIND_TEXT, s, t))
            continue
        s = in_texts(status, len(texts)) if status else NO_STATUS
        if value is None:
            append(pack_index(i, ts_ms, quality, KIND_NULL, s, 0))
        elif value - value != 0.0:  # type: ignore[operator]  # a float: NaN or infinite?
            raise ValueError("value")  # not a measurement, never on the wire
        else:
            append(pack_number(i, ts_ms, quality, KIND_NUMBER, s, value))
    return records, series, texts


def _tables(series: dict[tuple[str, str], int], texts: dict[str, int]) -> bytes:
    for name, table in (("series", series), ("text", texts)):
        if len(table) > _U32:
            raise ValueError(f"the {name} table has {len(table)} entries, over 4294967295")
    parts = [_COUNT.pack(len(series))]
    parts += [_id("device", d) + _id("tag", t) for d, t in series]  # dicts keep insertion order
    parts.append(_COUNT.pack(len(texts)))
    for text in texts:
        raw = _utf8("text", text)
        if len(raw) > _U32:
            raise ValueError(f"text: {len(raw)} bytes of UTF-8, over the u32 length")
        parts += (_COUNT.pack(len(raw)), raw)
    return b"".join(parts)


def _explain(samples: Iterable[Any]) -> None:
    """Raise a ValueError naming the first sample and field that `_records` refused."""
    for n, sample in enumerate(samples):
        where = f"samples[{n}]"
        try:
            device, tag, ts_ms, value, quality, status = sample
        except (TypeError, ValueError):
            raise ValueError(
                f"{where}: not a (device, tag, ts_ms, value, quality, status) sample"
            ) from None
        _id(f"{where}.device", device)
        _id(f"{where}.tag", tag)
        if not isinstance(ts_ms, int) or not -_I64 <= ts_ms < _I64:
            raise ValueError(f"{where}.ts_ms: {ts_ms!r} is not an integer of ms within an i64")
        if quality not in _QUALITIES or not isinstance(quality, int):
            raise ValueError(
                f"{where}.quality: {quality!r} is not 0 (good), 1 (uncertain) or 2 (bad)"
            )
        if isinstance(value, str):
            _utf8(f"{where}.value", value)
        elif value is not None:
            _number(f"{where}.value", value)
        if status:
            _utf8(f"{where}.status", status)


def _plain(value: object) -> float | str:
    """An int or bool as its double, a str subclass (a StrEnum) as its text. Anything
    else is refused: float() alone would take bytes and Decimal too."""
    if value.__class__ is int or isinstance(value, int | float):  # the first: fast path
        return float(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise TypeError("not a number, a string or None")


def _number(field: str, value: object) -> None:
    try:
        f = _plain(value)
    except TypeError:
        raise ValueError(f"{field}: {value!r} is not a number, a string or None") from None
    except OverflowError:
        raise ValueError(f"{field}: {value!r} is beyond a double's range") from None
    if isinstance(f, float) and f - f != 0.0:
        raise ValueError(f"{field}: {value!r}: NaN and infinities are not measurements")
