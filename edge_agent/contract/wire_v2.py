"""Contract v2 (issue 16): the compact binary data payload, 2-5 bytes per value.

    wire sample dicts --seal_batch_v2--> digest (digest.py) --sign--> encode_batch_v2 --> bytes
    bytes --decode_batch_v2--> DecodedBatch --.digest()/.verify(public key)--> bool
    bytes --decode_columns_v2--> BatchColumns --.digest()--> the same 32 bytes (a server)
    split_samples: cut samples into chunks whose payload stays under a byte limit

This module holds the format's constants and the decoder; wire_v2_encode.py the encoder,
`seal_batch_v2` and `split_samples`.

The signature covers the content (digest.py), not these bytes, so the layout is free to be
small: a fixed header (never compressed, so a receiver reads gw, boot, seq, prev and the
signature without inflating anything), then a body of columns, zlib-compressed when that
is smaller. docs/mqtt.md, "Contract v2 (being built): the data payload", gives it byte
for byte with a worked example:

    "FEW" 0x02 flags  gw  boot seq sent (varints)  prev (32)  signature (64)  body
    body: n  devices  tags  texts  series (device ref, tag ref)  head bytes  series refs
          ts (first + deltas)  extras  text refs  ints  mantissas  f32  f64  gts  sts

Integer columns are "packed": the column's minimum (zigzag varint), a width byte (0, 1, 2,
4 or 8) and every value minus the minimum in that many bytes, big-endian: C-speed to
write and read with struct, and as small as varints for the narrow columns a plant makes.
References to tables are 0 for "the next new entry", else index + 1: the tables come out
in order of first appearance (the digest's order) by construction.

The decoder reads column by column (translate tables over the head bytes, map/compress,
struct), touching a sample alone only for a text or extras: so a receiver gets the tables
and columns (`decode_columns_v2`) and the digest from them (digest.columns_digest) at a
fraction of the cost of sample dicts; `decode_batch_v2` builds the dicts from them.

Errors (decoding untrusted bytes raises nothing else):

    ValueError
     └── WireV2Error   a payload that is not one, or breaks a limit; the message says where
"""

from __future__ import annotations

import re
import struct
import zlib
from collections import deque
from collections.abc import Sequence
from itertools import accumulate, compress, count, repeat
from operator import gt, not_, sub, truediv
from typing import Any, NamedTuple

from edge_agent.contract.digest import (
    DIGEST_BYTES,
    KIND_NULL,
    KIND_NUMBER,
    KIND_TEXT,
    NO_STATUS,
    batch_digest,
    columns_digest,
    from_wire,
    verify_batch,
)
from edge_agent.contract.identity import SIGNATURE_BYTES
from edge_agent.contract.wire import MAX_MS, MAX_STATUS_CHARS, MAX_TEXT_BYTES

MAGIC = b"FEW"
VERSION = 2
FLAG_ZLIB = 0x01
MAX_ID_CHARS = 128
MAX_BOOT = 2**31 - 1
MAX_SEQ = 2**63 - 1
MAX_MANTISSA = 2**53  # |m| <= 2^53: m / 10^k is one correctly rounded division anywhere
MAX_DECIMALS = 9
DEFAULT_MAX_SAMPLES = 100_000
DEFAULT_MAX_BYTES_DECOMPRESSED = 8 * 1024 * 1024
DEFAULT_LEVEL = 6
# the head byte: quality in bits 0-1, kind in bits 2-5, "extras follow" in bit 6
K_NULL, K_INT, K_F64, K_F32, K_TEXT, K_DEC = 0, 1, 2, 3, 4, 5  # K_DEC + k: k decimals
EXTRAS = 0x40
X_STATUS, X_GTS, X_STS = 0x01, 0x02, 0x04
ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_QUALITY_NAME = (None, "uncertain", "bad")
WIDTH_FORMAT = {0: "", 1: "B", 2: "H", 4: "I", 8: "Q"}
I64 = 2**63
POW10 = [10**k for k in range(MAX_DECIMALS + 1)]


