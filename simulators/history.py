"""History mode: N days of past plant data, produced in seconds instead of days.

Writes what the gateway would have collected over the period, one JSON sample per
line in time order (gzip when the file name ends in .gz), beside the truth file for
the same period. `edge-agent backfill` feeds these samples through the agent's outbox.

Sample: {"d": device, "t": tag, "role": tag role, "ts": ISO UTC, "v": value, "q": "good"}

Tags are named after what they carry (`state`, `parts_completed`, `energy_kwh`, ...),
the tag ids of the agent config `factory-sim agent-config` writes for the scenario.
Values are what the device shows: Modbus counters as their registers encode them
(truncated to resolution, wrapped at the register width), states as canonical names,
bits as 1 or 0. Machines with interface `none` deliver nothing, as in reality.

    Plant --advance_to(poll)--> truth records (closed spans) --> span starts, exact
                          \\---> the plant now ----------------> span starts, poll

A state change is a sample at the exact instant it happened (a span start, with a
PLC's running and alarm bits beside it). Every poll also reads each networked
machine's state and bits, as the agent's heartbeat re-sends an unchanged state, so a
long OFF span is told apart from a dead gateway; and its counters, power and program.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from edge_agent.contract.sample import MachineState
from simulators.faults import Fault, FaultError
from simulators.plant import Plant
from simulators.registers import decode, encode, register_value
from simulators.scenario import Interface, Scenario
from simulators.truth import TruthWriter, iso, parse_iso

logger = logging.getLogger(__name__)

ROLES = {
    "state": "machine_state",
    "parts_completed": "part_count_total",
    "parts_good": "part_count_good",
    "program": "program",
    "spindle_rpm": "spindle_speed",
    "feed_override_pct": "feed_override",
    "energy_kwh": "energy_kwh",
    "power_kw": "power_kw",
    "water_m3": "water_m3",
    "gas_m3": "gas_m3",
    "flow_m3_per_h": "generic",
    "running": "generic",
    "alarm": "alarm",
    "_status": "device_status",
}
# a PLC bit as a function of the machine's state (registers.register_value)
_BITS = {"running": MachineState.RUNNING.value, "alarm": MachineState.DOWN.value}
_UINT32 = 2**32
_INTEGRAL = {"parts_completed", "parts_good", *_BITS}

# (time, device, tag, value): sorted by time before it is written
Reading = tuple[float, str, str, Any]


def _line(r: Reading) -> str:
    t, device, tag, value = r
    sample = {"d": device, "t": tag, "role": ROLES[tag], "ts": iso(t), "v": value, "q": "good"}
    return json.dumps(sample, separators=(",", ":"), ensure_ascii=False) + "\n"


class HistorySampler:
    """Reads the plant the way the demo gateway polls it, at a fixed interval.

    Span starts come out in time order: those of spans that began and ended between two
    polls from the truth records, that of the current span from the plant, each once.
    """

    def __init__(self, scenario: Scenario, plant: Plant) -> None:
        self.scenario = scenario
        self.plant = plant
        eq = scenario.equipment_by_id()
        self.opcua_machines = [e.id for e in scenario.equipment if e.interface is Interface.OPCUA]
        self.modbus_units = [u for s in scenario.modbus_servers for u in s.units]
        plcs = [u for u in self.modbus_units if u.device in eq]
        self.plc_state_codes = {
            u.device: {code: state for state, code in r.codes.items()}
            for u in plcs
            for r in u.registers
            if r.source == "state"
        }
        self.plc_bits = {
            u.device: [r.source for r in u.registers if r.source in _BITS] for u in plcs
        }
        self.meter_ids = {m.id for m in scenario.meters}
        self.networked = [*self.opcua_machines, *self.plc_state_codes]
        self._networked = set(self.networked)
        self._last_start: dict[str, float] = {}
        self._devices = [*self.opcua_machines, *(u.device for u in self.modbus_units)]
        self._offline: set[str] = set()

    def read(self, t: float, records: list[dict[str, Any]]) -> list[Reading]:
        """What the gateway has by poll t, sorted by time: the span starts since the last
        poll (from `records`, the truth drained at t, and the plant's current spans),
        then the poll itself. The plant must be at t."""
        out: list[Reading] = []
        came_back = self._status(out, t)
        for r in records:
            if r["type"] == "state" and r["device"] in self._networked:
                if r["device"] in self._offline or r["device"] in came_back:
                    continue  # the gateway did not see it change
                self._span_start(out, r["device"], parse_iso(r["start"]), r["state"])
        for mid in self.networked:
            if mid in self._offline:
                continue
            view = self.plant.machine(mid)
            if mid in came_back:
                # back online: the state as read now, not when it began unseen
                self._last_start[mid] = view.state_since
                self._state(out, mid, t, view.state.value)
                continue
            if not self._span_start(out, mid, view.state_since, view.state.value) or (
                view.state_since != t
            ):
                # the heartbeat, unless the span-start sample is this poll's reading
                self._state(out, mid, t, view.state.value)
        out.extend(self.poll(t))
        out.sort(key=lambda r: (r[0], r[1], r[2]))
        return out

    def _status(self, out: list[Reading], t: float) -> set[str]:
        """`_status` samples for devices that went offline or came back by t (as the
        agent reports them); returns the devices that came back."""
        now_offline = {d for d in self._devices if not self.plant.online(d)}
        back = self._offline - now_offline
        out.extend((t, d, "_status", "offline") for d in sorted(now_offline - self._offline))
        out.extend((t, d, "_status", "online") for d in sorted(back))
        self._offline = now_offline
        return back

    def _span_start(self, out: list[Reading], device: str, start: float, state: str) -> bool:
        """A state sample at the start of a span not seen before; False if it was."""
        if start <= self._last_start.get(device, -math.inf):
            return False
        self._last_start[device] = start
        self._state(out, device, start, state)
        return True

    def _state(self, out: list[Reading], device: str, t: float, state: str) -> None:
        out.append((t, device, "state", state))
        out.extend(
            (t, device, bit, int(state == _BITS[bit])) for bit in self.plc_bits.get(device, ())
        )

    def poll(self, t: float) -> list[Reading]:
        """Counters, power and programs as read at t (the plant must be at t)."""
        out: list[Reading] = []
        for mid in self.opcua_machines:
            if mid in self._offline:
                continue
            v = self.plant.machine(mid)
            out += [
                (t, mid, "parts_completed", v.parts_completed % _UINT32),
                (t, mid, "parts_good", v.parts_good % _UINT32),
                (t, mid, "program", v.program),
                (t, mid, "spindle_rpm", v.spindle_rpm),
                (t, mid, "feed_override_pct", v.feed_override_pct),
            ]
        for unit in self.modbus_units:
            if unit.device in self._offline:
                continue
            is_meter = unit.device in self.meter_ids
            machine = None if is_meter else self.plant.machine(unit.device)
            meter = self.plant.meter(unit.device) if is_meter else None
            machine_state = unit.device in self.plc_state_codes
            for r in unit.registers:
                if r.source == "state" or (r.source in _BITS and machine_state):
                    continue  # read with the state, exactly
                # what a gateway decodes: truncated to resolution, wrapped at the width
                shown = float(decode(r, encode(r, register_value(r, machine, meter)))) * r.scale
                value: float | int = round(shown) if r.source in _INTEGRAL else shown
                out.append((t, unit.device, r.source, value))
        return out


def _fault_events(
    scenario: Scenario, faults: Sequence[Fault], start: float, end: float
) -> list[tuple[float, Fault | None]]:
    """(instant, fault) in time order; an offline fault also polls at its end."""
    devices = {e.id for e in scenario.equipment} | {m.id for m in scenario.meters}
    meters = {m.id for m in scenario.meters}
    events: list[tuple[float, Fault | None]] = []
    for fault in faults:
        if fault.kind not in ("offline", "reset"):
            raise FaultError(f"history supports offline and reset faults, not {fault.kind!r}")
        if fault.target not in (meters if fault.kind == "reset" else devices):
            what = "meter" if fault.kind == "reset" else "equipment or meter"
            raise FaultError(f"{fault.kind}: {fault.target!r} is not a {what} id")
        at = start + (fault.at_s or 0.0)
        if not start <= at < end:
            raise FaultError(f"{fault.kind}:{fault.target} starts outside the history period")
        events.append((at, fault))
        if fault.kind == "offline" and at + fault.seconds < end:
            events.append((at + fault.seconds, None))  # a poll only: it is back
    events.sort(key=lambda e: e[0])
    return events


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def write_history(  # noqa: PLR0912 (the loop with its fault instants)
    scenario: Scenario,
    *,
    start: float,
    end: float,
    out: Path,
    truth: Path | None,
    interval_s: float = 60.0,
    faults: Sequence[Fault] = (),
) -> dict[str, int]:
    """Simulate [start, end], polling at start, every interval_s and at end, and write
    samples (and truth); returns counts.

    `faults` (at_s: seconds after start): `offline` cuts a device off for its seconds
    (the gateway reports `_status` offline, reads nothing from it, and reports it online
    with its current values when it is back: extra polls at both instants); `reset`
    clears a meter's counter right after the poll at that instant (nothing is lost
    between that reading and the reset: in reality the consumption between the last
    reading and a reset is lost, and the server flags the reset).
    """
    if end <= start:
        raise ValueError("the history period is empty: end must be after start")
    if interval_s <= 0:
        raise ValueError("interval_s must be greater than 0")
    plant = Plant(scenario, start)
    sampler = HistorySampler(scenario, plant)
    pending = _fault_events(scenario, faults, start, end)
    writer = TruthWriter(truth) if truth else None
    samples = 0
    try:
        with _open(out) as f:
            t = start
            while True:
                if pending and pending[0][0] < t:
                    t_poll = t
                    t = pending[0][0]  # an extra poll at the fault's instant
                else:
                    t_poll = None
                plant.advance_to(t)
                resets = []
                while pending and pending[0][0] <= t:
                    _, fault = pending.pop(0)
                    if fault is None:
                        continue
                    if fault.kind == "offline":
                        plant.set_offline(fault.target, fault.seconds)
                    else:
                        resets.append(fault.target)
                records = plant.drain_truth()
                readings = sampler.read(t, records)
                f.writelines(map(_line, readings))
                samples += len(readings)
                for meter in resets:
                    plant.reset_meter(meter)
                if t >= end:
                    # read before finish(): closing the open spans counts them into the
                    # machines' totals, and a meter read after it would show them twice;
                    # their starts are out already, as current spans
                    records += plant.finish()
                if writer:
                    writer.write(records)
                if t >= end:
                    break
                t = t_poll if t_poll is not None else min(end, t + interval_s)
    finally:
        if writer:
            writer.close()
    logger.info("history %s .. %s: %d samples to %s", iso(start), iso(end), samples, out)
    return {"samples": samples, "truth_records": writer.count if writer else 0}
