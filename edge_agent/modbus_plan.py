"""The Modbus read planner: which requests read a device's tags (pure, no I/O).

    ModbusTagConfig[] --plan_reads--> ReadRequest[] --BlockDecoder (modbus_codec)--> values

Every request costs a round trip (tens of milliseconds on a serial bus), so neighbouring
tags are read together: a request may span a few unused registers (``max_gap``) to save
a round trip, up to the protocol limits (125 registers, 2000 bits per request). A tag is
never split across requests, so each request decodes on its own. The plan is computed
once at start and logged: "cnc-03: 4 requests cover 212 registers".

At run time a device may refuse a request that spans addresses it does not implement
(exception 2, illegal data address); `split_request` then gives the smaller requests
to read the same tags with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edge_agent.config import (
    MAX_BITS_PER_REQUEST,
    MAX_REGISTERS_PER_REQUEST,
    ModbusDeviceConfig,
    ModbusFunction,
    ModbusTagConfig,
)

# The output order: registers before bits, as a device's register map lists them.
FUNCTION_ORDER: tuple[ModbusFunction, ...] = ("holding", "input", "coil", "discrete")
BIT_FUNCTIONS = frozenset({"coil", "discrete"})


@dataclass(frozen=True, slots=True)
class ReadRequest:
    function: str  # "holding" | "input" | "coil" | "discrete"
    address: int  # first address read
    count: int  # registers (or bits) read
    tags: tuple[ModbusTagConfig, ...]  # the tags fully inside [address, address+count)

    @property
    def is_bit(self) -> bool:
        return self.function in BIT_FUNCTIONS

    @property
    def end(self) -> int:
        """One past the last address read."""
        return self.address + self.count


def _tag_end(tag: ModbusTagConfig) -> int:
    return tag.address + tag.count


def _by_address(tag: ModbusTagConfig) -> tuple[int, int, str]:
    return (tag.address, tag.count, tag.tag)


def plan_reads(
    tags: Sequence[ModbusTagConfig],
    *,
    max_registers: int = MAX_REGISTERS_PER_REQUEST,
    max_bits: int = MAX_BITS_PER_REQUEST,
    max_gap: int = 10,
) -> list[ReadRequest]:
    """The fewest requests that read every tag, in function then address order.

    Raises ValueError for a tag wider than a request may be, naming the tag and the fix.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, not {max_gap}")
    requests: list[ReadRequest] = []
    for function in FUNCTION_ORDER:
        group = sorted((t for t in tags if t.function == function), key=_by_address)
        if function in BIT_FUNCTIONS:
            limit, setting, unit = max_bits, "max_bits_per_request", "bits"
        else:
            limit, setting, unit = max_registers, "max_registers_per_request", "registers"
        for t in group:
            if t.count > limit:
                raise ValueError(
                    f"tag {t.tag!r} ({t.type} at {function} address {t.address}) takes "
                    f"{t.count} {unit}, more than {setting} {limit} allows: "
                    f"raise {setting} to at least {t.count}"
                )
        # Greedy is optimal here: a request reads a contiguous run of the sorted tags
        # (a tag inside its span is read by it), and every sub-run of a readable run is
        # readable too (the span only shrinks, the gaps are a subset). So by induction,
        # after k requests greedy has read at least as many of the sorted tags as any
        # plan has after k: it never needs more requests. tests/agent/test_modbus_plan.py
        # checks this against a brute force over every grouping.
        run: list[ModbusTagConfig] = []
        start = end = 0
        for t in group:
            t_end = _tag_end(t)
            if run and t_end - start <= limit and t.address - end <= max_gap:
                run.append(t)
                end = max(end, t_end)  # max(): tolerate overlapping tags (discovery)
                continue
            if run:
                requests.append(ReadRequest(function, start, end - start, tuple(run)))
            run, start, end = [t], t.address, t_end
        if run:
            requests.append(ReadRequest(function, start, end - start, tuple(run)))
    return requests


def plan_device(device: ModbusDeviceConfig) -> list[ReadRequest]:
    """The device's read plan, within its own request limits; errors name the device."""
    try:
        return plan_reads(
            device.tags,
            max_registers=device.max_registers_per_request,
            max_bits=device.max_bits_per_request,
            max_gap=device.max_gap_registers,
        )
    except ValueError as exc:
        raise ValueError(f"device {device.id!r}: {exc}") from None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def describe_plan(device_id: str, requests: Sequence[ReadRequest]) -> str:
    """One log line: "cnc-03: 4 requests cover 212 registers" (gaps included)."""
    registers = sum(r.count for r in requests if not r.is_bit)
    bits = sum(r.count for r in requests if r.is_bit)
    covered = []
    if registers or not bits:
        covered.append(_plural(registers, "register"))
    if bits:
        covered.append(_plural(bits, "bit"))
    verb = "covers" if len(requests) == 1 else "cover"
    return f"{device_id}: {_plural(len(requests), 'request')} {verb} {' and '.join(covered)}"


def split_request(req: ReadRequest) -> list[ReadRequest]:
    """Smaller requests reading the same tags, for a device that refused `req`.

    One request per maximal run of contiguous tags, so no request spans an unused
    address; a request without gaps is split into one request per tag, the last
    resort. A one-tag request comes back as a single request (nothing left to split).
    """
    tags = sorted(req.tags, key=_by_address)
    if not tags:
        return [req]
    runs: list[list[ModbusTagConfig]] = [[tags[0]]]
    run_end = _tag_end(tags[0])
    for t in tags[1:]:
        if t.address > run_end:
            runs.append([t])
            run_end = _tag_end(t)
        else:
            runs[-1].append(t)
            run_end = max(run_end, _tag_end(t))
    if len(runs) == 1:
        runs = [[t] for t in tags]
    out = []
    for run in runs:
        first, last = run[0].address, max(_tag_end(t) for t in run)
        out.append(ReadRequest(req.function, first, last - first, tuple(run)))
    return out
