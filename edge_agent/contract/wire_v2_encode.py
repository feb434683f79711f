"""Contract v2: encoding the compact data payload (the format, its constants and the
decoder are in wire_v2.py; docs/mqtt.md gives the layout byte for byte)."""

from __future__ import annotations

import math
import struct
import zlib
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import compress, count, islice, pairwise, repeat
from operator import add, itemgetter, lt, mul, not_, sub
from typing import Any, NamedTuple

from edge_agent.contract.digest import (
    DIGEST_BYTES,
    KIND_NUMBER,
    KIND_TEXT,
    NO_STATUS,
    batch_digest,
    columns_digest,
    from_wire,
)
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
_Q = struct.Struct(">Q")
_D, _T, _TS, _V = itemgetter("d"), itemgetter("t"), itemgetter("ts"), itemgetter("v")
_KNOWN_IDS: set[str] = set()  # ids `_check_id` passed: the agent sends the same ones again
_KNOWN_IDS_MAX = 100_000


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
    """A packed integer column (module docstring); empty when there are no values.
    The width is the narrowest struct packs without a range error, which is the one the
    span (max - min) calls for: one pass fewer than taking the max."""
    if not values:
        return b""
    lo = min(values)
    head = _varint(_zz(lo))
    if lo:
        values = list(map(sub, values, repeat(lo)))
    n = len(values)
    for w in (1, 2, 4, 8):
        try:
            raw = struct.pack(f">{n}{WIDTH_FORMAT[w]}", *values)
        except struct.error:
            if w == 8:
                raise
            continue
        if w == 1 and raw.count(0) == n:  # every value is the minimum
            return head + b"\x00"
        return head + bytes((w,)) + raw
    raise AssertionError  # unreachable: the last width returns or raises


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
    # a -0.0 among the zeros (C loops: a Modbus batch holds many zeros)
    zeros = filter((0.0).__eq__, values)
    neg_zero = min(map(math.copysign, repeat(1.0), zeros), default=1.0) < 0.0
    if not neg_zero:
        for k in range(4):
            # `round(v * p) / p == v` for every v, with the loops in C: a k that a first
            # few values refuse is left at once, as is k = 0 at the first fraction. Where
            # |m| <= 2^53 (all that is kept) m / float(p) is m / p exactly.
            p = POW10[k]
            fp = float(p)
            try:
                if k == 0:
                    fits = all(map(float.is_integer, values))
                else:
                    fits = all(round(v * p) / p == v for v in values[:8])
                if fits:
                    ms = list(map(float.__round__, map(fp.__mul__, values)))  # = round()
                    fits = list(map(fp.__rtruediv__, ms)) == values
            except (ValueError, OverflowError):  # NaN or infinite (refused below), or huge
                break
            if fits:
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


def _reference_body(samples: Sequence[Mapping[str, Any]]) -> bytes:  # noqa: PLR0912, PLR0915
    """The body, one sample at a time: the reference `_fast_body` must equal, and the
    way for a batch it leaves (refusals are worded here)."""
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


class _Columns(NamedTuple):
    """What the digest covers, as `_fast_body` built it (digest.columns_digest)."""

    series: list[tuple[str, str]]
    texts: list[str]
    columns: list[bytes]  # series index, ts, quality, kind, status, value: packed


class _Unusual(Exception):  # noqa: N818 - not an error: a signal to take the other path
    """Something `_fast_body` leaves to `_reference_body`, which encodes it or says what is
    wrong with it."""


def _first_refs(keys: list[Any]) -> tuple[list[Any], Sequence[int], list[int]]:
    """(the distinct keys in order of first appearance, each key's index among them,
    its reference "0 = next new entry, else index + 1"), with the loops in C."""
    first: dict[Any, int] = {}
    at = list(map(first.setdefault, keys, count()))  # each key's first position
    distinct = list(first)
    if len(distinct) == len(keys):  # all new: a Modbus batch of one read of many tags
        return distinct, range(len(keys)), [0] * len(keys)
    index = list(map(dict(zip(first.values(), count())).__getitem__, at))
    refs = list(map(add, index, repeat(1)))
    deque(map(refs.__setitem__, first.values(), repeat(0)), maxlen=0)  # the new ones
    return distinct, index, refs


