"""Register codec: engineering values to Modbus words and back, as real devices do it.

Pure functions, no I/O. ``encode`` takes the steps below in order; ``decode`` undoes the
byte layout and returns the RAW value (multiply by ``scale`` for engineering units), so an
integer counter comes back exact.

1. raw = value / scale. Counters (energy, water, gas, parts) are TRUNCATED to the
   register's resolution: a meter never shows what it has not yet counted. Other
   values are rounded to the nearest step.
2. Integer counters wrap at the register width: unsigned ones modulo 2**bits (u16 at
   65536 raw units, u32 at 2**32: the rollover an agent must handle), signed ones in
   two's complement as a PLC's DINT does. A non-counter value outside the type's range
   (a negative power in a u16, say) is clamped, as a PLC saturates an analog value.
3. Floats are IEEE 754 big-endian (``>f``, ``>d``) of value / scale and carry the value
   as measured, counters included: their resolution is the float's own (about 0.008
   at 100,000 in f32), not the scale. Beyond the f32 range they clamp to its largest
   finite value.
4. Byte and word order, A being the most significant byte: ABCD big-endian; CDAB
   word-swapped (low word first, common on meters); BADC bytes swapped in each word;
   DCBA little-endian. A 4-register f64 follows the same rules over its four words
   (CDAB reverses the words, BADC swaps the bytes in each, DCBA does both). A
   one-register value knows ABCD and BADC (bytes swapped).
5. A bit (coil or discrete input) is [1] or [0].
"""

from __future__ import annotations

import math
import struct

from edge_agent.contract.sample import MachineState
from simulators.scenario import COUNTER_SOURCES, Register
from simulators.views import MachineView, MeterView

_INT_RANGE = {
    "u16": (0, 2**16 - 1),
    "i16": (-(2**15), 2**15 - 1),
    "u32": (0, 2**32 - 1),
    "i32": (-(2**31), 2**31 - 1),
}
_FLOAT_FMT = {"f32": ">f", "f64": ">d"}
_F32_MAX = 3.4028234663852886e38


def _order_bytes(data: bytes, order: str) -> bytes:
    """Rearrange big-endian bytes into the register order (the mapping is its own inverse)."""
    words = [data[i : i + 2] for i in range(0, len(data), 2)]
    if order in ("CDAB", "DCBA"):
        words.reverse()
    if order in ("BADC", "DCBA"):
        words = [w[::-1] for w in words]
    return b"".join(words)


def _truncate(scaled: float) -> int:
    # 1873210.4 / 0.1 is 18732103.999999996 in binary floating point: round away the
    # representation error (to a millionth of a step) before truncating, or a count is lost.
    return math.floor(round(scaled, 6))


def _raw_int(register: Register, value: float) -> int:
    lo, hi = _INT_RANGE[register.type]
    scaled = value / register.scale
    if register.source in COUNTER_SOURCES:
        raw = _truncate(scaled)
        if lo == 0:
            return raw % (hi + 1)
        return (raw - lo) % (hi - lo + 1) + lo
    return min(hi, max(lo, round(scaled)))


def encode(register: Register, value: float | int | bool) -> list[int]:
    """Engineering value to the register's 16-bit words (a bit gives [0] or [1])."""
    if register.type == "bit":
        return [1 if value else 0]
    if register.type in _FLOAT_FMT:
        raw = float(value) / register.scale
        if register.type == "f32":
            raw = min(_F32_MAX, max(-_F32_MAX, raw))
        data = struct.pack(_FLOAT_FMT[register.type], raw)
    else:
        raw_int = _raw_int(register, float(value))
        data = raw_int.to_bytes(register.width * 2, "big", signed=raw_int < 0)
    data = _order_bytes(data, register.order)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def decode(register: Register, words: list[int]) -> float | int | bool:
    """Words to the RAW register value (multiply by scale for engineering units)."""
    if len(words) != register.width:
        raise ValueError(f"{register.type} takes {register.width} register(s), got {len(words)}")
    if register.type == "bit":
        return bool(words[0])
    data = _order_bytes(b"".join(w.to_bytes(2, "big") for w in words), register.order)
    if register.type in _FLOAT_FMT:
        return float(struct.unpack(_FLOAT_FMT[register.type], data)[0])
    return int.from_bytes(data, "big", signed=register.type.startswith("i"))


def register_value(
    register: Register, machine: MachineView | None, meter: MeterView | None
) -> float | int | bool:
    """The engineering value a register carries, from the device's current view."""
    src = register.source
    if machine is not None:
        if src == "state":
            return register.codes[machine.state]
        if src == "parts_completed":
            return machine.parts_completed
        if src == "parts_good":
            return machine.parts_good
        if src == "running":
            return machine.state is MachineState.RUNNING
        if src == "alarm":
            return machine.state is MachineState.DOWN
    if meter is not None:
        if src in ("energy_kwh", "water_m3", "gas_m3"):
            return meter.reading
        if src in ("power_kw", "flow_m3_per_h"):
            return meter.rate
    raise ValueError(f"source {src!r} has no value for this device")
