"""The codec against the simulator's encoder (the ground truth) and pymodbus' converters."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pymodbus.client import ModbusTcpClient

from edge_agent.config import REGISTER_COUNT, ModbusTagConfig
from edge_agent.contract.sample import MachineState, Quality, Role
from edge_agent.modbus_codec import BlockDecoder, Decoded, decode_words
from edge_agent.modbus_plan import ReadRequest, plan_reads
from simulators.registers import encode
from simulators.scenario import MachineState as SimState
from simulators.scenario import Register

DT = ModbusTcpClient.DATATYPE
ORACLE_TYPE = {
    "u16": DT.UINT16,
    "i16": DT.INT16,
    "u32": DT.UINT32,
    "i32": DT.INT32,
    "f32": DT.FLOAT32,
    "f64": DT.FLOAT64,
}
ORDERS = {
    "u16": ("ABCD", "BADC"),
    "i16": ("ABCD", "BADC"),
    "u32": ("ABCD", "CDAB", "BADC", "DCBA"),
    "i32": ("ABCD", "CDAB", "BADC", "DCBA"),
    "f32": ("ABCD", "CDAB", "BADC", "DCBA"),
    "f64": ("ABCD", "CDAB", "BADC", "DCBA"),
}
GOOD, BAD = Quality.GOOD, Quality.BAD


def reg(
    type_: str,
    order: str = "ABCD",
    scale: float = 1.0,
    source: str = "power_kw",
    *,
    table: str = "holding",
    address: int = 0,
    **kw: Any,
) -> Register:
    return Register(
        table=table, address=address, type=type_, order=order, scale=scale, source=source, **kw
    )


def tag_for(r: Register, name: str = "t", offset: float = 0.0, **kw: Any) -> ModbusTagConfig:
    """The agent's tag for a simulator register: same table, address, type, order, scale."""
    return ModbusTagConfig(
        tag=name,
        function=r.table,
        address=r.address,
        type=r.type,
        order=r.order,
        scale=r.scale,
        offset=offset,
        **kw,
    )


def one(tag: ModbusTagConfig, data: list[int] | list[bool]) -> Decoded:
    """Decode one tag the way the agent does: a request of its own, a BlockDecoder."""
    (decoded,) = BlockDecoder(ReadRequest(tag.function, tag.address, tag.count, (tag,))).decode(
        data
    )
    return decoded


def swap_bytes(words: list[int]) -> list[int]:
    return [((w & 0xFF) << 8) | (w >> 8) for w in words]


def oracle(words: list[int], type_: str, order: str) -> float | int:
    """Decode as an integrator would with pymodbus: word order big/little, bytes swapped by hand."""
    if order in ("BADC", "DCBA"):
        words = swap_bytes(words)
    value = ModbusTcpClient.convert_from_registers(
        words, ORACLE_TYPE[type_], word_order="little" if order in ("CDAB", "DCBA") else "big"
    )
    assert isinstance(value, int | float)
    return value


# (type, source, scale, offset, [(value written, value expected back), ...])
INT_CASES: list[tuple[str, str, float, float, list[tuple[float, float]]]] = [
    ("u16", "power_kw", 1, 0, [(0, 0), (1, 1), (12345, 12345), (65535, 65535)]),
    ("u16", "energy_kwh", 1, 0, [(65534, 65534), (65535, 65535), (65536, 0), (65537, 1)]),
    ("u16", "energy_kwh", 0.1, 0, [(0.1, 0.1), (1234.5, 1234.5), (6553.5, 6553.5)]),
    ("u16", "power_kw", 0.1, -40, [(0, -40), (25.3, -14.7), (6553.5, 6513.5)]),
    ("i16", "power_kw", 1, 0, [(-32768, -32768), (-1, -1), (0, 0), (32767, 32767)]),
    ("i16", "power_kw", 0.01, 0, [(-327.68, -327.68), (-0.01, -0.01), (327.67, 327.67)]),
    ("u32", "energy_kwh", 0.1, 0, [(0, 0), (1873210.4, 1873210.4), (429496729.5, 429496729.5)]),
    ("u32", "energy_kwh", 1, 0, [(4294967295, 4294967295), (4294967296, 0), (4294967297, 1)]),
    ("u32", "energy_kwh", 0.001, 0, [(4294967.295, 4294967.295), (1.001, 1.001)]),
    ("u32", "power_kw", 0.01, 0.5, [(12.34, 12.84), (0, 0.5)]),
    ("i32", "power_kw", 1, 0, [(-(2**31), -(2**31)), (-1, -1), (0, 0), (2**31 - 1, 2**31 - 1)]),
    ("i32", "power_kw", 0.001, 0, [(-12345.678, -12345.678), (2147483.647, 2147483.647)]),
    ("i32", "energy_kwh", 1, 0, [(2**31 - 1, 2**31 - 1), (2**31, -(2**31))]),  # DINT wrap
]
FLOAT_CASES: list[tuple[str, float, float, list[tuple[float, float]]]] = [
    ("f32", 1, 0, [(0.0, 0.0), (-1.5, -1.5), (1873210.4, 1873210.4), (-123.456, -123.456)]),
    ("f32", 1, 0, [(3.4e38, 3.4e38), (-3.4e38, -3.4e38), (1e-30, 1e-30)]),
    ("f32", 0.1, 2.5, [(1873210.4, 1873212.9), (0.0, 2.5)]),
    ("f64", 1, 0, [(0.0, 0.0), (1873210.4, 1873210.4), (-1e300, -1e300), (5e-324, 5e-324)]),
    ("f64", 1, 0, [(1.7976931348623157e308, 1.7976931348623157e308)]),
    ("f64", 0.001, -1, [(42.125, 41.125), (-98765.4321, -98766.4321)]),
]


