"""Contract v2 (issue 16): the compact binary data payload, 2-5 bytes per value.

    wire sample dicts --seal_batch_v2--> digest (digest.py) --sign--> encode_batch_v2 --> bytes
    bytes --decode_batch_v2--> DecodedBatch --.digest()/.verify(public key)--> bool
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

Errors (decoding untrusted bytes raises nothing else):

    ValueError
     └── WireV2Error   a payload that is not one, or breaks a limit; the message says where
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Sequence
from itertools import accumulate
from typing import Any, NamedTuple

from edge_agent.contract.digest import DIGEST_BYTES, batch_digest, from_wire, verify_batch
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
    try:
        return _decode(bytes(payload), max_samples, max_bytes_decompressed)
    except WireV2Error:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError, struct.error,
            zlib.error) as exc:  # fmt: skip
        raise WireV2Error(f"payload: cannot be decoded ({exc!r})") from None


def _decode(  # noqa: PLR0912, PLR0915
    payload: bytes, max_samples: int, max_inflated: int
) -> DecodedBatch:
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
    pairs = [(devices[i], tags[j]) for i, j in zip(dev, tag, strict=True)]
    if len(set(pairs)) != n_series:
        raise fail("a series twice")
    heads = b.take(n, "head bytes")
    series = _resolve(b.packed(n, "series refs"), n_series, fail, "series")
    if n:
        first = b.varint("first ts")
        ts = list(accumulate(b.packed(n - 1, "ts deltas"), initial=first))
        _in(ts, 0, MAX_MS, fail, "ts")
    else:
        ts = []
    n_extras = sum(1 for h in heads if h & EXTRAS)
    extras = b.take(n_extras, "extras")
    kinds = [(h >> 2) & 0x0F for h in heads]
    n_text = kinds.count(K_TEXT) + sum(1 for x in extras if x & X_STATUS)
    text_ix = _resolve(b.packed(n_text, "text refs"), len(texts), fail, "texts")
    n_dec = sum(1 for k in kinds if k >= K_DEC)
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
    gts_n = sum(1 for x in extras if x & X_GTS)
    sts_n = sum(1 for x in extras if x & X_STS)
    gts_d = b.packed(gts_n, "gts")
    sts_d = b.packed(sts_n, "sts")
    if b.pos != len(body):
        raise fail(f"{len(body) - b.pos} bytes after the batch")

    samples: list[dict[str, Any]] = []
    append = samples.append
    it_text, it_int, it_m = iter(text_ix), iter(ints), iter(mantissas)
    it_32, it_64, it_x = iter(f32s), iter(f64s), iter(extras)
    it_g, it_s = iter(gts_d), iter(sts_d)
    pow10 = POW10
    for i in range(n):
        h = heads[i]
        k = kinds[i]
        if h & 0x80 or h & 3 == 3 or k > K_DEC + MAX_DECIMALS:
            raise fail(f"sample {i}: head byte 0x{h:02x} is not quality, kind and extras")
        d, t = pairs[series[i]]
        t_ms = ts[i]
        value: Any
        if k >= K_DEC:
            value = next(it_m) / pow10[k - K_DEC]
        elif k == K_TEXT:
            value = texts[next(it_text)]
            if len(value) * 4 > MAX_TEXT_BYTES and len(value.encode()) > MAX_TEXT_BYTES:
                raise fail(f"sample {i}: a text value over {MAX_TEXT_BYTES} bytes")
        elif k == K_INT:
            value = next(it_int)
        elif k == K_F64:
            value = next(it_64)
        elif k == K_F32:
            value = next(it_32)
        else:
            value = None
        s = {"d": d, "t": t, "ts": t_ms, "v": value}
        if h & 3:
            s["q"] = _QUALITY_NAME[h & 3]
        if h & EXTRAS:
            x = next(it_x)
            if not x or x & ~(X_STATUS | X_GTS | X_STS):
                raise fail(f"sample {i}: extras byte 0x{x:02x}")
            if x & X_STATUS:
                status = texts[next(it_text)]
                if len(status) > MAX_STATUS_CHARS or not status:
                    raise fail(f"sample {i}: a status of {len(status)} characters")
                s["s"] = status
            if x & X_GTS:
                s["gts"] = t_ms + next(it_g)
            if x & X_STS:
                s["sts"] = t_ms + next(it_s)
        append(s)
    for name in ("gts", "sts"):
        _in([s[name] for s in samples if name in s], 0, MAX_MS, fail, name)
    return DecodedBatch(gw, boot, seq, sent, prev, signature, samples)
