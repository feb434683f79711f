"""History mode: N days of past plant data, produced in seconds instead of days.

Writes what the gateway would have collected over the period, one JSON sample per
line (gzip when the file name ends in .gz), beside the truth file for the same
period. A later step feeds these samples through the agent's outbox (backfill).

Sample: {"d": device, "t": tag, "role": tag role, "ts": ISO UTC, "v": value, "q": "good"}

Tags are named after what they carry (`state`, `parts_completed`, `energy_kwh`, ...).
Values are what the device shows: Modbus counters as their registers encode them
(truncated to resolution, wrapped at the register width), states as canonical names.
Machines with interface `none` deliver nothing, as in reality.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

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
}
_UINT32 = 2**32


def _sample(device: str, tag: str, t: float, value: Any) -> dict[str, Any]:
    return {"d": device, "t": tag, "role": ROLES[tag], "ts": iso(t), "v": value, "q": "good"}


class HistorySampler:
    """Reads the plant the way the demo gateway polls it, at a fixed interval."""

    def __init__(self, scenario: Scenario, plant: Plant) -> None:
        self.scenario = scenario
        self.plant = plant
        eq = scenario.equipment_by_id()
        self.opcua_machines = [e.id for e in scenario.equipment if e.interface is Interface.OPCUA]
        self.modbus_units = [u for s in scenario.modbus_servers for u in s.units]
        self.plc_state_codes = {
            u.device: {code: state for state, code in r.codes.items()}
            for u in self.modbus_units
            for r in u.registers
            if r.source == "state" and u.device in eq
        }
        self.meter_ids = {m.id for m in scenario.meters}

    def state_changes(self, truth: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """A state sample at the start of every span a networked machine closed."""
        for r in truth:
            if r["type"] == "state" and self._networked(r["device"]):
                yield _sample(r["device"], "state", parse_iso(r["start"]), r["state"])

    def _networked(self, device: str) -> bool:
        return device in self.opcua_machines or device in self.plc_state_codes

    def poll(self, t: float) -> Iterator[dict[str, Any]]:
        """Counters, power and programs as read at t (the plant must be at t)."""
        for mid in self.opcua_machines:
            v = self.plant.machine(mid)
            yield _sample(mid, "parts_completed", t, v.parts_completed % _UINT32)
            yield _sample(mid, "parts_good", t, v.parts_good % _UINT32)
            yield _sample(mid, "program", t, v.program)
            yield _sample(mid, "spindle_rpm", t, v.spindle_rpm)
            yield _sample(mid, "feed_override_pct", t, v.feed_override_pct)
        for unit in self.modbus_units:
            is_meter = unit.device in self.meter_ids
            machine = None if is_meter else self.plant.machine(unit.device)
            meter = self.plant.meter(unit.device) if is_meter else None
            for r in unit.registers:
                if r.source in ("state", "running", "alarm"):
                    continue  # states come from the span records, exactly
                # what a gateway decodes: truncated to resolution, wrapped at the width
                shown = float(decode(r, encode(r, register_value(r, machine, meter)))) * r.scale
                value: float | int = round(shown) if r.source.startswith("parts") else shown
                yield _sample(unit.device, r.source, t, value)


def _open(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8")
    return open(path, "w", encoding="utf-8")


def write_history(
    scenario: Scenario,
    *,
    start: float,
    end: float,
    out: Path,
    truth: Path | None,
    interval_s: float = 60.0,
) -> dict[str, int]:
    """Simulate [start, end) and write samples (and truth); returns counts."""
    if end <= start:
        raise ValueError("the history period is empty: end must be after start")
    if interval_s <= 0:
        raise ValueError("interval_s must be greater than 0")
    plant = Plant(scenario, start)
    sampler = HistorySampler(scenario, plant)
    writer = TruthWriter(truth) if truth else None
    samples = 0
    try:
        with _open(out) as f:
            t = start
            while True:
                plant.advance_to(t)
                records = plant.drain_truth() if t < end else plant.finish()
                # finish() closes the open spans as truncated records, so they come out too
                batch = [*sampler.state_changes(records), *sampler.poll(t)]
                batch.sort(key=lambda s: (s["ts"], s["d"], s["t"]))
                for s in batch:
                    f.write(json.dumps(s, separators=(",", ":"), ensure_ascii=False) + "\n")
                samples += len(batch)
                if writer:
                    writer.write(records)
                if t >= end:
                    break
                t = min(end, t + interval_s)
    finally:
        if writer:
            writer.close()
    logger.info("history %s .. %s: %d samples to %s", iso(start), iso(end), samples, out)
    return {"samples": samples, "truth_records": writer.count if writer else 0}