def _params_int() -> list[Any]:
    return [
        pytest.param(case, order, id=f"{t}-{order}-{src}-x{scale}+{off}")
        for case in INT_CASES
        for t, src, scale, off, _ in [case]
        for order in ORDERS[t]
    ]


def _params_float() -> list[Any]:
    return [
        pytest.param(t, scale, off, order, cases, id=f"{t}-{order}-x{scale}+{off}")
        for t, scale, off, cases in FLOAT_CASES
        for order in ORDERS[t]
    ]


@pytest.mark.parametrize(("case", "order"), _params_int())
def test_integer_types_every_order(
    case: tuple[str, str, float, float, list[tuple[float, float]]], order: str
) -> None:
    type_, source, scale, offset, cases = case
    r = reg(type_, order, scale, source, address=7)
    tag = tag_for(r, offset=offset)
    for value, expected in cases:
        words = encode(r, value)
        # exact, no binary noise: what the device's display shows
        assert decode_words(tag, words) == expected, (value, words)
        assert one(tag, words) == ("t", expected, GOOD, None)


@pytest.mark.parametrize(("type_", "scale", "offset", "order", "cases"), _params_float())
def test_float_types_every_order(
    type_: str, scale: float, offset: float, order: str, cases: list[tuple[float, float]]
) -> None:
    r = reg(type_, order, scale, "energy_kwh", address=3)
    tag = tag_for(r, offset=offset)
    rel = 1e-7 if type_ == "f32" else 1e-15
    for value, expected in cases:
        words = encode(r, value)
        assert decode_words(tag, words) == pytest.approx(expected, rel=rel, abs=1e-300)
        name, got, quality, status = one(tag, words)
        assert (name, quality, status) == ("t", GOOD, None)
        assert got == pytest.approx(expected, rel=rel, abs=1e-300)


def test_scaled_integers_carry_no_binary_noise() -> None:
    r = reg("u32", "CDAB", 0.1, "energy_kwh")
    words = encode(r, 1873210.4)
    assert 18732104 * 0.1 == 1873210.4000000001  # what naive scaling would publish
    assert repr(decode_words(tag_for(r), words)) == "1873210.4"
    assert repr(one(tag_for(r), words)[1]) == "1873210.4"
    # the offset's decimals count too: 3 + 0.1 + 0.2 must not become 3.3000000000000003
    tag = tag_for(reg("u16", scale=0.1), offset=0.2)
    assert repr(decode_words(tag, [31])) == "3.3"


@pytest.mark.parametrize(
    ("table", "source"), [("coil", "running"), ("discrete", "alarm"), ("coil", "alarm")]
)
def test_bits(table: str, source: str) -> None:
    r = reg("bit", table=table, source=source, address=12)
    tag = tag_for(r)
    assert decode_words(tag, encode(r, True)) == 1.0
    assert decode_words(tag, encode(r, False)) == 0.0
    assert one(tag, [True]) == ("t", 1.0, GOOD, None)
    assert one(tag, [False, False, False, False, False, False, False, False]) == (
        "t",
        0.0,
        GOOD,
        None,
    )


# --- against pymodbus' own converters ------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "words"),
    [
        ("u16", [0xFFFE]),
        ("i16", [0xFFFE]),
        ("u32", [0x1122, 0x3344]),
        ("i32", [0xFFFF, 0xFFFE]),
        ("i32", [0x8000, 0x0001]),
        ("f32", [0x449A, 0x5000]),
        ("f64", [0x40FE, 0x240C, 0xA57A, 0x786C]),
    ],
)
def test_matches_pymodbus(type_: str, words: list[int]) -> None:
    for order in ORDERS[type_]:
        tag = ModbusTagConfig(tag="t", address=0, type=type_, order=order)
        assert decode_words(tag, words) == oracle(words, type_, order), order


