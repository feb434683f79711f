"""Scenario files: a factory described in YAML, validated before anything starts.

A scenario names the enterprise and site, the shift calendar, the processes (工序)
with their key-process flag, the equipment, the meters that measure them, and the
OPC UA and Modbus endpoints that expose them. Every simulator module reads the
validated `Scenario`; nothing reads the YAML directly.

    load_scenario(path) -> Scenario        raises ScenarioError listing every problem

Errors name the file, the path inside it (``equipment[3].power_kw.RUNNING``) and
what to do about it, so an integrator can fix a file without reading this code.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.contract.sample import MachineState  # the canonical states are the contract
from edge_agent.contract.yaml12 import (
    InvalidFileError,
    YamlFileError,
    read_yaml_file,
    validation_problems,
)

SCENARIO_VERSION = 1

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class Carrier(enum.StrEnum):
    """Energy and resource carriers a meter can measure, with their counter unit."""

    ELECTRICITY = "electricity"
    WATER = "water"
    GAS = "gas"

    @property
    def unit(self) -> str:
        return {"electricity": "kWh", "water": "m3", "gas": "m3"}[self.value]

    @property
    def rate_unit(self) -> str:
        return {"electricity": "kW", "water": "m3/h", "gas": "m3/h"}[self.value]


class Interface(enum.StrEnum):
    """How the equipment is seen by the gateway."""

    OPCUA = "opcua"  # CNC with an OPC 40501 (umati) server
    MODBUS_PLC = "modbus_plc"  # PLC state and counter registers
    METER_ONLY = "meter_only"  # manual machine: only its power meter tells its state
    NONE = "none"  # registered but not networked


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Localized(_Strict):
    id: Id
    name: str = Field(min_length=1, description="Chinese name, as on the registration form")
    name_en: str = ""


class Enterprise(Localized):
    credit_code: str = Field(
        default="",
        description="统一社会信用代码 (18 characters): how the provincial programme knows a firm",
    )

    @field_validator("credit_code")
    @classmethod
    def _credit_code(cls, v: str) -> str:
        if v and not re.fullmatch(r"[0-9A-HJ-NPQRTUWXY]{18}", v):
            raise ValueError("must be an 18-character unified social credit code, or left out")
        return v


class Site(Localized):
    timezone: str = "Asia/Shanghai"
    grid_region: str = "national"  # the server's grid CO2 factor region (anhui, ...)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {v!r}; use e.g. 'Asia/Shanghai'") from None
        return v


_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _minutes(v: str) -> int:
    m = _HHMM.match(v)
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise ValueError(f"{v!r} is not a time of day; write HH:MM between 00:00 and 24:00")
    return int(m.group(1)) * 60 + int(m.group(2))


class Break(_Strict):
    start: str
    end: str

    @model_validator(mode="after")
    def _order(self) -> Break:
        _minutes(self.start)
        _minutes(self.end)
        return self


class Shift(_Strict):
    name: str = Field(min_length=1)
    start: str = Field(description="local time HH:MM")
    end: str = Field(description="local time HH:MM; an end at or before start runs past midnight")
    breaks: list[Break] = []

    @model_validator(mode="after")
    def _check(self) -> Shift:
        s, e = _minutes(self.start), _minutes(self.end)
        length = (e - s) % (24 * 60) or 24 * 60
        for b in self.breaks:
            bs = (_minutes(b.start) - s) % (24 * 60)
            be = (_minutes(b.end) - s) % (24 * 60) or 24 * 60
            if not (0 < bs < be <= length):
                raise ValueError(
                    f"break {b.start}-{b.end} must lie inside the shift {self.start}-{self.end}"
                )
        return self

    @property
    def start_min(self) -> int:
        return _minutes(self.start)

    @property
    def length_min(self) -> int:
        return (_minutes(self.end) - self.start_min) % (24 * 60) or 24 * 60

    def break_offsets_min(self) -> list[tuple[int, int]]:
        """Breaks as (start, end) minutes after the shift start."""
        out = []
        for b in self.breaks:
            bs = (_minutes(b.start) - self.start_min) % (24 * 60)
            be = (_minutes(b.end) - self.start_min) % (24 * 60) or 24 * 60
            out.append((bs, be))
        return sorted(out)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Calendar(_Strict):
    workdays: list[Weekday] = Field(default=["mon", "tue", "wed", "thu", "fri"], min_length=1)
    holidays: list[dt.date] = []
    extra_workdays: list[dt.date] = Field(
        default=[], description="调休 make-up working days that fall on a weekend"
    )
    shifts: list[Shift] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_overlap(self) -> Calendar:
        spans = sorted((s.start_min, s.start_min + s.length_min, s.name) for s in self.shifts)
        for (_, a_end, a), (b_start, _, b) in itertools.pairwise(spans):
            if b_start < a_end:
                raise ValueError(
                    f"shifts {a!r} and {b!r} overlap; make one end where the next starts"
                )
        if spans and spans[-1][1] > spans[0][0] + 24 * 60:
            raise ValueError(
                f"shift {spans[-1][2]!r} runs into the next day's {spans[0][2]!r}; shorten it"
            )
        return self


class Process(Localized):
    key: bool = Field(description="关键工序: a key process counted in the NC rate")


StatePower = dict[MachineState, Annotated[float, Field(ge=0, le=100_000)]]
StateFlow = dict[MachineState, Annotated[float, Field(ge=0, le=10_000)]]


class Behaviour(_Strict):
    """Parameters of the seeded state schedule inside planned time (minutes)."""

    run_min: tuple[float, float] = (20, 90)
    idle_min: tuple[float, float] = (2, 15)
    setup_min: tuple[float, float] = (10, 30)
    mtbf_h: float = Field(default=8.0, gt=0, description="mean running time between failures")
    mttr_min: float = Field(default=20.0, gt=0, description="mean time to repair a failure")
    setup_at_shift_start: float = Field(default=0.3, ge=0, le=1)
    changeover_per_run: float = Field(default=0.05, ge=0, le=1)
    planned_stop_per_shift: float = Field(default=0.05, ge=0, le=1)
    planned_stop_min: tuple[float, float] = (30, 60)
    outside_shift: Literal["off", "idle"] = "off"

    @field_validator("run_min", "idle_min", "setup_min", "planned_stop_min")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo <= hi):
            raise ValueError("write [low, high] with 0 < low <= high (minutes)")
        return v


class Counters(_Strict):
    """Part counter values at the start of the scenario (real counters never start at 0)."""

    completed: int = Field(default=0, ge=0, lt=2**32)
    good: int = Field(default=0, ge=0, lt=2**32)

    @model_validator(mode="after")
    def _good_le_completed(self) -> Counters:
        if self.good > self.completed:
            raise ValueError("good parts cannot exceed completed parts")
        return self


class Equipment(Localized):
    process: Id
    nc: bool = Field(description="declared NC (数控) equipment")
    interface: Interface
    vendor: str = ""
    model: str = ""
    serial: str = ""
    year: int | None = Field(default=None, ge=1950, le=2100)
    product: str = ""
    cycle_time_s: float = Field(gt=0, description="actual mean cycle time while RUNNING")
    ideal_cycle_time_s: float = Field(gt=0, description="ISO 22400 ideal cycle time")
    scrap_rate: float = Field(default=0.02, ge=0, lt=1)
    power_kw: StatePower
    power_jitter: float = Field(default=0.08, ge=0, lt=1, description="± share per RUNNING span")
    water_m3_per_h: StateFlow = {}
    gas_m3_per_h: StateFlow = {}
    programs: list[str] = Field(default=["O1000"], min_length=1)
    spindle_rpm: float = Field(default=0, ge=0)
    behaviour: Behaviour = Behaviour()
    counters: Counters = Counters()

    @field_validator("power_kw")
    @classmethod
    def _all_states(cls, v: StatePower) -> StatePower:
        missing = [s.value for s in MachineState if s not in v]
        if missing:
            raise ValueError(f"give a power for every state; missing: {', '.join(missing)}")
        return v

    @model_validator(mode="after")
    def _cycle(self) -> Equipment:
        if self.ideal_cycle_time_s > self.cycle_time_s:
            raise ValueError(
                "ideal_cycle_time_s cannot be longer than cycle_time_s (effectiveness > 100%)"
            )
        return self


class Meter(Localized):
    carrier: Carrier
    covers: list[Id] = Field(default=[], description="equipment measured directly")
    submeters: list[Id] = Field(default=[], description="meters downstream of this one")
    base_kw: float = Field(default=0, ge=0, description="electricity: unmetered load in shift")
    base_off_shift_kw: float | None = Field(default=None, ge=0)
    base_m3_per_h: float = Field(default=0, ge=0, description="water/gas: base flow in shift")
    base_off_shift_m3_per_h: float | None = Field(default=None, ge=0)
    initial: float = Field(default=0, ge=0, description="counter reading at scenario start")

    def base_rate(self, in_shift: bool) -> float:
        if self.carrier is Carrier.ELECTRICITY:
            off = self.base_off_shift_kw
            return self.base_kw if in_shift or off is None else off
        off = self.base_off_shift_m3_per_h
        return self.base_m3_per_h if in_shift or off is None else off


SecurityMode = Literal["none", "sign_encrypt"]


class OpcUaServer(_Strict):
    id: Id
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    security: list[SecurityMode] = Field(default=["none"], min_length=1)
    machines: list[Id] = Field(min_length=1)
    max_nodes_per_read: int = Field(default=0, ge=0, description="0 = no limit advertised")
    max_monitored_items_per_call: int = Field(default=0, ge=0)


RegisterTable = Literal["holding", "input", "coil", "discrete"]
RegisterType = Literal["u16", "i16", "u32", "i32", "f32", "f64", "bit"]
WordOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
Source = Literal[
    # equipment sources (modbus_plc units)
    "state",
    "parts_completed",
    "parts_good",
    "running",
    "alarm",
    # meter sources
    "energy_kwh",
    "power_kw",
    "water_m3",
    "gas_m3",
    "flow_m3_per_h",
]
EQUIPMENT_SOURCES = frozenset({"state", "parts_completed", "parts_good", "running", "alarm"})
COUNTER_SOURCES = frozenset({"energy_kwh", "water_m3", "gas_m3", "parts_completed", "parts_good"})
CARRIER_SOURCES: dict[Carrier, frozenset[str]] = {
    Carrier.ELECTRICITY: frozenset({"energy_kwh", "power_kw"}),
    Carrier.WATER: frozenset({"water_m3", "flow_m3_per_h"}),
    Carrier.GAS: frozenset({"gas_m3", "flow_m3_per_h"}),
}
REGISTER_WIDTH = {"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "f64": 4, "bit": 1}


class Register(_Strict):
    table: RegisterTable
    address: int = Field(ge=0, le=65535)
    type: RegisterType
    order: WordOrder = Field(default="ABCD", description="byte/word order of multi-register values")
    scale: float = Field(default=1.0, gt=0, description="engineering value = raw x scale")
    source: Source
    codes: dict[MachineState, int] = Field(default={}, description="state -> register code")

    @property
    def width(self) -> int:
        return REGISTER_WIDTH[self.type]

    @model_validator(mode="after")
    def _layout(self) -> Register:
        bit_table = self.table in ("coil", "discrete")
        if bit_table != (self.type == "bit"):
            raise ValueError(
                f"type {self.type!r} cannot live in the {self.table} table: "
                "coils and discrete inputs hold only type 'bit', registers never do"
            )
        if self.width == 1 and self.order not in ("ABCD", "BADC"):
            raise ValueError(
                f"a one-register {self.type} has no word order; use ABCD (BADC swaps its bytes)"
            )
        if self.type == "bit" and self.source not in ("running", "alarm"):
            raise ValueError(f"a bit can carry 'running' or 'alarm', not {self.source!r}")
        if self.source in ("running", "alarm") and self.type != "bit":
            raise ValueError(f"{self.source!r} is a bit: put it in a coil or discrete input")
        if self.source == "state":
            if self.type not in ("u16", "i16"):
                raise ValueError("a state register is u16 or i16")
            missing = [s.value for s in MachineState if s not in self.codes]
            if missing:
                raise ValueError(f"codes must map every state; missing: {', '.join(missing)}")
            if len(set(self.codes.values())) != len(self.codes):
                raise ValueError("codes must be distinct, or the state cannot be read back")
        elif self.codes:
            raise ValueError("codes belong only to a register whose source is 'state'")
        if self.source in ("parts_completed", "parts_good") and self.type in ("f32", "f64"):
            raise ValueError("part counters are integers: use u16, u32, i32 or i16")
        return self


class ModbusUnit(_Strict):
    unit: int = Field(ge=1, le=247)
    device: Id = Field(description="an equipment id (modbus_plc) or a meter id")
    registers: list[Register] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_overlap(self) -> ModbusUnit:
        taken: dict[tuple[str, int], int] = {}
        for i, r in enumerate(self.registers):
            for a in range(r.address, r.address + r.width):
                if a > 65535:
                    raise ValueError(f"registers[{i}] runs past address 65535")
                if (r.table, a) in taken:
                    raise ValueError(
                        f"registers[{i}] overlaps registers[{taken[(r.table, a)]}] "
                        f"at {r.table} address {a}; move one of them"
                    )
                taken[(r.table, a)] = i
        return self


class ModbusServer(_Strict):
    id: Id
    port: int = Field(default=0, ge=0, le=65535, description="0 picks a free port")
    offline_delay_s: float = Field(
        default=0.2, ge=0, le=10, description="how long an offline unit takes to answer 0x0B"
    )
    units: list[ModbusUnit] = Field(min_length=1)

    @field_validator("units")
    @classmethod
    def _unique_units(cls, v: list[ModbusUnit]) -> list[ModbusUnit]:
        seen = [u.unit for u in v]
        dup = sorted({u for u in seen if seen.count(u) > 1})
        if dup:
            raise ValueError(
                f"unit ids {dup} are used twice on one port; give each device its own unit id"
            )
        return v


class Scenario(_Strict):
    version: Literal[1] = 1
    name: Id
    seed: int = Field(default=1, ge=0)
    enterprise: Enterprise
    site: Site
    calendar: Calendar
    processes: list[Process] = Field(min_length=1)
    equipment: list[Equipment] = Field(min_length=1)
    meters: list[Meter] = []
    opcua_servers: list[OpcUaServer] = []
    modbus_servers: list[ModbusServer] = []

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        errors: list[str] = []
        _unique(errors, "processes", [p.id for p in self.processes])
        _unique(errors, "equipment", [e.id for e in self.equipment])
        _unique(errors, "meters", [m.id for m in self.meters])
        _unique(errors, "opcua_servers", [s.id for s in self.opcua_servers])
        _unique(errors, "modbus_servers", [s.id for s in self.modbus_servers])
        devices = [e.id for e in self.equipment] + [m.id for m in self.meters]
        _unique(errors, "equipment and meters (one id space)", devices)
        processes = {p.id for p in self.processes}
        equipment = {e.id: e for e in self.equipment}
        meters = {m.id: m for m in self.meters}
        for i, e in enumerate(self.equipment):
            if e.process not in processes:
                errors.append(
                    f"equipment[{i}].process: {e.process!r} is not a process id; "
                    f"use one of {sorted(processes)}"
                )
        self._check_meter_refs(errors, equipment, meters)
        if not errors:
            self._check_meter_tree(errors)
        served: dict[str, str] = {}
        self._check_opcua(errors, equipment, served)
        self._check_modbus(errors, equipment, meters, served)
        self._check_exposed(errors, served)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def _check_meter_refs(
        self, errors: list[str], equipment: dict[str, Equipment], meters: dict[str, Meter]
    ) -> None:
        for i, m in enumerate(self.meters):
            errors.extend(
                f"meters[{i}].covers: {e!r} is not an equipment id; use one of {sorted(equipment)}"
                for e in m.covers
                if e not in equipment
            )
            for s in m.submeters:
                if s not in meters:
                    errors.append(f"meters[{i}].submeters: {s!r} is not a meter id")
                elif meters[s].carrier is not m.carrier:
                    errors.append(
                        f"meters[{i}].submeters: {s!r} measures {meters[s].carrier}, "
                        f"not {m.carrier}"
                    )

    def _check_meter_tree(self, errors: list[str]) -> None:
        # Each equipment's consumption must reach a carrier's meters once per tree.
        for carrier in Carrier:
            covered: dict[str, str] = {}
            for m in self.meters:
                if m.carrier is not carrier:
                    continue
                for e in m.covers:
                    if e in covered:
                        errors.append(
                            f"meters: {e!r} is covered by both {covered[e]!r} and {m.id!r}; "
                            "cover it in the lowest meter and list that one under submeters"
                        )
                    covered[e] = m.id
        parent: dict[str, str] = {}
        for m in self.meters:
            for s in m.submeters:
                if s in parent:
                    errors.append(f"meters: {s!r} is a submeter of both {parent[s]!r} and {m.id!r}")
                parent[s] = m.id
        for m in self.meters:
            seen, cur = {m.id}, m.id
            while cur in parent:
                cur = parent[cur]
                if cur in seen:
                    errors.append(
                        f"meters: submeters of {m.id!r} form a cycle; a meter cannot be "
                        "downstream of itself, so remove one link"
                    )
                    break
                seen.add(cur)

    def _check_opcua(
        self, errors: list[str], equipment: dict[str, Equipment], served: dict[str, str]
    ) -> None:
        for i, s in enumerate(self.opcua_servers):
            for mid in s.machines:
                e = equipment.get(mid)
                if e is None:
                    errors.append(
                        f"opcua_servers[{i}].machines: {mid!r} is not an equipment id; "
                        f"use one of {sorted(equipment)}"
                    )
                elif e.interface is not Interface.OPCUA:
                    errors.append(
                        f"opcua_servers[{i}].machines: {mid!r} has interface {e.interface}, "
                        "not opcua; serve it from a modbus_servers unit or change its interface"
                    )
                elif mid in served:
                    errors.append(f"opcua_servers[{i}]: {mid!r} is already served by {served[mid]}")
                else:
                    served[mid] = s.id
        ports = [s.port for s in self.opcua_servers if s.port]
        ports += [s.port for s in self.modbus_servers if s.port]
        dup = sorted({p for p in ports if ports.count(p) > 1})
        if dup:
            errors.append(f"ports {dup} are used by more than one server; give each its own")

    def _check_modbus(
        self,
        errors: list[str],
        equipment: dict[str, Equipment],
        meters: dict[str, Meter],
        served: dict[str, str],
    ) -> None:
        for i, s in enumerate(self.modbus_servers):
            for j, u in enumerate(s.units):
                where = f"modbus_servers[{i}].units[{j}]"
                if u.device in equipment:
                    e = equipment[u.device]
                    if e.interface is not Interface.MODBUS_PLC:
                        errors.append(
                            f"{where}.device: {u.device!r} has interface {e.interface}; only "
                            "modbus_plc equipment has PLC registers (meter it instead)"
                        )
                    allowed: frozenset[str] = EQUIPMENT_SOURCES
                elif u.device in meters:
                    allowed = CARRIER_SOURCES[meters[u.device].carrier]
                else:
                    errors.append(f"{where}.device: {u.device!r} is neither equipment nor a meter")
                    continue
                errors.extend(
                    f"{where}.registers[{k}].source: {r.source!r} does not fit "
                    f"{u.device!r}; use one of {sorted(allowed)}"
                    for k, r in enumerate(u.registers)
                    if r.source not in allowed
                )
                if u.device in served:
                    errors.append(f"{where}: {u.device!r} is served twice")
                served[u.device] = s.id

    def _check_exposed(self, errors: list[str], served: dict[str, str]) -> None:
        for e in self.equipment:
            if e.interface in (Interface.OPCUA, Interface.MODBUS_PLC) and e.id not in served:
                errors.append(
                    f"equipment {e.id!r} has interface {e.interface} but no server exposes it; "
                    "add it to an opcua_servers or modbus_servers entry"
                )
            if e.interface is Interface.METER_ONLY and not any(
                m.covers == [e.id] and m.carrier is Carrier.ELECTRICITY for m in self.meters
            ):
                errors.append(
                    f"equipment {e.id!r} is meter_only: give it an electricity meter that "
                    "covers only it (its power is all that shows its state)"
                )

    # --- lookups used by every simulator module ---------------------------------------

    def equipment_by_id(self) -> dict[str, Equipment]:
        return {e.id: e for e in self.equipment}

    def meters_by_id(self) -> dict[str, Meter]:
        return {m.id: m for m in self.meters}

    def process_by_id(self) -> dict[str, Process]:
        return {p.id: p for p in self.processes}

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site.timezone)


def _unique(errors: list[str], what: str, ids: list[str]) -> None:
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        errors.append(f"{what}: ids {dup} are used more than once; ids must be unique")


class ScenarioError(InvalidFileError):
    """A scenario file that cannot be used; `problems` lists each as 'path: message'."""

    kind = "scenario"


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML/JSON data."""
    if not isinstance(data, dict):
        raise ScenarioError(source, ["the file must hold a mapping (key: value) at the top level"])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(source, validation_problems(exc, docs="docs/simulators.md")) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    p = Path(path)
    try:
        data = read_yaml_file(p)
    except YamlFileError as exc:
        raise ScenarioError(str(p), [exc.problem]) from None
    return parse_scenario(data, str(p))


def default_scenario_path() -> Path:
    return Path(__file__).with_name("scenarios") / "demo.yaml"
