"""The register codec against an independent oracle: pymodbus' own client converters."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import AsyncModbusTcpClient

from simulators.registers import decode, encode, register_value
from simulators.scenario import Carrier, MachineState, Register
from simulators.views import MachineView, MeterView

DT = AsyncModbusTcpClient.DATATYPE
ORACLE_TYPE = {
    "u16": DT.UINT16,
    "i16": DT.INT16,
    "u32": DT.UINT32,
    "i32": DT.INT32,
    "f32": DT.FLOAT32,
    "f64": DT.FLOAT64,
}


def reg(
    type_: str, order: str = "ABCD", scale: float = 1.0, source: str = "power_kw", **kw: Any
) -> Register:
    return Register(
        table="holding", address=0, type=type_, order=order, scale=scale, source=source, **kw
    )


def swap_bytes(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def oracle(words: list[int], type_: str, order: str) -> float | int:
    """Decode as an integrator would with pymodbus: word order big/little, bytes swapped by hand."""
    if order in ("BADC", "DCBA"):
        words = swap_bytes(words)
    value = AsyncModbusTcpClient.convert_from_registers(
        words, ORACLE_TYPE[type_], "little" if order in ("CDAB", "DCBA") else "big"
    )
    assert isinstance(value, int | float)
    return value


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(
    ("type_", "value"),
    [("u32", 3_000_000_123), ("i32", -1_234_567), ("f32", 1234.5), ("f64", 98_765.4321)],
)
def test_multi_register_orders_match_the_oracle(type_: str, value: float, order: str) -> None:
    r = reg(type_, order)
    words = encode(r, value)
    assert len(words) == r.width
    assert oracle(words, type_, order) == pytest.approx(value, rel=1e-7)
    assert decode(r, words) == pytest.approx(value, rel=1e-7)


def test_word_orders_are_really_different() -> None:
    # 0x11223344 in the four orders, spelt out as a meter manual would
    assert encode(reg("u32", "ABCD"), 0x11223344) == [0x1122, 0x3344]
    assert encode(reg("u32", "CDAB"), 0x11223344) == [0x3344, 0x1122]
    assert encode(reg("u32", "BADC"), 0x11223344) == [0x2211, 0x4433]
    assert encode(reg("u32", "DCBA"), 0x11223344) == [0x4433, 0x2211]
    assert encode(reg("f32", "ABCD"), 1.0) == [0x3F80, 0x0000]


def test_one_register_byte_swap() -> None:
    assert encode(reg("u16", "BADC"), 0x1234) == [0x3412]
    assert oracle(encode(reg("i16", "BADC"), -2), "i16", "BADC") == -2
    assert decode(reg("u16", "BADC"), [0x3412]) == 0x1234


@pytest.mark.parametrize(
    ("scale", "reading", "raw"),
    [
        (1.0, 65535.9, 65535),
        (1.0, 65536, 0),
        (1.0, 70000, 4464),
        (0.1, 6553.59, 65535),
        (0.1, 6553.6, 0),
        (0.1, 7000.0, 4464),
        (0.1, 0.05, 0),
    ],
)
def test_u16_counter_truncates_and_wraps(scale: float, reading: float, raw: int) -> None:
    r = reg("u16", scale=scale, source="energy_kwh")
    assert encode(r, reading) == [raw]


def test_u32_counter_wraps_at_2_to_the_32() -> None:
    r = reg("u32", scale=1.0, source="parts_completed")
    assert encode(r, 2**32 + 5) == [0, 5]
    assert encode(r, 2**32 - 1) == [0xFFFF, 0xFFFF]


def test_signed_counter_wraps_in_twos_complement() -> None:
    # a PLC's DINT part counter goes from 2**31 - 1 to -2**31
    r = reg("i32", source="parts_completed")
    assert oracle(encode(r, 2**31 - 1), "i32", "ABCD") == 2**31 - 1
    assert oracle(encode(r, 2**31), "i32", "ABCD") == -(2**31)
    assert oracle(encode(reg("i16", source="parts_good"), 32768 + 5), "i16", "ABCD") == -32763


def test_counter_truncation_survives_binary_rounding() -> None:
    # 1873210.4 / 0.1 == 18732103.999999996 in floating point: a meter shows 18732104
    r = reg("u32", scale=0.1, source="energy_kwh")
    assert oracle(encode(r, 1873210.4), "u32", "ABCD") == 18_732_104
    r2 = reg("u32", scale=0.01, source="energy_kwh")
    assert oracle(encode(r2, 1234.567), "u32", "ABCD") == 123_456


def test_non_counters_round_and_clamp() -> None:
    assert encode(reg("i32", scale=0.001), 12.3456) == encode(reg("i32"), 12346)
    assert encode(reg("u16", scale=0.01), -3.0) == [0]
    assert encode(reg("u16", scale=0.01), 1e9) == [0xFFFF]
    assert oracle(encode(reg("i16"), -123), "i16", "ABCD") == -123
    assert oracle(encode(reg("i16"), -40000), "i16", "ABCD") == -(2**15)
    assert oracle(encode(reg("i32", scale=0.001), 3e6), "i32", "ABCD") == 2**31 - 1
    assert oracle(encode(reg("f32"), 1e39), "f32", "ABCD") == pytest.approx(3.4028234663852886e38)


def test_float_counter_carries_the_reading_as_measured() -> None:
    r = reg("f32", source="gas_m3")
    # f32 resolves ~0.008 at this magnitude; the fraction must survive (no truncation to 1)
    assert oracle(encode(r, 120455.29), "f32", "ABCD") == pytest.approx(120455.29, abs=0.008)
    scaled = reg("f32", scale=0.001, source="energy_kwh")  # a float register in Wh
    assert oracle(encode(scaled, 12.5), "f32", "ABCD") == 12500.0


def test_state_codes_and_bits_from_a_machine_view() -> None:
    codes = {s: i - 1 for i, s in enumerate(MachineState)}
    state = Register(table="holding", address=0, type="i16", source="state", codes=codes)
    running = Register(table="discrete", address=0, type="bit", source="running")
    alarm = Register(table="coil", address=3, type="bit", source="alarm")
    for s in MachineState:
        view = MachineView("m", s, 0.0, 1, 1, 0.0, "O1", 0.0, 100.0, True)
        assert oracle(encode(state, register_value(state, view, None)), "i16", "ABCD") == codes[s]
        assert encode(running, register_value(running, view, None)) == [
            int(s is MachineState.RUNNING)
        ]
        assert encode(alarm, register_value(alarm, view, None)) == [int(s is MachineState.DOWN)]


@pytest.mark.parametrize(
    ("carrier", "counter", "rate"),
    [
        (Carrier.ELECTRICITY, "energy_kwh", "power_kw"),
        (Carrier.WATER, "water_m3", "flow_m3_per_h"),
        (Carrier.GAS, "gas_m3", "flow_m3_per_h"),
    ],
)
def test_meter_sources_pick_reading_and_rate(carrier: Carrier, counter: str, rate: str) -> None:
    view = MeterView("m", carrier, 1234.5, -6.5, True)
    assert register_value(reg("f64", source=counter), None, view) == 1234.5
    assert register_value(reg("f64", source=rate), None, view) == -6.5
    with pytest.raises(ValueError, match="no value"):
        register_value(reg("f64", source=counter), None, None)


def test_decode_refuses_the_wrong_number_of_words() -> None:
    with pytest.raises(ValueError, match="takes 2 register"):
        decode(reg("f32"), [1])


@given(
    st.sampled_from(["u16", "i16", "u32", "i32"]),
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
    st.integers(min_value=-(2**31), max_value=2**32 - 1),
)
def test_integers_round_trip_within_range(type_: str, order: str, value: int) -> None:
    bits = 16 if type_.endswith("16") else 32
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if type_[0] == "i" else (0, 2**bits - 1)
    if bits == 16 and order in ("CDAB", "DCBA"):
        order = "ABCD"  # one-register values have no word order
    value = min(hi, max(lo, value))
    r = reg(type_, order)
    assert decode(r, encode(r, value)) == value


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_f32_round_trips_exactly(value: float) -> None:
    r = reg("f32", "CDAB")
    assert decode(r, encode(r, value)) == value
    assert struct.pack(">f", value) == struct.pack(">f", oracle(encode(r, value), "f32", "CDAB"))