def test_pymodbus_uint32_little_word_order_is_cdab() -> None:
    tag = ModbusTagConfig(tag="t", address=0, type="u32", order="CDAB")
    words = [0x3344, 0x1122]
    assert ModbusTcpClient.convert_from_registers(words, DT.UINT32, word_order="little") == (
        0x11223344
    )
    assert decode_words(tag, words) == 0x11223344


@given(
    st.sampled_from([(t, o) for t, orders in ORDERS.items() for o in orders]).flatmap(
        lambda to: st.tuples(
            st.just(to),
            st.lists(
                st.integers(0, 0xFFFF),
                min_size=REGISTER_COUNT[to[0]],
                max_size=REGISTER_COUNT[to[0]],
            ),
        )
    )
)
def test_any_words_match_pymodbus(case: tuple[tuple[str, str], list[int]]) -> None:
    (type_, order), words = case
    tag = ModbusTagConfig(tag="t", address=0, type=type_, order=order)
    expected = oracle(words, type_, order)
    got = decode_words(tag, words)
    if math.isfinite(expected):
        assert got == expected
    else:
        assert got is None


# --- NaN, Inf, states ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "order", "words", "status"),
    [
        ("f32", "ABCD", [0x7FC0, 0x0000], "NaN"),
        ("f32", "CDAB", [0x0000, 0x7FC0], "NaN"),
        ("f32", "ABCD", [0x7F80, 0x0000], "Inf"),
        ("f32", "DCBA", [0x0000, 0x80FF], "Inf"),  # -Inf
        ("f64", "ABCD", [0x7FF8, 0, 0, 0], "NaN"),
        ("f64", "CDAB", [0, 0, 0, 0x7FF0], "Inf"),
        ("f64", "BADC", [0xF0FF, 0, 0, 0], "Inf"),  # -Inf
    ],
)
def test_nan_and_inf_are_bad(type_: str, order: str, words: list[int], status: str) -> None:
    tag = ModbusTagConfig(tag="t", address=0, type=type_, order=order, scale=0.1, offset=1)
    assert decode_words(tag, words) is None
    assert one(tag, words) == ("t", None, BAD, status)


def test_scaling_past_the_float_range_is_inf() -> None:
    tag = ModbusTagConfig(tag="t", address=0, type="f64", scale=10)
    words = encode(reg("f64", source="energy_kwh"), 1.7e308)
    assert one(tag, words) == ("t", None, BAD, "Inf")


def state_tag(type_: str = "u16", order: str = "ABCD", **kw: Any) -> ModbusTagConfig:
    return ModbusTagConfig(
        tag="state",
        address=0,
        type=type_,
        order=order,
        role=Role.MACHINE_STATE,
        state_map={"1": "RUNNING", "2": "IDLE", "3": "DOWN", "-1": "OFF"},
        **kw,
    )


def test_state_map_hit_and_miss() -> None:
    assert one(state_tag(), [2]) == ("state", "IDLE", GOOD, None)
    assert one(state_tag(order="BADC"), [0x0100]) == ("state", "RUNNING", GOOD, None)
    assert one(state_tag(), [7]) == ("state", None, BAD, "unmapped state code 7")
    assert one(state_tag("i16"), [0xFFFF]) == ("state", "OFF", GOOD, None)
    # the code is the raw register value: scale and offset do not move it
    assert one(state_tag(scale=0.1, offset=5), [3]) == ("state", "DOWN", GOOD, None)
    # a state kept in a float register still maps by its integral value
    assert one(state_tag("f32"), [0x4000, 0x0000]) == ("state", "IDLE", GOOD, None)
    assert one(state_tag("f32"), [0x40E0, 0x0000]) == ("state", None, BAD, "unmapped state code 7")
    # decode_words gives the code itself (for discover)
    assert decode_words(state_tag(), [2]) == 2.0


@pytest.mark.parametrize("order", ["ABCD", "BADC"])
def test_states_from_the_simulator_register(order: str) -> None:
    codes = {s: c for c, s in enumerate(SimState, start=10)}
    r = reg("u16", order, source="state", codes=codes)
    tag = tag_for(r, role=Role.MACHINE_STATE, state_map={str(c): s.value for s, c in codes.items()})
    for sim_state, code in codes.items():
        decoded = one(tag, encode(r, code))
        assert decoded == ("t", MachineState(sim_state.value).value, GOOD, None)