def _fast_body(  # noqa: PLR0912, PLR0915
    samples: Sequence[Mapping[str, Any]],
) -> tuple[bytes, _Columns]:
    """The body `_reference_body` makes, and the digest's columns, in one pass that does
    per sample only what C cannot (itemgetter/map/struct do the rest): ~4x faster on a
    Modbus batch. Raises (anything) for what it does not take, which the caller hands to
    `_reference_body`: a value of another type, an odd status, a refused one."""
    n = len(samples)
    ds = list(map(_D, samples))
    tg = list(map(_T, samples))
    ts = list(map(_TS, samples))
    vals = list(map(_V, samples))
    series, series_ix, series_refs = _first_refs(list(zip(ds, tg, strict=True)))
    if len(series) != n:  # each series' device and tag, from its first sample
        firsts = list(compress(range(n), map(not_, series_refs)))
        ds, tg = list(map(ds.__getitem__, firsts)), list(map(tg.__getitem__, firsts))
    if n and not (min(ts) >= 0 and max(ts) <= MAX_MS):
        raise _Unusual
    ts_col = struct.pack(f">{n}q", *ts)  # integers only, as the digest's i64 takes them
    text_at: list[int] = []
    text_vals: list[str] = []
    ints: list[int] = []
    heads: bytearray | None = None
    float_at: Sequence[int]
    if set(map(type, vals)) <= {float}:  # Modbus, OPC UA doubles: no per-sample loop
        float_at, float_vals, num, kind_col = range(n), vals, vals, bytes((KIND_NUMBER,)) * n
    else:
        heads, kinds_d = bytearray(n), bytearray(n)
        float_at, float_vals, num = [], [], [0.0] * n
        for i, v in enumerate(vals):
            cls = v.__class__
            if cls is float:
                num[i] = v
                kinds_d[i] = KIND_NUMBER
                float_at.append(i)
                float_vals.append(v)
            elif cls is str or isinstance(v, str):
                kinds_d[i] = KIND_TEXT
                heads[i] = K_TEXT << 2
                text_at.append(i)
                text_vals.append(v if cls is str else str.__str__(v))  # a StrEnum: its text
            elif v is None:
                pass
            elif isinstance(v, int):  # a bool travels as its integer, and is digested as 1.0
                num[i] = f = float(v)  # beyond a double: OverflowError, refused
                kinds_d[i] = KIND_NUMBER
                if -I64 <= v < I64:
                    heads[i] = K_INT << 2
                    ints.append(int(v))
                else:
                    float_at.append(i)
                    float_vals.append(f)
            elif isinstance(v, float):
                num[i] = f = float(v)
                kinds_d[i] = KIND_NUMBER
                float_at.append(i)
                float_vals.append(f)
            else:
                raise _Unusual
        kind_col = bytes(kinds_d)
    kinds, mantissas, f32s, f64s = _floats(float_vals)
    if heads is None:
        if kinds and kinds.count(kinds[0]) == n:  # one scale for the batch
            heads = bytearray((kinds[0] << 2,)) * n
        else:
            heads = bytearray(map(mul, kinds, repeat(4)))  # kind << 2
    else:
        deque(map(heads.__setitem__, float_at, map(mul, kinds, repeat(4))), maxlen=0)

    quality_col: bytes | bytearray = bytes(n)
    extras = bytearray()
    gts_d: list[int] = []
    sts_d: list[int] = []
    status_at: list[int] = []
    status_vals: list[str] = []
    if n and max(map(len, samples)) > 4:  # q, s, gts or sts somewhere: those samples only
        quality_col = bytearray(n)
        for i in compress(range(n), map(lt, repeat(4), map(len, samples))):
            s = samples[i]
            h = 0
            q = s.get("q")
            if q is not None or "q" in s:  # "good", None (the digest refuses it): KeyError
                quality_col[i] = h = _QUALITY[q]  # type: ignore[index]  # KeyError
            x = 0
            status = s.get("s")
            if status:
                if status.__class__ is not str or len(status) > MAX_STATUS_CHARS:
                    raise _Unusual
                x = X_STATUS
                status_at.append(i)
                status_vals.append(status)
            t = ts[i]
            for bit, name, col in ((X_GTS, "gts", gts_d), (X_STS, "sts", sts_d)):
                other = s.get(name)
                if other is not None:
                    if not 0 <= other <= MAX_MS:
                        raise _Unusual
                    x |= bit
                    col.append(other - t)
            if x:
                h |= EXTRAS
                extras.append(x)
            heads[i] |= h

    # texts scanned in order, within a sample its value first: the digest's order too
    if status_at:
        keyed = dict(zip(map(mul, text_at, repeat(2)), text_vals, strict=True))
        keyed.update(zip([2 * i + 1 for i in status_at], status_vals, strict=True))
        text_keys = [keyed[k] for k in sorted(keyed)]
    else:
        text_keys = text_vals
    texts, _, text_refs = _first_refs(text_keys)
    for text in texts:
        if "\x00" in text or len(text.encode()) > MAX_TEXT_BYTES:  # not UTF-8: raises
            raise _Unusual
    text_index = dict(zip(texts, count()))
    value_col = bytearray(struct.pack(f">{n}d", *num))
    if text_at:  # a text's record holds its table index where a number has its bits
        for i, j in zip(text_at, map(text_index.__getitem__, text_vals), strict=True):
            value_col[8 * i : 8 * i + 8] = _Q.pack(j)
    if status_at:
        st = [NO_STATUS] * n
        deque(map(st.__setitem__, status_at, map(text_index.__getitem__, status_vals)), maxlen=0)
        status_col = struct.pack(f">{n}I", *st)
    else:
        status_col = b"\xff\xff\xff\xff" * n

    devices, _, device_refs = _first_refs(ds)
    tags, _, tag_refs = _first_refs(tg)
    known = _KNOWN_IDS
    for name in (*devices, *tags):
        if name not in known:
            _check_id("samples: device or tag", name)
            if len(known) < _KNOWN_IDS_MAX:
                known.add(name)
    parts = [
        _varint(n),
        _table(devices),
        _table(tags),
        _table(texts),
        _varint(len(series)),
        _packed(device_refs),
        _packed(tag_refs),
        bytes(heads),
        b"\x00\x00" if len(series) == n and n else _packed(series_refs),  # all new: 0, w 0
    ]
    if n:
        parts += (_varint(ts[0]), _packed(list(map(sub, islice(ts, 1, None), ts))))
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
    columns = [struct.pack(f">{n}I", *series_ix), ts_col, bytes(quality_col), kind_col,
               status_col, bytes(value_col)]  # fmt: skip
    return b"".join(parts), _Columns(series, texts, columns)