class WireV2Error(ValueError):
    """Bytes that are not a v2 data payload, or one that breaks the contract's limits."""


class DecodedBatch(NamedTuple):
    gw: str
    boot: int
    seq: int
    sent: int
    prev: bytes
    signature: bytes
    samples: list[dict[str, Any]]  # wire sample dicts, as digest.from_wire takes them

    def digest(self) -> bytes:
        """The batch digest (digest.py) of what was decoded: what the signature covers."""
        return batch_digest(
            gw=self.gw, boot=self.boot, seq=self.seq, prev=self.prev,
            samples=from_wire(self.samples),
        )  # fmt: skip

    def verify(self, public_key: bytes) -> bool:
        return verify_batch(public_key, self.digest(), self.signature)


# --- decoding ----------------------------------------------------------------------------


class _Reader:
    """Untrusted bytes, read forward; every read checks what is left first."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.pos = 0
        self.where = where

    def fail(self, what: str) -> WireV2Error:
        return WireV2Error(f"{self.where} at byte {self.pos}: {what}")

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise self.fail(f"{what}: {n} bytes wanted, {len(self.data) - self.pos} left")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def varint(self, what: str) -> int:
        data, pos, n, shift = self.data, self.pos, 0, 0
        while True:
            if pos >= len(data):
                raise self.fail(f"{what}: the varint runs past the end")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
            if shift >= 64:
                raise self.fail(f"{what}: a varint longer than 10 bytes")
        if n >= 2**64 or (b == 0 and shift):
            raise self.fail(f"{what}: not a minimal varint below 2^64")
        self.pos = pos
        return n

    def count(self, what: str, most: int) -> int:
        n = self.varint(what)
        if n > most:
            raise self.fail(f"{what}: {n}, over {most}")
        return n

    def packed(self, count: int, what: str) -> list[int]:
        if not count:
            return []
        u = self.varint(f"{what} minimum")
        lo = (u >> 1) ^ -(u & 1)
        w = self.take(1, f"{what} width")[0]
        if w not in WIDTH_FORMAT:
            raise self.fail(f"{what}: width {w} is not 0, 1, 2, 4 or 8")
        if w == 0:
            return [lo] * count
        raw = self.take(count * w, what)
        values = struct.unpack(f">{count}{WIDTH_FORMAT[w]}", raw)
        return [v + lo for v in values] if lo else list(values)

    def strings(self, what: str, most: int) -> list[str]:
        n = self.count(f"{what} count", most)
        out = []
        for _ in range(n):
            raw = self.take(self.count(f"{what} length", len(self.data)), what)
            try:
                out.append(raw.decode())
            except UnicodeDecodeError:
                raise self.fail(f"{what}: not UTF-8") from None
        if len(set(out)) != n:
            raise self.fail(f"{what}: an entry twice")
        return out


def _resolve(refs: list[int], n_entries: int, fail: Any, what: str) -> list[int]:
    """Indices from "0 = next new, else index + 1" references; all entries used."""
    if not any(refs):
        if len(refs) != n_entries:
            raise fail(f"{what}: {len(refs)} new entries for a table of {n_entries}")
        return list(range(n_entries))
    # in C: a reference may name only the entries introduced (the zeros) up to its place
    try:
        small = bytes(refs) if n_entries < 255 else b""
    except ValueError:  # a reference over 255 (or a bad one): the general way
        small = b""
    if small and small.count(0) == n_entries and small[0] == 0:
        # each run from the k-th new entry (k from 0) to the next may refer to k + 1 at
        # most: deleting the bytes 0..k + 1 leaves nothing
        new_at = _where(small, 0, n_entries)
        ends = [*new_at[1:], len(small)]
        if not any(small[a:b].translate(None, _UP_TO[k])
                   for k, a, b in zip(count(1), new_at, ends)):  # fmt: skip
            out = list(small.translate(_MINUS_ONE))
            deque(map(out.__setitem__, new_at, count()), 0)
            return out
    new_at = list(compress(range(len(refs)), map(not_, refs)))
    if (
        len(new_at) == n_entries
        and min(refs) > -1
        and not any(map(gt, refs, accumulate(map(not_, refs))))
    ):
        out = list(map(sub, refs, repeat(1)))
        deque(map(out.__setitem__, new_at, count()), 0)
        return out
    # the slow walk names the first bad reference
    out, new = [], 0
    for r in refs:
        if r == 0:
            out.append(new)
            new += 1
        elif 0 < r <= new:
            out.append(r - 1)
        else:
            raise fail(f"{what}: reference {r} to an entry not yet introduced")
    if new != n_entries:
        raise fail(f"{what}: {new} entries used of {n_entries}")
    return out


def _in(values: Sequence[int], lo: int, hi: int, fail: Any, what: str) -> None:
    if values and not (lo <= min(values) and max(values) <= hi):
        raise fail(f"{what}: outside {lo}..{hi}")


def decode_batch_v2(
    payload: bytes,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes_decompressed: int = DEFAULT_MAX_BYTES_DECOMPRESSED,
) -> DecodedBatch:
    """The batch in `payload`, checked against the contract's limits (docs/mqtt.md);
    raises WireV2Error, and only that, for anything else."""
    cols = decode_columns_v2(
        payload, max_samples=max_samples, max_bytes_decompressed=max_bytes_decompressed
    )
    return DecodedBatch(cols.gw, cols.boot, cols.seq, cols.sent, cols.prev, cols.signature,
                        cols.samples())  # fmt: skip


def decode_columns_v2(
    payload: bytes,
    *,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    max_bytes_decompressed: int = DEFAULT_MAX_BYTES_DECOMPRESSED,
) -> BatchColumns:
    """`decode_batch_v2` without the sample dicts: the tables and per-sample columns, for
    a receiver that stores them as they are (the ingest server). The same checks and
    errors; `.digest()` is the batch digest from the columns, byte for byte
    `DecodedBatch.digest()`."""
    try:
        return _decode(bytes(payload), max_samples, max_bytes_decompressed)
    except WireV2Error:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError, struct.error,
            zlib.error) as exc:  # fmt: skip
        raise WireV2Error(f"payload: cannot be decoded ({exc!r})") from None


# per head byte (translate tables, so that a column is read in C): refused (bit 7, quality
# 3, kind 15); the quality; the digest's kind; "has extras"; a good number without extras
# (a COPY row of one fixed layout); the kind itself; a decimal's k
_BAD_HEAD = bytes(int(h & 0x80 or h & 3 == 3 or (h >> 2) & 0x0F > K_DEC + MAX_DECIMALS)
                  for h in range(256))  # fmt: skip
QUALITY_OF_HEAD = bytes(h & 3 for h in range(256))
_DIGEST_KIND = bytes(
    KIND_NULL if (h >> 2) & 0x0F == K_NULL else KIND_TEXT if (h >> 2) & 0x0F == K_TEXT
    else KIND_NUMBER for h in range(256)
)  # fmt: skip
HAS_EXTRAS = bytes(int(bool(h & EXTRAS)) for h in range(256))
PLAIN_NUMBER = bytes(int(h & (EXTRAS | 3) == 0 and (h >> 2) & 0x0F not in (K_NULL, K_TEXT))
                     for h in range(256))  # fmt: skip
_KIND_OF_HEAD = bytes((h >> 2) & 0x0F for h in range(256))
_IS_DEC = bytes(int(k >= K_DEC) for k in range(256))
_DEC_K = bytes(max(k - K_DEC, 0) for k in range(256))
_NOT_DEC = bytes(range(K_DEC))
_Q64 = struct.Struct(">Q")
_MINUS_ONE = bytes((b - 1) % 256 for b in range(256))
_UP_TO = [bytes(range(k + 1)) for k in range(256)]


class BatchColumns(NamedTuple):
    """A decoded batch as the decoder reads it: tables, and one entry per sample in each
    column. The tables are in the digest's order (first appearance) by construction."""

    gw: str
    boot: int
    seq: int
    sent: int
    prev: bytes
    signature: bytes
    series: list[tuple[str, str]]  # (device, tag)
    texts: list[str]  # text values and statuses
    series_ix: list[int]  # per sample: its index in `series`
    ts: list[int]  # per sample: ms since the epoch
    heads: bytes  # per sample: quality, kind, extras (QUALITY_OF_HEAD, PLAIN_NUMBER)
    values: list[Any]  # per sample: "v" of its wire dict (int, float, str or None)
    text_at: list[int]  # the samples whose value is a text, in order...
    text_ix: list[int]  # ...and that text's index in `texts`
    # the samples with extras: position -> (status's index in `texts` or None, gts, sts)
    extras: dict[int, tuple[int | None, int | None, int | None]]

    def digest(self) -> bytes:
        """The batch digest (digest.py), from the columns: the same 32 bytes as
        `batch_digest` over this batch's wire samples, without a per-sample walk."""
        n = len(self.ts)
        values: Any = self.values
        if self.text_at:  # a text's record holds its index, a null's 8 zero bytes
            values = list(values)
            deque(map(values.__setitem__, self.text_at, repeat(0.0)), maxlen=0)
        if None in values:
            values = [0.0 if v is None else v for v in values]
        value_col = bytearray(struct.pack(f">{n}d", *values))
        for i, j in zip(self.text_at, self.text_ix, strict=True):
            value_col[8 * i : 8 * i + 8] = _Q64.pack(j)
        if any(s is not None for s, _, _ in self.extras.values()):
            status = [NO_STATUS] * n
            for i, (s, _, _) in self.extras.items():
                if s is not None:
                    status[i] = s
            status_col = struct.pack(f">{n}I", *status)
        else:
            status_col = b"\xff\xff\xff\xff" * n
        columns = [
            struct.pack(f">{n}I", *self.series_ix),
            struct.pack(f">{n}q", *self.ts),
            self.heads.translate(QUALITY_OF_HEAD),
            self.heads.translate(_DIGEST_KIND),
            status_col,
            bytes(value_col),
        ]
        return columns_digest(
            gw=self.gw, boot=self.boot, seq=self.seq, prev=self.prev, series=self.series,
            texts=self.texts, columns=columns,
        )  # fmt: skip

    def samples(self) -> list[dict[str, Any]]:
        """The wire sample dicts (`DecodedBatch.samples`), keys in the wire's order."""
        pairs = self.series
        out = [
            {"d": d, "t": t, "ts": ts, "v": v}
            for (d, t), ts, v in zip(map(pairs.__getitem__, self.series_ix), self.ts,
                                     self.values, strict=True)
        ]  # fmt: skip
        quality = self.heads.translate(QUALITY_OF_HEAD)
        if quality.count(0) != len(quality):
            for i in compress(range(len(quality)), quality):
                out[i]["q"] = _QUALITY_NAME[quality[i]]
        texts = self.texts
        for i, (status, gts, sts) in self.extras.items():
            s = out[i]
            if status is not None:
                s["s"] = texts[status]
            if gts is not None:
                s["gts"] = gts
            if sts is not None:
                s["sts"] = sts
        return out