# --- blocks --------------------------------------------------------------------------


def test_a_block_with_several_tags_at_offsets() -> None:
    registers = [
        (reg("u16", "ABCD", 1, "power_kw", address=100), 0.0, 4321),
        (reg("f32", "CDAB", 1, "energy_kwh", address=102), 0.0, 1234.5),  # 101: gap
        (reg("i32", "DCBA", 0.01, "power_kw", address=104), 0.0, -5.25),
        (reg("f64", "BADC", 1, "energy_kwh", address=106), 0.0, 98765.4321),
        (reg("u16", "BADC", 0.1, "power_kw", address=110), -40.0, 65.5),
        (reg("u32", "ABCD", 0.1, "energy_kwh", address=115), 0.0, 1873210.4),  # 111-114: gap
    ]
    tags = [tag_for(r, f"t{r.address}", offset) for r, offset, _ in registers]
    (request,) = plan_reads(tags)
    assert (request.address, request.count) == (100, 17)
    words = [0xDEAD] * request.count  # whatever the device keeps in the gaps
    for r, _, value in registers:
        at = r.address - request.address
        words[at : at + r.width] = encode(r, value)
    decoded = BlockDecoder(request).decode(words)
    assert decoded == [
        ("t100", 4321.0, GOOD, None),
        ("t102", 1234.5, GOOD, None),
        ("t104", -5.25, GOOD, None),
        ("t106", 98765.4321, GOOD, None),
        ("t110", 25.5, GOOD, None),
        ("t115", 1873210.4, GOOD, None),
    ]
    for tag, (_, got, _, _) in zip(tags, decoded, strict=True):
        at = tag.address - request.address
        assert decode_words(tag, words[at : at + tag.count]) == got


def test_bits_with_padding_and_offsets() -> None:
    tags = [ModbusTagConfig(tag=f"c{a}", function="coil", type="bit", address=a) for a in (3, 5, 7)]
    (request,) = plan_reads(tags)
    assert (request.address, request.count) == (3, 5)
    # pymodbus pads bits to a whole byte: 8 values for 5 coils
    data = [True, False, False, False, True, True, False, True]
    assert BlockDecoder(request).decode(data) == [
        ("c3", 1.0, GOOD, None),
        ("c5", 0.0, GOOD, None),
        ("c7", 1.0, GOOD, None),
    ]


def test_short_response_is_bad_not_a_crash() -> None:
    tags = [ModbusTagConfig(tag=f"h{a}", address=a) for a in (0, 1, 2)]
    (request,) = plan_reads(tags)
    assert BlockDecoder(request).decode([1, 2]) == [
        (t.tag, None, BAD, "short response: 2 of 3 registers") for t in tags
    ]


def test_a_tag_outside_the_request_is_refused() -> None:
    tag = ModbusTagConfig(tag="t", address=10, type="u32")
    with pytest.raises(ValueError, match="outside the request"):
        BlockDecoder(ReadRequest("holding", 9, 2, (tag,)))


def test_decode_words_checks_the_word_count() -> None:
    with pytest.raises(ValueError, match="f32 takes 2 register"):
        decode_words(ModbusTagConfig(tag="t", address=0, type="f32"), [1])


# --- round trip ----------------------------------------------------------------------

INT_RANGE = {"u16": (0, 2**16 - 1), "i16": (-(2**15), 2**15 - 1)}
INT_RANGE |= {"u32": (0, 2**32 - 1), "i32": (-(2**31), 2**31 - 1)}


@st.composite
def int_round_trips(draw: st.DrawFn) -> tuple[Register, float, float]:
    type_ = draw(st.sampled_from(sorted(INT_RANGE)))
    raw = draw(st.integers(*INT_RANGE[type_]))
    scale = draw(st.sampled_from([1.0, 0.1, 0.01, 0.001, 0.5, 10.0]))
    r = reg(type_, draw(st.sampled_from(ORDERS[type_])), scale, "power_kw")
    # the exact decimal the device means, computed without binary floats
    return r, raw * scale, float(Decimal(raw) * Decimal(repr(scale)))


@given(int_round_trips())
def test_integer_round_trip(case: tuple[Register, float, float]) -> None:
    r, value, expected = case
    assert decode_words(tag_for(r), encode(r, value)) == expected


@given(
    st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
)
def test_float_round_trip(order: str, f32: float, f64: float) -> None:
    r32, r64 = reg("f32", order, source="energy_kwh"), reg("f64", order, source="energy_kwh")
    assert decode_words(tag_for(r32), encode(r32, f32)) == f32
    assert decode_words(tag_for(r64), encode(r64, f64)) == f64