def _body(samples: Sequence[Mapping[str, Any]]) -> bytes:
    """The body: the fast way, or the reference's for what the fast one does not take
    (the reference raises, naming what is wrong, or encodes the same bytes)."""
    try:
        return _fast_body(samples)[0]
    except Exception:
        return _reference_body(samples)


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


def _frame(head: bytes, body: bytes, level: int) -> bytes:
    """The payload: magic, version, flags, header, and the body, compressed at `level`
    when that is smaller."""
    if level:
        packed = zlib.compress(body, level)
        framed = _varint(len(body)) + packed
        if len(framed) < len(body):
            return MAGIC + bytes((VERSION, FLAG_ZLIB)) + head + framed
    return MAGIC + bytes((VERSION, 0)) + head + body


def _check_level(level: int) -> None:
    if level not in range(10):
        raise ValueError(f"level: {level!r} is not a zlib level 0..9 (0: never compress)")


def _checked_body(samples: Sequence[Mapping[str, Any]]) -> bytes:
    try:
        return _body(samples)
    except (KeyError, TypeError, struct.error, OverflowError, UnicodeEncodeError) as exc:
        raise ValueError(f"samples: cannot be encoded ({exc!r})") from None


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
    _check_level(level)
    try:
        head = _header(gw, boot, seq, sent, bytes(prev), bytes(signature))
        body = _body(samples)
    except (KeyError, TypeError, struct.error, OverflowError, UnicodeEncodeError) as exc:
        raise ValueError(f"samples: cannot be encoded ({exc!r})") from None
    return _frame(head, body, level)


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
    """(payload, digest): the gateway's whole step; the digest is the next batch's prev.

    The digest comes from the tables and columns the encoder builds anyway
    (digest.columns_digest), not from a second walk over the samples; a batch the fast
    path does not take is sealed the reference way (`_seal_reference`), which either
    gives the same bytes or raises the reference's error, naming the sample and field."""
    try:
        _check_level(level)
        body, cols = _fast_body(samples)
        digest = columns_digest(gw=gw, boot=boot, seq=seq, prev=prev, series=cols.series,
                                texts=cols.texts, columns=cols.columns)  # fmt: skip
        head = _header(gw, boot, seq, sent, bytes(prev), bytes(SIGNATURE_BYTES))
    except Exception:
        return _seal_reference(signer, gw=gw, boot=boot, seq=seq, sent=sent, prev=prev,
                               samples=samples, level=level)  # fmt: skip
    signature = signer.sign(digest)
    if len(signature) != SIGNATURE_BYTES:
        raise ValueError("prev is 32 bytes and signature 64")
    return _frame(head[:-SIGNATURE_BYTES] + signature, body, level), digest


def _seal_reference(
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
    """`seal_batch_v2` the plain way, digest first: what the fast path must equal (the
    tests compare them), and its way for what it does not take."""
    digest = batch_digest(gw=gw, boot=boot, seq=seq, prev=prev, samples=from_wire(samples))
    signature = signer.sign(digest)
    _check_level(level)
    try:
        head = _header(gw, boot, seq, sent, bytes(prev), bytes(signature))
        body = _reference_body(samples)
    except (KeyError, TypeError, struct.error, OverflowError, UnicodeEncodeError) as exc:
        raise ValueError(f"samples: cannot be encoded ({exc!r})") from None
    return _frame(head, body, level), digest


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
