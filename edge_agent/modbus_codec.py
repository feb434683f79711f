"""The Modbus codec: the words (or bits) of one read request to tag values (pure).

    ReadRequest --BlockDecoder(request)--> decoder      once, when the plan is made
    words/bits  --decoder.decode(data)---> [(tag, value, quality, status), ...]   each poll

This is the agent's hot path, so everything that depends only on the configuration is
worked out once per request: each tag's byte positions in the block, put back into
big-endian order (the word order undone), and one `struct.Struct` for the whole block.
A poll then takes a few fixed steps, as Home Assistant's modbus entity does: pack the
words into bytes, gather the bytes in big-endian order, unpack every raw value in one
call, then per tag: NaN check, scale and offset, round.

Byte and word orders follow simulators/registers.py, A being the most significant
byte: ABCD big-endian; CDAB low word first; BADC bytes swapped in each word; DCBA
little-endian. Over an f64's four words CDAB reverses the words, BADC swaps the bytes in
each word and DCBA does both. Values are floats (raw x scale + offset); a machine_state
tag gives its canonical state's name.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from operator import itemgetter
from typing import Any

from edge_agent.config import ModbusTagConfig
from edge_agent.contract.sample import Quality, Role
from edge_agent.modbus_plan import ReadRequest

Decoded = tuple[str, float | str | None, Quality, str | None]
Raw = int | float | bool
_Convert = Callable[[Raw], Decoded]

_FORMAT = {"u16": "H", "i16": "h", "u32": "I", "i32": "i", "f32": "f", "f64": "d"}
# Past this many decimals rounding cannot remove noise a float does not carry anyway.
_MAX_DIGITS = 15
_GOOD = Quality.GOOD
_BAD = Quality.BAD


def _positions(order: str, words: int) -> tuple[int, ...]:
    """For each big-endian byte of a value, its index among the value's register bytes.

    Every order is its own inverse (simulators/registers.py `_order_bytes`), so the
    permutation that encodes also decodes.
    """
    pairs = [(2 * w, 2 * w + 1) for w in range(words)]
    if order in ("CDAB", "DCBA"):
        pairs.reverse()
    if order in ("BADC", "DCBA"):
        pairs = [(lo, hi) for hi, lo in pairs]
    return tuple(i for pair in pairs for i in pair)


def _decimals(x: float) -> int | None:
    """Decimal places of a configured number as written (0.1 -> 1, 1e-05 -> 5, 10 -> 0)."""
    if not math.isfinite(x):
        return None
    exponent = Decimal(repr(x)).as_tuple().exponent
    assert isinstance(exponent, int)  # finite: never 'n', 'N' or 'F'
    return max(0, -exponent)


def _ndigits(tag: ModbusTagConfig) -> int | None:
    """Digits to round an integer register's value to, or None when it needs none.

    raw x scale + offset with an integer raw has no more decimals than scale and offset
    have, so rounding there removes only binary noise (18732104 x 0.1 is
    1873210.4000000001 in binary floating point; the meter shows 1873210.4).
    """
    scale, offset = _decimals(tag.scale), _decimals(tag.offset)
    if scale is None or offset is None:
        return None
    digits = max(scale, offset)
    return digits if 0 < digits <= _MAX_DIGITS else None


def _converter(tag: ModbusTagConfig) -> _Convert:
    """The per-value step for one tag, chosen once so a poll runs no configuration logic."""
    tid, scale, offset = tag.tag, tag.scale, tag.offset
    if tag.role is Role.MACHINE_STATE:
        # Keys are the code's text ("2"); a raw 2, 2.0 or True finds an int key 2.
        states: dict[float, str] = {
            int(k): v.value for k, v in tag.state_map.items() if k.lstrip("-").isdecimal()
        }

        def state(raw: Raw) -> Decoded:
            name = states.get(raw)  # 2.0 and True find key 2 and 1; NaN misses
            if name is None:
                integral = isinstance(raw, bool) or (isinstance(raw, float) and raw.is_integer())
                code = int(raw) if integral else raw
                return (tid, None, _BAD, f"unmapped state code {code}")
            return (tid, name, _GOOD, None)

        return state
    if tag.type == "bit":
        return lambda raw: (tid, 1.0 if raw else 0.0, _GOOD, None)
    if tag.type in ("f32", "f64"):
        isfinite, isnan = math.isfinite, math.isnan

        def real(raw: Raw) -> Decoded:
            value = raw * scale + offset
            if isfinite(value):
                return (tid, value, _GOOD, None)
            return (tid, None, _BAD, "NaN" if isnan(value) else "Inf")

        return real
    ndigits = _ndigits(tag)
    if scale == 1 and offset == 0:
        return lambda raw: (tid, float(raw), _GOOD, None)
    if offset == 0 and ndigits is not None and scale == 10.0**-ndigits:
        # raw / 10**k is correctly rounded: the same double as round(raw * scale, k),
        # in one operation (most meters scale by 0.1, 0.01 or 0.001)
        divisor = 10**ndigits
        return lambda raw: (tid, raw / divisor, _GOOD, None)
    if ndigits is None:
        return lambda raw: (tid, raw * scale + offset, _GOOD, None)
    return lambda raw: (tid, round(raw * scale + offset, ndigits), _GOOD, None)


class BlockDecoder:
    """Decodes the answer to one ReadRequest; compile once, call `decode` every poll."""

    __slots__ = (
        "_bits",
        "_convert",
        "_count",
        "_gather",
        "_offsets",
        "_pack",
        "_unpack",
        "request",
    )

    def __init__(self, request: ReadRequest) -> None:
        self.request = request
        self._count = request.count
        self._bits = request.is_bit
        self._convert = tuple(_converter(t) for t in request.tags)
        self._offsets = tuple(t.address - request.address for t in request.tags)
        for t, off in zip(request.tags, self._offsets, strict=True):
            if off < 0 or off + t.count > request.count:
                raise ValueError(
                    f"tag {t.tag!r} at {t.function} address {t.address} lies outside the "
                    f"request for {request.count} from address {request.address}"
                )
        self._pack = struct.Struct(f">{request.count}H")
        self._unpack = struct.Struct(">" + "".join(_FORMAT.get(t.type, "") for t in request.tags))
        positions = [
            2 * off + p
            for t, off in zip(request.tags, self._offsets, strict=True)
            for p in _positions(t.order, t.count)
        ]
        # All big-endian and no gaps: the packed block already is the unpack's input.
        self._gather: Callable[[bytes], Any] | None = None
        if not self._bits and positions != list(range(2 * request.count)):
            self._gather = itemgetter(*positions)  # at least 2 positions: gives a tuple

    def decode(self, data: Sequence[int] | Sequence[bool]) -> list[Decoded]:
        """The request's tags, in request order, from the words or bits it returned."""
        if len(data) < self._count:
            unit = "bits" if self._bits else "registers"
            text = f"short response: {len(data)} of {self._count} {unit}"
            return [(t.tag, None, _BAD, text) for t in self.request.tags]
        if not self._convert:
            return []
        raws: Sequence[Raw]
        if self._bits:
            raws = [data[o] for o in self._offsets]
        else:
            # Only bits come padded (to whole bytes); should a longer register answer
            # ever arrive, the requested words are still its first ones.
            words = data if len(data) == self._count else data[: self._count]
            block = self._pack.pack(*words)
            if self._gather is not None:
                block = bytes(self._gather(block))
            raws = self._unpack.unpack(block)
        return [convert(raw) for convert, raw in zip(self._convert, raws, strict=True)]


def decode_words(tag: ModbusTagConfig, words: Sequence[int]) -> float | None:
    """One tag's engineering value (raw x scale + offset) from its own words.

    For tests and `discover`; None for a NaN or infinite float. A machine_state tag
    gives its number here (the raw code, unless it is scaled), not the state name:
    BlockDecoder maps the state.
    """
    if len(words) != tag.count:
        raise ValueError(f"{tag.type} takes {tag.count} register(s), got {len(words)}")
    if tag.type == "bit":
        return 1.0 if words[0] else 0.0
    data = struct.pack(f">{tag.count}H", *words)
    data = bytes(data[i] for i in _positions(tag.order, tag.count))
    raw: float = struct.unpack(">" + _FORMAT[tag.type], data)[0]
    value = raw * tag.scale + tag.offset
    if not math.isfinite(value):
        return None
    if tag.type in ("f32", "f64"):
        return value
    ndigits = _ndigits(tag)
    return value if ndigits is None else round(value, ndigits)
