"""Contract v2: encoding the compact data payload (the format, its constants and the
decoder are in wire_v2.py; docs/mqtt.md gives the layout byte for byte)."""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

from edge_agent.contract.digest import DIGEST_BYTES, batch_digest, from_wire
from edge_agent.contract.identity import SIGNATURE_BYTES, Signer
from edge_agent.contract.wire import MAX_MS, MAX_STATUS_CHARS, MAX_TEXT_BYTES
from edge_agent.contract.wire_v2 import (
    DEFAULT_LEVEL,
    EXTRAS,
    FLAG_ZLIB,
    I64,
    ID_PATTERN,
    K_DEC,
    K_F32,
    K_F64,
    K_INT,
    K_TEXT,
    MAGIC,
    MAX_BOOT,
    MAX_DECIMALS,
    MAX_ID_CHARS,
    MAX_MANTISSA,
    MAX_SEQ,
    POW10,
    VERSION,
    WIDTH_FORMAT,
    X_GTS,
    X_STATUS,
    X_STS,
)

_QUALITY = {"uncertain": 1, "bad": 2}
_F32 = struct.Struct(">f")


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zz(n: int) -> int:
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def _packed(values: list[int]) -> bytes:
    """A packed integer column (module docstring); empty when there are no values."""
    if not values:
        return b""
    lo, hi = min(values), max(values)
    head = _varint(_zz(lo))
    span = hi - lo
    if span == 0:
        return head + b"\x00"
    w = 1 if span < 0x100 else 2 if span < 0x10000 else 4 if span < 0x100000000 else 8
    if lo:
        values = [v - lo for v in values]
    return head + bytes((w,)) + struct.pack(f">{len(values)}{WIDTH_FORMAT[w]}", *values)


def _table(entries: Sequence[str]) -> bytes:
    parts = [_varint(len(entries))]
    for text in entries:
        raw = text.encode()
        parts += (_varint(len(raw)), raw)
    return b"".join(parts)


def _refs(keys: Sequence[Any], table: dict[Any, int]) -> list[int]:
    """References in the "0 = next new entry, else index + 1" form; fills `table`."""
    out = []
    for key in keys:
        i = table.get(key)
        if i is None:
            table[key] = len(table)
            out.append(0)
        else:
            out.append(i + 1)
    return out


def _floats(  # noqa: PLR0912
    values: list[float],
) -> tuple[list[int], list[int], list[float], list[float]]:
    """Each float's kind and the columns: mantissas (a decimal m / 10^k, k <= 9, |m| <=
    2^53, which the receiver divides back exactly), f32 (exact in binary32), else f64.
    Fast path: one k for the whole batch (a Modbus scale); else per value."""
    if not values:
        return [], [], [], []
    neg_zero = 0.0 in values and any(v == 0.0 and math.copysign(1.0, v) < 0 for v in values)
    if not neg_zero:
        for k in range(4):
            p = POW10[k]
            try:
                fits = all(round(v * p) / p == v for v in values)
            except (ValueError, OverflowError):  # NaN or infinite (refused below), or huge
                break
            if fits:
                ms = [round(v * p) for v in values]
                if min(ms) >= -MAX_MANTISSA and max(ms) <= MAX_MANTISSA:
                    return [K_DEC + k] * len(values), ms, [], []
                break
    kinds: list[int] = []
    ms, f32s, f64s = [], [], []
    for v in values:
        r = repr(v)
        a, dot, b = r.partition(".")
        if dot and "e" not in b and len(b) <= MAX_DECIMALS and r != "-0.0":
            k = 0 if b == "0" else len(b)
            m = int(a + b) if k else int(a)
            if -MAX_MANTISSA <= m <= MAX_MANTISSA:
                kinds.append(K_DEC + k)
                ms.append(m)
                continue
        if v - v != 0.0:
            raise ValueError(f"a value is {v!r}: NaN and infinities are not measurements")
        try:
            exact32 = _F32.unpack(_F32.pack(v))[0] == v
        except OverflowError:
            exact32 = False
        if exact32:
            kinds.append(K_F32)
            f32s.append(v)
        else:
            kinds.append(K_F64)
            f64s.append(v)
    return kinds, ms, f32s, f64s