def _where(column: bytes, byte: int, count: int) -> list[int]:
    """The `count` places of `byte` in `column`: found in C, one call each when rare."""
    if count * 8 > len(column):
        return list(compress(range(len(column)), map(byte.__eq__, column)))
    out, find, i = [], column.find, -1
    for _ in range(count):
        i = find(byte, i + 1)
        out.append(i)
    return out


def _decode(  # noqa: PLR0912, PLR0915
    payload: bytes, max_samples: int, max_inflated: int
) -> BatchColumns:
    r = _Reader(payload, "header")
    if r.take(3, "magic") != MAGIC:
        raise r.fail('not a v2 data payload (it starts with "FEW")')
    version, flags = r.take(2, "version and flags")
    if version != VERSION:
        raise r.fail(f"version {version}, not {VERSION}")
    if flags & ~FLAG_ZLIB:
        raise r.fail(f"unknown flags 0x{flags:02x}")
    gw = r.take(r.count("gw length", MAX_ID_CHARS), "gw").decode("ascii", "replace")
    if not ID_PATTERN.match(gw):
        raise r.fail(f"gw {gw!r} is not an id")
    boot, seq, sent = r.varint("boot"), r.varint("seq"), r.varint("sent")
    for name, number, lo, hi in (("boot", boot, 1, MAX_BOOT), ("seq", seq, 1, MAX_SEQ),
                                 ("sent", sent, 0, MAX_MS)):  # fmt: skip
        if not lo <= number <= hi:
            raise r.fail(f"{name} {number} outside {lo}..{hi}")
    prev = r.take(DIGEST_BYTES, "prev")
    signature = r.take(SIGNATURE_BYTES, "signature")
    if flags & FLAG_ZLIB:
        size = r.count("body length", max_inflated)
        if not size:
            raise r.fail("a compressed body of 0 bytes")
        z = zlib.decompressobj()
        body = z.decompress(payload[r.pos :], size + 1)  # + 1: a longer one is seen
        if len(body) != size or not z.eof or z.unused_data or z.unconsumed_tail:
            raise r.fail(f"the zlib body does not inflate to exactly {size} bytes and end")
    else:
        body = payload[r.pos :]
    b = _Reader(body, "body")
    fail = b.fail
    n = b.count("sample count", max_samples)
    devices = b.strings("device", n)
    tags = b.strings("tag", n)
    texts = b.strings("text", 2 * n)
    for name in (*devices, *tags):
        if len(name) > MAX_ID_CHARS or not ID_PATTERN.match(name):
            raise fail(f"device or tag {name[:140]!r} is not an id")
    for text in texts:
        if "\x00" in text:
            raise fail("a text holds a NUL character")
    n_series = b.count("series count", n)
    dev = _resolve(b.packed(n_series, "series devices"), len(devices), fail, "devices")
    tag = _resolve(b.packed(n_series, "series tags"), len(tags), fail, "tags")
    pairs = list(zip(map(devices.__getitem__, dev), map(tags.__getitem__, tag), strict=True))
    if len(set(pairs)) != n_series:
        raise fail("a series twice")
    heads = b.take(n, "head bytes")
    bad = heads.translate(_BAD_HEAD)
    if bad.count(0) != n:
        i = bad.index(1)
        raise fail(f"sample {i}: head byte 0x{heads[i]:02x} is not quality, kind and extras")
    series = _resolve(b.packed(n, "series refs"), n_series, fail, "series")
    if n:
        first = b.varint("first ts")
        ts = list(accumulate(b.packed(n - 1, "ts deltas"), initial=first))
        _in(ts, 0, MAX_MS, fail, "ts")
    else:
        ts = []
    extra_at = list(compress(range(n), heads.translate(HAS_EXTRAS)))
    extras = b.take(len(extra_at), "extras")
    for i, x in zip(extra_at, extras, strict=True):
        if not x or x & ~(X_STATUS | X_GTS | X_STS):
            raise fail(f"sample {i}: extras byte 0x{x:02x}")
    kinds = heads.translate(_KIND_OF_HEAD)
    has_status = [x & X_STATUS for x in extras]
    n_text = kinds.count(K_TEXT) + sum(1 for x in has_status if x)
    text_refs = _resolve(b.packed(n_text, "text refs"), len(texts), fail, "texts")
    n_dec = n - sum(map(kinds.count, _NOT_DEC))
    ints = b.packed(kinds.count(K_INT), "ints")
    _in(ints, -I64, I64 - 1, fail, "ints")
    mantissas = b.packed(n_dec, "mantissas")
    _in(mantissas, -MAX_MANTISSA, MAX_MANTISSA, fail, "mantissas")
    n32, n64 = kinds.count(K_F32), kinds.count(K_F64)
    f32s = struct.unpack(f">{n32}f", b.take(4 * n32, "f32 values"))
    f64s = struct.unpack(f">{n64}d", b.take(8 * n64, "f64 values"))
    for v in (*f32s, *f64s):
        if v - v != 0.0:
            raise fail("a value that is NaN or infinite")
    gts_d = b.packed(sum(1 for x in extras if x & X_GTS), "gts")
    sts_d = b.packed(sum(1 for x in extras if x & X_STS), "sts")
    if b.pos != len(body):
        raise fail(f"{len(body) - b.pos} bytes after the batch")

    # the values, column by column: each kind's values go to its samples' places
    values: list[Any]
    decimals: list[Any] = []
    if n_dec:
        ks = kinds.translate(_DEC_K, _NOT_DEC)  # each decimal's k, in order
        pow10 = POW10
        if ks.count(ks[0]) == n_dec:  # one scale for the batch
            decimals = list(map(truediv, mantissas, repeat(pow10[ks[0]])))
        else:
            decimals = list(map(truediv, mantissas, map(pow10.__getitem__, ks)))
    if n_dec == n:
        values = decimals
    elif n64 == n:
        values = list(f64s)
    else:
        values = [None] * n
        setitem = values.__setitem__
        if n_dec:
            deque(map(setitem, compress(range(n), kinds.translate(_IS_DEC)), decimals), 0)
        for kind, column in ((K_INT, ints), (K_F64, f64s), (K_F32, f32s)):
            if column:
                deque(map(setitem, _where(kinds, kind, len(column)), column), 0)
    text_at = _where(kinds, K_TEXT, kinds.count(K_TEXT))
    # text refs: per sample its value's, then its status's
    status_at = list(compress(extra_at, has_status))
    if status_at:
        status_set = set(status_at)
        order = sorted([(i, 0) for i in text_at] + [(i, 1) for i in status_at])
        text_ix = [j for (_, is_status), j in zip(order, text_refs, strict=True)
                   if not is_status]  # fmt: skip
        status_ix = [j for (_, is_status), j in zip(order, text_refs, strict=True) if is_status]
    else:
        status_set = set()
        text_ix, status_ix = text_refs, []
    for i, j in zip(text_at, text_ix, strict=True):
        value = values[i] = texts[j]
        if len(value) * 4 > MAX_TEXT_BYTES and len(value.encode()) > MAX_TEXT_BYTES:
            raise fail(f"sample {i}: a text value over {MAX_TEXT_BYTES} bytes")
    extra_of: dict[int, tuple[int | None, int | None, int | None]] = {}
    it_status, it_g, it_s = iter(status_ix), iter(gts_d), iter(sts_d)
    for i, x in zip(extra_at, extras, strict=True):
        status = gts = sts = None
        if i in status_set:
            status = next(it_status)
            if len(texts[status]) > MAX_STATUS_CHARS or not texts[status]:
                raise fail(f"sample {i}: a status of {len(texts[status])} characters")
        if x & X_GTS:
            gts = ts[i] + next(it_g)
        if x & X_STS:
            sts = ts[i] + next(it_s)
        extra_of[i] = (status, gts, sts)
    for name, k in (("gts", 1), ("sts", 2)):
        given = [t for e in extra_of.values() if (t := e[k]) is not None]
        _in(given, 0, MAX_MS, fail, name)
    return BatchColumns(gw, boot, seq, sent, prev, signature, pairs, texts, series, ts,
                        heads, values, text_at, text_ix, extra_of)  # fmt: skip
