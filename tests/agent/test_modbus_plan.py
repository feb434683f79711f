"""The read planner: coalescing rules, limits, wording, and optimality against brute force."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import ModbusDeviceConfig, ModbusTagConfig
from edge_agent.modbus_plan import (
    ReadRequest,
    describe_plan,
    plan_device,
    plan_reads,
    split_request,
)

BIT_TYPES = {"coil": "bit", "discrete": "bit"}


def tag(name: str, address: int, type_: str = "u16", function: str = "holding") -> ModbusTagConfig:
    if function in BIT_TYPES:
        type_ = "bit"
    return ModbusTagConfig(tag=name, address=address, type=type_, function=function)


def device(tags: list[ModbusTagConfig], **kw: Any) -> ModbusDeviceConfig:
    return ModbusDeviceConfig(
        id="cnc-03", protocol="modbus", host="127.0.0.1", unit=1, tags=tags, **kw
    )


def spans(requests: Sequence[ReadRequest]) -> list[tuple[str, int, int, list[str]]]:
    return [(r.function, r.address, r.count, [t.tag for t in r.tags]) for r in requests]


def check_valid(
    tags: Sequence[ModbusTagConfig], requests: Sequence[ReadRequest], limit: int, max_gap: int
) -> None:
    """Every tag read exactly once, whole, by a request within the limits."""
    seen = [t.tag for r in requests for t in r.tags]
    assert sorted(seen) == sorted(t.tag for t in tags)
    for r in requests:
        assert 1 <= r.count <= limit
        inside = [t for t in tags if t.function == r.function and r.address <= t.address < r.end]
        assert {t.tag for t in inside} == {t.tag for t in r.tags}
        members = list(r.tags)
        assert members == sorted(members, key=lambda t: t.address)
        assert members[0].address == r.address
        assert members[-1].address + members[-1].count == r.end
        for a, b in itertools.pairwise(members):
            assert 0 <= b.address - (a.address + a.count) <= max_gap


# --- coalescing examples -------------------------------------------------------------


def test_adjacent_tags_share_one_request() -> None:
    tags = [tag("a", 0), tag("b", 1, "u32"), tag("c", 3, "f64"), tag("d", 7, "i16")]
    assert spans(plan_reads(tags)) == [("holding", 0, 8, ["a", "b", "c", "d"])]


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (11, [("holding", 0, 12, ["a", "b"])]),  # gap of 10 = max_gap: spanned
        (12, [("holding", 0, 1, ["a"]), ("holding", 12, 1, ["b"])]),  # gap 11: two requests
    ],
)
def test_gap_within_and_over_max_gap(
    second: int, expected: list[tuple[str, int, int, list[str]]]
) -> None:
    assert spans(plan_reads([tag("a", 0), tag("b", second)], max_gap=10)) == expected


def test_max_gap_zero_joins_only_contiguous_tags() -> None:
    tags = [tag("a", 0), tag("b", 1), tag("c", 3)]
    assert spans(plan_reads(tags, max_gap=0)) == [
        ("holding", 0, 2, ["a", "b"]),
        ("holding", 3, 1, ["c"]),
    ]


def test_the_125_register_limit_exactly() -> None:
    # 62 u32 and one u16 fill 125 registers: one request
    tags = [tag(f"t{i}", 2 * i, "u32") for i in range(62)] + [tag("last", 124)]
    assert spans(plan_reads(tags)) == [("holding", 0, 125, [t.tag for t in tags])]
    # one more register needs a second request
    more = [*tags, tag("next", 125)]
    assert [(r.address, r.count) for r in plan_reads(more)] == [(0, 125), (125, 1)]


def test_a_tag_is_never_split_across_requests() -> None:
    tags = [tag("a", 0), tag("f", 122, "f64")]  # f64 at 122..125 would end past 125
    requests = plan_reads(tags, max_gap=200)
    assert spans(requests) == [("holding", 0, 1, ["a"]), ("holding", 122, 4, ["f"])]
    check_valid(tags, requests, 125, 200)


def test_bits_go_up_to_2000_per_request() -> None:
    tags = [tag(f"c{a}", a, function="coil") for a in range(0, 2000, 10)]
    tags.append(tag("c1999", 1999, function="coil"))
    assert [(r.address, r.count) for r in plan_reads(tags)] == [(0, 2000)]
    tags.append(tag("c2000", 2000, function="coil"))
    assert [(r.address, r.count) for r in plan_reads(tags)] == [(0, 2000), (2000, 1)]
    # the register limit does not apply to bits, nor the bit limit to registers
    assert len(plan_reads(tags[:50], max_registers=1)) == 1


def test_mixed_functions_in_fixed_order() -> None:
    tags = [
        tag("d0", 0, function="discrete"),
        tag("c0", 5, function="coil"),
        tag("i0", 0, "u32", function="input"),
        tag("h1", 2),
        tag("c1", 6, function="coil"),
        tag("h0", 0),
        tag("i1", 2, function="input"),
    ]
    expected = [
        ("holding", 0, 3, ["h0", "h1"]),
        ("input", 0, 3, ["i0", "i1"]),
        ("coil", 5, 2, ["c0", "c1"]),
        ("discrete", 0, 1, ["d0"]),
    ]
    assert spans(plan_reads(tags)) == expected
    shuffled = tags[:]
    random.Random(7).shuffle(shuffled)
    assert spans(plan_reads(shuffled)) == expected  # input order does not matter


def test_too_wide_tag_names_the_tag_and_the_fix() -> None:
    with pytest.raises(ValueError, match="raise max_registers_per_request to at least 4") as err:
        plan_reads([tag("energy", 10, "f64")], max_registers=2)
    assert "'energy'" in str(err.value)
    assert "f64" in str(err.value)


def test_plan_device_uses_the_device_limits_and_names_it() -> None:
    tags = [tag("a", 0), tag("b", 2), tag("c", 4, "u32")]
    assert spans(plan_device(device(tags, max_gap_registers=0))) == [
        ("holding", 0, 1, ["a"]),
        ("holding", 2, 1, ["b"]),
        ("holding", 4, 2, ["c"]),
    ]
    assert len(plan_device(device(tags, max_registers_per_request=3))) == 2
    assert len(plan_device(device(tags))) == 1
    # the config refuses such a device when the file is loaded, before any plan is made
    with pytest.raises(ValueError, match=r"tag 'c' \(u32\) takes 2 registers .* at least 2"):
        device(tags, max_registers_per_request=1)


def test_negative_max_gap_is_refused() -> None:
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads([tag("a", 0)], max_gap=-1)


# --- describe_plan -------------------------------------------------------------------


def test_describe_plan_wording() -> None:
    regs = [ReadRequest("holding", a, 53, ()) for a in range(0, 400, 100)]
    assert describe_plan("cnc-03", regs) == "cnc-03: 4 requests cover 212 registers"
    regs_and_bits = [tag("p", 0, "u32"), tag("t", 2, "u16"), tag("q", 10, "u32")]
    regs_and_bits += [tag("r", 0, function="coil"), tag("s", 1, function="discrete")]
    mixed = plan_reads(regs_and_bits)
    assert describe_plan("ht-01", mixed) == "ht-01: 3 requests cover 12 registers and 2 bits"
    one = plan_reads([tag("x", 0)])
    assert describe_plan("m1", one) == "m1: 1 request covers 1 register"
    bits = plan_reads([tag("x", 0, function="coil")])
    assert describe_plan("m2", bits) == "m2: 1 request covers 1 bit"
    assert describe_plan("m3", []) == "m3: 0 requests cover 0 registers"


def test_describe_plan_example_from_the_brief() -> None:
    tags = [tag("a", 0), tag("b", 1, "u32"), tag("d", 11, function="coil")]
    requests = plan_reads([*tags, tag("e", 12, function="coil")], max_gap=0)
    assert describe_plan("ht-01", requests) == "ht-01: 2 requests cover 3 registers and 2 bits"


# --- split_request -------------------------------------------------------------------


def test_split_request_into_contiguous_runs() -> None:
    tags = [tag("a", 0), tag("b", 1, "u32"), tag("c", 5), tag("d", 6), tag("e", 9, "f32")]
    (req,) = plan_reads(tags)
    assert spans(split_request(req)) == [
        ("holding", 0, 3, ["a", "b"]),
        ("holding", 5, 2, ["c", "d"]),
        ("holding", 9, 2, ["e"]),
    ]


def test_split_request_without_gaps_gives_one_request_per_tag() -> None:
    tags = [tag("a", 0), tag("b", 1, "u32"), tag("c", 3, function="holding")]
    (req,) = plan_reads(tags)
    assert spans(split_request(req)) == [
        ("holding", 0, 1, ["a"]),
        ("holding", 1, 2, ["b"]),
        ("holding", 3, 1, ["c"]),
    ]


def test_split_request_of_one_tag_and_of_bits() -> None:
    (one,) = plan_reads([tag("a", 7, "f64")])
    assert split_request(one) == [one]
    (bits,) = plan_reads([tag(f"c{a}", a, function="coil") for a in (0, 1, 4)])
    assert spans(split_request(bits)) == [
        ("coil", 0, 2, ["c0", "c1"]),
        ("coil", 4, 1, ["c4"]),
    ]


# --- optimality against brute force --------------------------------------------------


def set_partitions(items: list[int]) -> Iterator[list[list[int]]]:
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        yield [[first], *part]
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]


def brute_force_min_requests(tags: list[ModbusTagConfig], limit: int, max_gap: int) -> int:
    """The fewest requests over every way to group the tags (no assumption of contiguity)."""

    def readable(block: list[int]) -> bool:
        members = sorted((tags[i] for i in block), key=lambda t: t.address)
        start, end = members[0].address, max(t.address + t.count for t in members)
        if end - start > limit:
            return False
        if any(b.address - (a.address + a.count) > max_gap for a, b in itertools.pairwise(members)):
            return False
        # a request reads every tag in its span, so no other tag may lie there
        others = (t for i, t in enumerate(tags) if i not in block)
        return not any(t.address < end and t.address + t.count > start for t in others)

    return min(
        len(p) for p in set_partitions(list(range(len(tags)))) if all(readable(b) for b in p)
    )


@st.composite
def tag_sets(draw: st.DrawFn) -> tuple[list[ModbusTagConfig], int, int, int]:
    tags: list[ModbusTagConfig] = []
    for function in ("holding", "input", "coil"):
        address = draw(st.integers(0, 3))
        for i in range(draw(st.integers(0, 6))):
            type_ = "bit" if function == "coil" else draw(st.sampled_from(["u16", "u32", "f64"]))
            t = ModbusTagConfig(
                tag=f"{function}{i}", function=function, address=address, type=type_
            )
            tags.append(t)
            address += t.count + draw(st.integers(0, 5))
    return tags, draw(st.integers(4, 14)), draw(st.integers(1, 9)), draw(st.integers(0, 4))


@given(tag_sets())
def test_greedy_is_optimal(case: tuple[list[ModbusTagConfig], int, int, int]) -> None:
    tags, max_registers, max_bits, max_gap = case
    requests = plan_reads(tags, max_registers=max_registers, max_bits=max_bits, max_gap=max_gap)
    limits = {"holding": max_registers, "input": max_registers, "coil": max_bits}
    for function, limit in limits.items():
        group = [t for t in tags if t.function == function]
        planned = [r for r in requests if r.function == function]
        check_valid(group, planned, limit, max_gap)
        if group:
            assert len(planned) == brute_force_min_requests(group, limit, max_gap)
    # deterministic order: function, then address
    order = ["holding", "input", "coil", "discrete"]
    keys = [(order.index(r.function), r.address) for r in requests]
    assert keys == sorted(keys)