def _body(samples: Sequence[Mapping[str, Any]]) -> bytes:  # noqa: PLR0912, PLR0915
    n = len(samples)
    series: dict[tuple[str, str], int] = {}
    texts: dict[str, int] = {}
    series_refs, text_keys, ts = [], [], []
    heads = bytearray(n)
    extras = bytearray()
    ints: list[int] = []
    float_at: list[int] = []
    float_vals: list[float] = []
    gts_d: list[int] = []
    sts_d: list[int] = []
    for i, s in enumerate(samples):
        key = (s["d"], s["t"])
        j = series.get(key)  # _refs inlined: a call per sample costs more than the lines
        if j is None:
            series[key] = len(series)
            series_refs.append(0)
        else:
            series_refs.append(j + 1)
        t = s["ts"]
        ts.append(t)
        v = s["v"]
        cls = v.__class__
        head = 0
        if cls is float:
            float_at.append(i)
            float_vals.append(v)
        elif cls is str:
            head = K_TEXT << 2
            text_keys.append(v)
        elif v is None:
            pass
        elif cls is int or isinstance(v, int):  # a bool travels as its integer
            if -I64 <= v < I64:
                head = K_INT << 2
                ints.append(int(v))
            else:  # beyond i64: its double, which is what the digest covers
                float_at.append(i)
                float_vals.append(float(v))
        elif isinstance(v, str):
            head = K_TEXT << 2
            text_keys.append(str.__str__(v))
        elif isinstance(v, float):
            float_at.append(i)
            float_vals.append(float(v))
        else:
            raise ValueError(f"samples[{i}].v: {v!r} is not a number, a string or None")
        if len(s) > 4:  # q, s, gts or sts
            q = s.get("q")
            if q is not None:
                try:
                    head |= _QUALITY[q]
                except KeyError:
                    raise ValueError(f"samples[{i}].q: {q!r} is not uncertain or bad") from None
            x = 0
            status = s.get("s")
            if status:
                if len(status) > MAX_STATUS_CHARS:
                    raise ValueError(f"samples[{i}].s: over {MAX_STATUS_CHARS} characters")
                x |= X_STATUS
                text_keys.append(status)
            for bit, name, col in ((X_GTS, "gts", gts_d), (X_STS, "sts", sts_d)):
                other = s.get(name)
                if other is not None:
                    if not 0 <= other <= MAX_MS:
                        raise ValueError(f"samples[{i}].{name}: {other!r} is outside 0..{MAX_MS}")
                    x |= bit
                    col.append(other - t)
            if x:
                head |= EXTRAS
                extras.append(x)
        heads[i] = head
    if ts and not (min(ts) >= 0 and max(ts) <= MAX_MS):
        raise ValueError(f"samples: a ts outside 0..{MAX_MS} ms")
    kinds, mantissas, f32s, f64s = _floats(float_vals)
    for i, k in zip(float_at, kinds, strict=True):
        heads[i] |= k << 2
    text_refs = _refs(text_keys, texts)
    devices: dict[str, int] = {}
    tags: dict[str, int] = {}
    device_refs = _refs([d for d, _ in series], devices)
    tag_refs = _refs([t for _, t in series], tags)
    for name in (*devices, *tags):
        _check_id("samples: device or tag", name)
    for text in texts:
        if "\x00" in text or len(text.encode()) > MAX_TEXT_BYTES:
            raise ValueError(f"samples: the text {text[:40]!r} has a NUL or is over 4096 bytes")
    parts = [
        _varint(n),
        _table(list(devices)),
        _table(list(tags)),
        _table(list(texts)),
        _varint(len(series)),
        _packed(device_refs),
        _packed(tag_refs),
        bytes(heads),
        _packed(series_refs),
    ]
    if n:
        parts += (_varint(ts[0]), _packed([b - a for a, b in pairwise(ts)]))
    parts += (
        bytes(extras),
        _packed(text_refs),
        _packed(ints),
        _packed(mantissas),
        struct.pack(f">{len(f32s)}f", *f32s),
        struct.pack(f">{len(f64s)}d", *f64s),
        _packed(gts_d),
        _packed(sts_d),
    )
    return b"".join(parts)


def _check_id(field: str, text: object) -> None:
    if not isinstance(text, str) or len(text) > MAX_ID_CHARS or not ID_PATTERN.match(text):
        raise ValueError(
            f"{field}: {text!r} is not 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 _ . - "
            "(the first not . or -)"
        )


