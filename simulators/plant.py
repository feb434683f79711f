"""The plant model: machines, meters and faults over sim time, and the truth they leave.

    Plant(scenario, start) --advance_to(t)--> machine(id) / meter(id) views
                                         \\--> drain_truth(): truth records (simulators.truth)

Every quantity is a closed-form function of the schedule, so the result does not
depend on how time is stepped: a machine's running seconds, parts, energy, water
and gas are the totals of its finished spans plus a linear share of the current
one. `advance_to` walks every boundary in between (span ends, shift edges for base
loads, whole hours, fault ends, part completions that wrap a counter) so the truth
records carry exact times: state spans with their production and consumption,
hourly meter consumption, counter rollovers and faults.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from edge_agent.contract.sample import MachineState
from simulators.calendar import ShiftCalendar
from simulators.scenario import Carrier, Equipment, Meter, Scenario
from simulators.schedule import Span, spans_from
from simulators.truth import iso
from simulators.views import MachineView, MeterView

HOUR_S = 3600.0
_UNSIGNED_BITS = {"u16": 16, "u32": 32}


class PlantError(Exception):
    """A request the plant cannot honour (unknown device, time going backwards)."""


def _good_part(seed: int, equipment_id: str, index: int, scrap_rate: float) -> bool:
    digest = hashlib.blake2b(f"{seed}:{equipment_id}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 >= scrap_rate


@dataclass
class _Totals:
    run_s: float = 0.0
    energy_kwh: float = 0.0
    water_m3: float = 0.0
    gas_m3: float = 0.0


class _Machine:
    def __init__(self, eq: Equipment, cal: ShiftCalendar, seed: int, start: float) -> None:
        self.eq = eq
        self.seed = seed
        self._spans: Iterator[Span] = spans_from(eq, cal, seed, start)
        self.span = next(self._spans)
        self.closed = _Totals()  # totals at the start of the current span
        self.parts_done = 0
        self.parts_good = 0
        self.span_parts = 0
        self.span_good = 0
        self.seconds: dict[MachineState, float] = dict.fromkeys(MachineState, 0.0)

    def rates(self) -> tuple[float, float, float]:
        """kW, water m3/h, gas m3/h in the current span."""
        st = self.span.state
        return (
            self.span.power_kw,
            self.eq.water_m3_per_h.get(st, 0.0),
            self.eq.gas_m3_per_h.get(st, 0.0),
        )

    def totals_at(self, t: float) -> _Totals:
        dt_s = t - self.span.start
        kw, water, gas = self.rates()
        running = self.span.state is MachineState.RUNNING
        return _Totals(
            run_s=self.closed.run_s + (dt_s if running else 0.0),
            energy_kwh=self.closed.energy_kwh + kw * dt_s / HOUR_S,
            water_m3=self.closed.water_m3 + water * dt_s / HOUR_S,
            gas_m3=self.closed.gas_m3 + gas * dt_s / HOUR_S,
        )

    def quantity(self, carrier: Carrier, t: float) -> float:
        tot = self.totals_at(t)
        if carrier is Carrier.ELECTRICITY:
            return tot.energy_kwh
        return tot.water_m3 if carrier is Carrier.WATER else tot.gas_m3

    def parts_due(self, t: float) -> int:
        # A tiny epsilon so a part finishing exactly on a span edge counts in that span.
        return math.floor((self.totals_at(t).run_s + 1e-6) / self.eq.cycle_time_s)

    def completion_time(self, index: int) -> float:
        """When part `index` (0-based, counted from plant start) completes; current span only."""
        need = (index + 1) * self.eq.cycle_time_s - self.closed.run_s
        return self.span.start + need

    def make_parts(self, t: float) -> list[tuple[str, int, float]]:
        """Complete the parts due by t.

        Returns (counter, new counter value, completion time) for every counter that moved.
        """
        out = []
        due = self.parts_due(t)
        while self.parts_done < due:
            index = self.parts_done
            when = self.completion_time(index)
            self.parts_done += 1
            self.span_parts += 1
            out.append(("parts_completed", self.eq.counters.completed + self.parts_done, when))
            if _good_part(self.seed, self.eq.id, index, self.eq.scrap_rate):
                self.parts_good += 1
                self.span_good += 1
                out.append(("parts_good", self.eq.counters.good + self.parts_good, when))
        return out

    def seconds_at(self, t: float) -> dict[str, float]:
        out = {s.value: v for s, v in self.seconds.items()}
        out[self.span.state.value] += t - self.span.start
        return out

    def close_span(self, *, advance: bool = True) -> dict[str, Any]:
        s = self.span
        end_totals = self.totals_at(s.end)
        record = {
            "type": "state",
            "device": self.eq.id,
            "state": s.state.value,
            "start": iso(s.start),
            "end": iso(s.end),
            "seconds": s.seconds,
            "parts_completed": self.span_parts,
            "parts_good": self.span_good,
            "energy_kwh": s.power_kw * s.seconds / HOUR_S,
            "water_m3": end_totals.water_m3 - self.closed.water_m3,
            "gas_m3": end_totals.gas_m3 - self.closed.gas_m3,
            "power_kw": s.power_kw,
            "program": s.program,
        }
        self.seconds[s.state] += s.seconds
        self.closed = end_totals
        self.span_parts = self.span_good = 0
        if advance:
            self.span = next(self._spans)
        return record

    def view(self, t: float, online: bool) -> MachineView:
        s = self.span
        running = s.state is MachineState.RUNNING
        return MachineView(
            equipment_id=self.eq.id,
            state=s.state,
            state_since=s.start,
            parts_completed=self.eq.counters.completed + self.parts_done,
            parts_good=self.eq.counters.good + self.parts_good,
            power_kw=s.power_kw,
            program=s.program,
            spindle_rpm=self.eq.spindle_rpm if running else 0.0,
            feed_override_pct=s.feed_override_pct,
            online=online,
        )


@dataclass
class _MeterState:
    meter: Meter
    base_closed: float = 0.0
    reset_offset: float = 0.0
    frozen_value: float | None = None
    frozen_until: float = 0.0
    hour_mark: float = 0.0  # true consumption at the start of the current hour
    counters: list[tuple[str, float]] = field(default_factory=list)  # (register name, modulus)


@dataclass
class _Fault:
    kind: str
    device: str
    start: float
    end: float


class Plant:
    """The simulated factory over sim time (epoch seconds, UTC)."""

    def __init__(self, scenario: Scenario, start: float, *, seed: int | None = None) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.start = float(start)
        self.now = self.start
        self.cal = ShiftCalendar(scenario.calendar, scenario.tz)
        self._machines = {
            e.id: _Machine(e, self.cal, self.seed, self.start) for e in scenario.equipment
        }
        self._meters = {m.id: _MeterState(m) for m in scenario.meters}
        self._in_shift = self.cal.in_shift(self.start)
        self._base_from = self.start
        self._next_shift_edge = self.cal.next_boundary(self.start)
        self._faults: list[_Fault] = []
        self._part_counters: dict[str, list[tuple[str, str, int]]] = {}
        self._truth: list[dict[str, Any]] = []
        self._rollovers: dict[str, int] = {}
        self._register_counters()
        self._shown_last = {m: self._shown(m, self.start) for m in self._meters}
        self._truth.append(
            {
                "type": "run",
                "version": 1,
                "scenario": scenario.name,
                "seed": self.seed,
                "start": iso(self.start),
                "timezone": scenario.site.timezone,
            }
        )

    def _register_counters(self) -> None:
        """Unsigned counter registers wrap; remember their modulus to record rollovers."""
        for server in self.scenario.modbus_servers:
            for unit in server.units:
                for r in unit.registers:
                    bits = _UNSIGNED_BITS.get(r.type)
                    if bits is None:
                        continue
                    name = f"{server.id}/{unit.unit}/{r.table}:{r.address}"
                    if r.source in ("energy_kwh", "water_m3", "gas_m3"):
                        self._meters[unit.device].counters.append((name, 2**bits * r.scale))
                    elif r.source in ("parts_completed", "parts_good"):
                        self._part_counters.setdefault(unit.device, []).append(
                            (r.source, name, round(2**bits * r.scale))
                        )

    # --- readings -------------------------------------------------------------------

    def _base(self, m: _MeterState, t: float) -> float:
        return m.base_closed + m.meter.base_rate(self._in_shift) * (t - self._base_from) / HOUR_S

    def consumed(self, meter_id: str) -> float:
        """True consumption through this meter from plant start to now (faults do not change it)."""
        self._meter_state(meter_id)
        return self._consumed_at(meter_id, self.now)

    def _consumed_at(self, meter_id: str, t: float) -> float:
        # Only valid for t inside the current step: the current spans are extrapolated.
        m = self._meters[meter_id]
        total = self._base(m, t)
        for e in m.meter.covers:
            total += self._machines[e].quantity(m.meter.carrier, t)
        for s in m.meter.submeters:
            total += self._consumed_at(s, t)
        return total

    def _shown(self, meter_id: str, t: float) -> float:
        m = self._meters[meter_id]
        if m.frozen_value is not None:
            return m.frozen_value
        return m.meter.initial + self._consumed_at(meter_id, t) - m.reset_offset

    def machine(self, equipment_id: str) -> MachineView:
        try:
            mach = self._machines[equipment_id]
        except KeyError:
            raise PlantError(f"no equipment {equipment_id!r} in the scenario") from None
        return mach.view(self.now, self.online(equipment_id))

    def meter(self, meter_id: str) -> MeterView:
        if meter_id not in self._meters:
            raise PlantError(f"no meter {meter_id!r} in the scenario")
        m = self._meters[meter_id]
        rate = m.meter.base_rate(self._in_shift)
        rate += self._covered_rate(m.meter)
        return MeterView(
            meter_id=meter_id,
            carrier=m.meter.carrier,
            reading=self._shown(meter_id, self.now),
            rate=rate,
            online=self.online(meter_id),
        )

    def _covered_rate(self, meter: Meter) -> float:
        idx = {Carrier.ELECTRICITY: 0, Carrier.WATER: 1, Carrier.GAS: 2}[meter.carrier]
        rate = sum(self._machines[e].rates()[idx] for e in meter.covers)
        for s in meter.submeters:
            sub = self._meters[s].meter
            rate += sub.base_rate(self._in_shift) + self._covered_rate(sub)
        return rate

    def online(self, device_id: str) -> bool:
        self._device(device_id)
        return not any(
            f.kind == "offline" and f.device == device_id and f.start <= self.now < f.end
            for f in self._faults
        )

    # --- time -----------------------------------------------------------------------

    def advance_to(self, t: float) -> None:
        """Move sim time forward to t (a t in the past is ignored: time never runs backwards)."""
        while self.now < t:
            nxt = min(
                t,
                (math.floor(self.now / HOUR_S) + 1) * HOUR_S,
                self._next_shift_edge,
                *(m.span.end for m in self._machines.values()),
                min((f.end for f in self._faults if f.end > self.now), default=math.inf),
                min(
                    (m.frozen_until for m in self._meters.values() if m.frozen_value is not None),
                    default=math.inf,
                ),
            )
            self._step(nxt)

    def _step(self, t: float) -> None:
        """Advance to t, where nothing changes rate strictly between now and t."""
        a = self.now
        for mid, mach in self._machines.items():
            for counter, value, when in mach.make_parts(t):
                for source, name, modulus in self._part_counters.get(mid, []):
                    if source == counter and value % modulus == 0:
                        self._rollover(mid, name, when, modulus)
        self._meter_rollovers(a, t)
        self.now = t
        for mach in self._machines.values():
            while mach.span.end <= t:
                self._truth.append(mach.close_span())
        if t >= self._next_shift_edge:
            for m in self._meters.values():
                m.base_closed = self._base(m, t)
            self._base_from = t
            self._in_shift = self.cal.in_shift(t)
            self._next_shift_edge = self.cal.next_boundary(t)
        for m in self._meters.values():
            if m.frozen_value is not None and t >= m.frozen_until:
                m.frozen_value = None
        for f in [f for f in self._faults if f.end <= t]:
            self._faults.remove(f)
            self._truth.append(_fault_record(f))
        if t % HOUR_S == 0:
            self._hour_records(t, partial=False)
        # a jump when a frozen meter resumes is a change at t itself
        self._meter_rollovers(t, t)

    def _meter_rollovers(self, a: float, b: float) -> None:
        for mid, m in self._meters.items():
            new = self._shown(mid, b)
            old = self._shown_last[mid]
            for name, modulus in m.counters:
                for k in range(math.floor(old / modulus) + 1, math.floor(new / modulus) + 1):
                    # the shown reading is linear in [a, b] unless it jumped at a or b
                    frac = (k * modulus - old) / (new - old) if new != old else 0.0
                    self._rollover(mid, name, a + (b - a) * frac, modulus)
            self._shown_last[mid] = new

    def _rollover(self, device: str, name: str, when: float, modulus: float) -> None:
        self._rollovers[device] = self._rollovers.get(device, 0) + 1
        self._truth.append(
            {
                "type": "rollover",
                "device": device,
                "register": name,
                "ts": iso(when),
                "modulus": modulus,
            }
        )

    def _hour_records(self, t: float, *, partial: bool) -> None:
        aligned = (math.ceil(t / HOUR_S) - 1) * HOUR_S
        hour_start = max(self.start, aligned)
        partial = partial or hour_start != aligned
        for mid, m in self._meters.items():
            true_now = self._consumed_at(mid, t)
            self._truth.append(
                {
                    "type": "meter_hour",
                    "device": mid,
                    "carrier": m.meter.carrier.value,
                    "unit": m.meter.carrier.unit,
                    "start": iso(hour_start),
                    "end": iso(t),
                    "consumed": true_now - m.hour_mark,
                    **({"partial": True} if partial else {}),
                }
            )
            m.hour_mark = true_now

    # --- faults ---------------------------------------------------------------------

    def set_offline(self, device_id: str, seconds: float) -> None:
        """Cut a device (machine or meter) from the network for `seconds` of sim time."""
        self._device(device_id)
        self._faults.append(_Fault("offline", device_id, self.now, self.now + seconds))

    def freeze_meter(self, meter_id: str, seconds: float) -> None:
        """The meter's counter stops for `seconds`, then shows the true reading again."""
        m = self._meter_state(meter_id)
        m.frozen_value = self._shown(meter_id, self.now)
        m.frozen_until = self.now + seconds
        self._faults.append(_Fault("freeze", meter_id, self.now, self.now + seconds))

    def reset_meter(self, meter_id: str) -> None:
        """The meter's counter is cleared to zero now; consumption goes on."""
        m = self._meter_state(meter_id)
        before = self._shown(meter_id, self.now)
        if m.frozen_value is not None:
            # a reset ends a freeze: its record must say so
            for f in self._faults:
                if f.kind == "freeze" and f.device == meter_id and f.end > self.now:
                    f.end = self.now
        m.frozen_value = None
        m.reset_offset = m.meter.initial + self.consumed(meter_id)
        self._shown_last[meter_id] = 0.0
        self._truth.append(
            {
                "type": "fault",
                "kind": "counter_reset",
                "device": meter_id,
                "ts": iso(self.now),
                "reading_before": before,
            }
        )

    def record(self, record: dict[str, Any]) -> None:
        """Add a truth record from outside the model (a server restart)."""
        self._truth.append(record)

    def _device(self, device_id: str) -> None:
        if device_id not in self._machines and device_id not in self._meters:
            raise PlantError(
                f"no device {device_id!r}; use an equipment or meter id from the scenario"
            )

    def _meter_state(self, meter_id: str) -> _MeterState:
        if meter_id not in self._meters:
            raise PlantError(f"no meter {meter_id!r}; use a meter id from the scenario")
        return self._meters[meter_id]

    # --- truth ----------------------------------------------------------------------

    def drain_truth(self) -> list[dict[str, Any]]:
        out, self._truth = self._truth, []
        return out

    def finish(self) -> list[dict[str, Any]]:
        """Close the run at `now`: open spans, the partial hour, open faults, a summary."""
        t = self.now
        if t % HOUR_S:
            self._hour_records(t, partial=True)
        summary = self._summary(t)
        for mach in self._machines.values():
            s = mach.span
            if t > s.start:
                mach.span = Span(s.start, t, s.state, s.power_kw, s.program, s.feed_override_pct)
                record = mach.close_span(advance=False)
                record["truncated"] = True
                self._truth.append(record)
        for f in self._faults:
            self._truth.append(_fault_record(_Fault(f.kind, f.device, f.start, t)))
        self._faults.clear()
        self._truth.append(summary)
        return self.drain_truth()

    def _summary(self, t: float) -> dict[str, Any]:
        return {
            "type": "summary",
            "start": iso(self.start),
            "end": iso(t),
            "equipment": {
                mid: {
                    "parts_completed": m.parts_done,
                    "parts_good": m.parts_good,
                    "energy_kwh": m.totals_at(t).energy_kwh,
                    "water_m3": m.totals_at(t).water_m3,
                    "gas_m3": m.totals_at(t).gas_m3,
                    "seconds": m.seconds_at(t),
                }
                for mid, m in self._machines.items()
            },
            "meters": {
                mid: {
                    "carrier": m.meter.carrier.value,
                    "consumed": self._consumed_at(mid, t),
                    "reading": self._shown(mid, t),
                    "rollovers": self._rollovers.get(mid, 0),
                }
                for mid, m in self._meters.items()
            },
        }


def _fault_record(f: _Fault) -> dict[str, Any]:
    return {
        "type": "fault",
        "kind": f.kind,
        "device": f.device,
        "start": iso(f.start),
        "end": iso(f.end),
    }
