"""The registry's declared model: enterprises, sites, shift calendars, processes, gateways,
equipment and meters (with their calibration certificates), the enterprise's declaration
(承诺), its own targets and its catalogue of downtime reasons, as pydantic models
(validated, frozen), the carrier roles meters are read by, and the error of asking for an
enterprise the registry does not hold.

Pure: no SQL, no database driver, no YAML. The KPI engine reads calendars and carrier
roles from here, and so does the offline verifier (evidence/offline/) on a laptop that
installs only the `verify` extra. repo/registry.py reads the registry file into these
models and writes them to the database; repo/enterprises.py reads enterprises back.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from ingest_server.errors import NotFoundError
from ingest_server.reference.factors import DEFAULT_EMISSION, grid_regions
from ingest_server.reference.targets import TargetDef


class EnterpriseNotFoundError(NotFoundError):
    """Asked about an enterprise the registry does not hold (API 404, CLI exit 2)."""


Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]

# the tag role a meter of each carrier is read by on its device (carriers not listed have
# no measured role)
CARRIER_ROLES = {
    "electricity": "energy_kwh",
    "water": "water_m3",
    "gas": "gas_m3",
    "steam": "steam_t",
    "air": "air_m3",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def hhmm(text: str) -> int:
    """Minutes after local midnight of an HH:MM time; '24:00' is 1440."""
    hours, _, minutes = text.partition(":")
    if not (hours.isdigit() and minutes.isdigit() and len(hours) == len(minutes) == 2):
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, 00:00 to 24:00")
    value = int(hours) * 60 + int(minutes)
    if value > 24 * 60 or int(minutes) >= 60:
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, 00:00 to 24:00")
    return value


def _time_of_day(text: str) -> str:
    hhmm(text)
    return text


TimeOfDay = Annotated[str, AfterValidator(_time_of_day)]


class ShiftBreak(_Strict):
    start: TimeOfDay
    end: TimeOfDay


class Shift(_Strict):
    name: str
    start: TimeOfDay = Field(description="local time HH:MM")
    end: TimeOfDay = Field(description="an end at or before start: the next day")
    breaks: list[ShiftBreak] = []


class CalendarDef(_Strict):
    id: Id = "default"
    workdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(min_length=1)
    holidays: list[dt.date] = []
    extra_workdays: list[dt.date] = []
    shifts: list[Shift] = Field(min_length=1)


class ProcessDef(_Strict):
    id: Id
    name: str
    name_en: str = ""
    key: bool = Field(description="关键工序: a key process counted in the NC rate")


class GatewayDef(_Strict):
    id: Id
    key_file: Path | None = None


class EquipmentDef(_Strict):
    id: Id
    name: str
    name_en: str = ""
    process: Id
    nc: bool = Field(description="declared NC (数控), or PLC/DCS-controlled in process industry")
    production: bool = True
    interface: str | None = None
    ideal_cycle_time_s: float | None = Field(default=None, gt=0)
    product: str | None = None
    vendor: str | None = None
    model: str | None = None
    serial: str | None = None
    year: int | None = None
    gateway: Id | None = Field(default=None, description="the gateway that reads it, if any")
    device: str | None = Field(default=None, description="its device id in that gateway's config")

    @model_validator(mode="after")
    def _source(self) -> EquipmentDef:
        if self.device is not None and self.gateway is None:
            raise ValueError("a device needs its gateway: add gateway: <gateway id>")
        return self


class CalibrationDef(_Strict):
    """A meter's current verification or calibration certificate (检定/校准证书): the
    meter register of a report states it, and warns when it is missing or out of date
    (GB 17167: docs/kpi.md#meter-register)."""

    certificate: str = Field(min_length=1, description="the certificate's number")
    issued_by: str = Field(min_length=1, description="the body that issued it (检定机构)")
    calibrated_on: dt.date
    valid_until: dt.date = Field(description="the last day it is valid (有效期至)")

    @model_validator(mode="after")
    def _dates(self) -> CalibrationDef:
        if self.valid_until < self.calibrated_on:
            raise ValueError(
                f"valid_until {self.valid_until} is before calibrated_on {self.calibrated_on}: "
                "give the certificate's dates as printed on it"
            )
        return self


class MeterDef(_Strict):
    id: Id
    name: str = ""
    name_en: str = ""
    carrier: Literal["electricity", "water", "gas", "steam", "heat", "air", "diesel"]
    unit: str
    parent: Id | None = Field(default=None, description="the meter this one is a submeter of")
    covers: list[Id] = []
    gateway: Id | None = None
    device: str | None = None
    serial: str | None = Field(default=None, description="the serial number on its nameplate")
    model: str | None = None
    accuracy_class: str | None = Field(
        default=None, description="准确度等级 as on its nameplate, e.g. 1, 0.5S, 2"
    )
    calibration: CalibrationDef | None = None
    role: Literal["consumption", "generation"] = Field(
        default="consumption",
        description="generation: on-site generation (e.g. rooftop PV), kept out of "
        "consumption, tce and CO2; the renewable share reads it",
    )

    @model_validator(mode="after")
    def _generation_is_electricity(self) -> MeterDef:
        if self.role == "generation" and self.carrier != "electricity":
            raise ValueError(
                f"meter {self.id}: role generation is for on-site electricity (PV), not "
                f"{self.carrier}; set carrier: electricity or remove role"
            )
        return self


class SiteDef(_Strict):
    id: Id
    name: str
    name_en: str = ""
    timezone: str = "Asia/Shanghai"
    grid_region: Id = Field(
        default="national",
        description="picks the grid CO2 factor: a region of the emission factor table",
    )
    calendar: Id | None = None
    gateways: list[GatewayDef] = []
    equipment: list[EquipmentDef] = []
    meters: list[MeterDef] = []

    @field_validator("grid_region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        known = grid_regions()
        if region not in known:
            raise ValueError(
                f"grid_region {region!r} is not a grid region of emission factor table "
                f"{DEFAULT_EMISSION}; use one of: {', '.join(known)} "
                "(docs/ingest.md#grid-regions-and-the-emission-factor)"
            )
        return region

    @model_validator(mode="after")
    def _one_meter_per_counter(self) -> SiteDef:
        # a meter reads the sum of its device's tags of its carrier's role (kpi/fetch.py):
        # two meters on one device and carrier would count the same quantity twice
        seen: dict[tuple[str | None, str, str], str] = {}
        problems = []
        for m in self.meters:
            role = CARRIER_ROLES.get(m.carrier)
            if m.device is None or role is None:
                continue
            first = seen.setdefault((m.gateway, m.device, role), m.id)
            if first != m.id:
                problems.append(
                    f"meters {first} and {m.id} both read the {role} counter of device "
                    f"{m.device} on {m.gateway}: a device's {role} tags add up to one "
                    "counter; give each meter the device that measures only it"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class DeclarationDef(_Strict):
    """The enterprise's declaration (承诺) a report ends with; `text` left empty: the
    report's default text (evidence/declared.py DECLARATION_TEXT)."""

    text: str = ""
    text_en: str = ""
    signatory: str = Field(min_length=1, description="who signs for the enterprise")
    position: str = Field(min_length=1, description="the signatory's position (职务)")

    @model_validator(mode="after")
    def _both_languages(self) -> DeclarationDef:
        if bool(self.text.strip()) != bool(self.text_en.strip()):
            raise ValueError(
                "give the declaration's text in both languages (text and text_en), or "
                "neither for the default text"
            )
        return self


class DowntimeReasonDef(_Strict):
    """A reason (停机原因) of the enterprise's catalogue that operators attach to a machine's
    DOWN or IDLE intervals (repo/downtime.py; docs/ingest.md#downtime-reasons)."""

    id: Id
    name: str = Field(min_length=1)
    name_en: str = Field(min_length=1)
    category: Id = Field(
        description="ISO 22400-2's planned or unplanned, or a grouping of the enterprise's "
        "own (material, quality, ...): the loss Pareto can group by it"
    )
    applies_to: Literal["DOWN", "IDLE", "both"] = "both"
    active: bool = Field(default=True, description="false: no longer offered to operators")


class EnterpriseDef(_Strict):
    id: Id
    name: str
    name_en: str = ""
    credit_code: str | None = None
    industry: Literal["discrete", "process"] = Field(
        default="discrete", description="离散型 or 流程型: which NC-rate variant applies"
    )
    calendars: list[CalendarDef] = []
    processes: list[ProcessDef] = []
    sites: list[SiteDef] = Field(min_length=1)
    declaration: DeclarationDef | None = None
    targets: list[TargetDef] = Field(
        default=[],
        description="thresholds of the enterprise's chosen programme or grade, with their "
        "source; the KPI ids and units are checked at import (cli/database.py)",
    )
    downtime_reasons: list[DowntimeReasonDef] = Field(
        default=[], description="the catalogue operators attach to DOWN and IDLE intervals"
    )

    @field_validator("downtime_reasons")
    @classmethod
    def _unique_reasons(cls, reasons: list[DowntimeReasonDef]) -> list[DowntimeReasonDef]:
        ids = [r.id for r in reasons]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"downtime reason id(s) {twice} given twice: give each once")
        return reasons

    @model_validator(mode="after")
    def _references(self) -> EnterpriseDef:
        problems: list[str] = []
        calendars = {c.id for c in self.calendars}
        processes = {p.id for p in self.processes}
        for s in self.sites:
            if s.calendar is not None and s.calendar not in calendars:
                problems.append(
                    f"site {s.id}: calendar {s.calendar!r} is not among calendars "
                    f"{sorted(calendars)}"
                )
            gateways = {g.id for g in s.gateways}
            equipment = {e.id for e in s.equipment}
            meters = {m.id for m in s.meters}
            for e in s.equipment:
                if e.process not in processes:
                    problems.append(
                        f"equipment {e.id}: process {e.process!r} is not among processes "
                        f"{sorted(processes)}"
                    )
                if e.gateway is not None and e.gateway not in gateways:
                    problems.append(
                        f"equipment {e.id}: gateway {e.gateway!r} is not in site {s.id}"
                    )
            for m in s.meters:
                if m.gateway is not None and m.gateway not in gateways:
                    problems.append(f"meter {m.id}: gateway {m.gateway!r} is not in site {s.id}")
                if m.parent is not None and m.parent not in meters:
                    problems.append(
                        f"meter {m.id}: parent {m.parent!r} is not a meter of site {s.id}"
                    )
                unknown = sorted(set(m.covers) - equipment)
                if unknown:
                    problems.append(f"meter {m.id}: covers unknown equipment {unknown}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Registry(_Strict):
    version: Literal[1] = 1
    enterprises: list[EnterpriseDef] = Field(min_length=1)