def _header(  # noqa: PLR0917
    gw: str, boot: int, seq: int, sent: int, prev: bytes, signature: bytes
) -> bytes:
    _check_id("gw", gw)
    for name, value, lo, hi in (
        ("boot", boot, 1, MAX_BOOT), ("seq", seq, 1, MAX_SEQ), ("sent", sent, 0, MAX_MS)
    ):  # fmt: skip
        if value.__class__ is not int or not lo <= value <= hi:
            raise ValueError(f"{name}: {value!r} is not an integer in {lo}..{hi}")
    if len(prev) != DIGEST_BYTES or len(signature) != SIGNATURE_BYTES:
        raise ValueError("prev is 32 bytes and signature 64")
    raw = gw.encode()
    return b"".join(
        (_varint(len(raw)), raw, _varint(boot), _varint(seq), _varint(sent), prev, signature)
    )


def encode_batch_v2(
    *,
    gw: str,
    boot: int,
    seq: int,
    sent: int,
    prev: bytes,
    signature: bytes,
    samples: Sequence[Mapping[str, Any]],
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """The payload of a batch. `samples` are wire sample dicts (fitted to the contract:
    wire._sample_dicts); `sent` is ms. `level` 0 never compresses; 1-9 is zlib's level,
    used only when the compressed body is smaller."""
    if level not in range(10):
        raise ValueError(f"level: {level!r} is not a zlib level 0..9 (0: never compress)")
    try:
        head = _header(gw, boot, seq, sent, bytes(prev), bytes(signature))
        body = _body(samples)
    except (KeyError, TypeError, struct.error, OverflowError, UnicodeEncodeError) as exc:
        raise ValueError(f"samples: cannot be encoded ({exc!r})") from None
    if level:
        packed = zlib.compress(body, level)
        framed = _varint(len(body)) + packed
        if len(framed) < len(body):
            return MAGIC + bytes((VERSION, FLAG_ZLIB)) + head + framed
    return MAGIC + bytes((VERSION, 0)) + head + body


def seal_batch_v2(
    signer: Signer,
    *,
    gw: str,
    boot: int,
    seq: int,
    sent: int,
    prev: bytes,
    samples: Sequence[Mapping[str, Any]],
    level: int = DEFAULT_LEVEL,
) -> tuple[bytes, bytes]:
    """(payload, digest): the gateway's whole step; the digest is the next batch's prev."""
    digest = batch_digest(gw=gw, boot=boot, seq=seq, prev=prev, samples=from_wire(samples))
    signature = signer.sign(digest)
    payload = encode_batch_v2(gw=gw, boot=boot, seq=seq, sent=sent, prev=prev,
                              signature=signature, samples=samples, level=level)  # fmt: skip
    return payload, digest


def split_samples(
    samples: Sequence[Mapping[str, Any]], *, max_bytes: int, level: int = DEFAULT_LEVEL
) -> list[Sequence[Mapping[str, Any]]]:
    """Consecutive chunks of `samples` each of whose payload is at most `max_bytes`,
    whatever gw-sized seq, boot and sent the agent gives it later (sized at their
    maxima). A sample that alone does not fit raises ValueError."""

    def size(chunk: Sequence[Mapping[str, Any]]) -> int:
        return len(encode_batch_v2(gw=_GW_PROBE, boot=MAX_BOOT, seq=MAX_SEQ, sent=MAX_MS,
                                   prev=bytes(32), signature=bytes(64), samples=chunk,
                                   level=level))  # fmt: skip

    # room for a longer gw than the probe's: the probe is MAX_ID_CHARS long already
    whole = size(samples)
    if whole <= max_bytes:
        return [samples]
    per = max(1, len(samples) * max_bytes // whole * 9 // 10)
    todo = [samples[i : i + per] for i in range(0, len(samples), per)]
    out: list[Sequence[Mapping[str, Any]]] = []
    while todo:
        chunk = todo.pop(0)
        if size(chunk) <= max_bytes:
            out.append(chunk)
        elif len(chunk) == 1:
            raise ValueError(f"a sample does not fit in {max_bytes} bytes: {chunk[0]!r:.200}")
        else:
            half = len(chunk) // 2
            todo[:0] = [chunk[:half], chunk[half:]]
    return out


_GW_PROBE = "g" * MAX_ID_CHARS
