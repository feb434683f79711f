"""The registry: enterprises, sites, shift calendars, processes, gateways, equipment, meters.

    ingest-server registry import registry.yaml [--key GATEWAY=KEYFILE ...]

One YAML file per enterprise (or several enterprises in one file), validated before
anything is written, with errors that name the file, the path and the fix. Import is an
upsert: running it again with a changed file updates what changed and keeps the data;
equipment and meters no longer in the file are removed from the registry (their samples
stay). A gateway's HMAC key comes from `key_file` (relative to the registry file, mode
0600) or from `--key`; a gateway without one is registered and its messages are
dead-lettered until a key is given.

Equipment carries the declared attributes the KPIs need: process (工序), NC flag (数控),
whether it is production equipment (counted in the networking rate), ideal cycle time,
product, and where its data comes from (gateway and device id in the agent's config).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Literal

import psycopg
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from edge_agent.contract.secrets import read_secret
from edge_agent.contract.yaml12 import (
    InvalidFileError,
    YamlFileError,
    read_yaml_file,
    validation_problems,
)
from ingest_server.errors import InvalidInputError
from ingest_server.reference.factors import DEFAULT_EMISSION, grid_regions

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
DOCS = "docs/ingest.md#registry"

# the tag role a meter of each carrier is read by on its device (carriers not listed have
# no measured role)
CARRIER_ROLES = {
    "electricity": "energy_kwh",
    "water": "water_m3",
    "gas": "gas_m3",
    "steam": "steam_t",
    "air": "air_m3",
}


class RegistryError(InvalidFileError, InvalidInputError):
    kind = "registry"


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


def load_registry(path: Path) -> Registry:
    """Read and validate a registry file; RegistryError names every problem."""
    try:
        doc = read_yaml_file(path)
    except YamlFileError as exc:
        raise RegistryError(str(path), [exc.problem]) from None
    try:
        return Registry.model_validate(doc)
    except ValidationError as exc:
        raise RegistryError(str(path), validation_problems(exc, docs=DOCS)) from None


def gateway_keys(registry: Registry, base: Path, overrides: dict[str, Path]) -> dict[str, bytes]:
    """gateway id -> key, from --key overrides or key_file (relative to the file)."""
    keys: dict[str, bytes] = {}
    for ent in registry.enterprises:
        for site in ent.sites:
            for gw in site.gateways:
                path = overrides.get(gw.id) or (
                    None if gw.key_file is None else (base / gw.key_file)
                )
                if path is not None:
                    keys[gw.id] = read_secret(path, f"HMAC key of gateway {gw.id}")
    unknown = sorted(
        set(overrides) - {g.id for e in registry.enterprises for s in e.sites for g in s.gateways}
    )
    if unknown:
        raise ValueError(f"--key names gateway(s) {unknown} that the registry does not list")
    return keys


def import_registry(
    conn: psycopg.Connection, registry: Registry, keys: dict[str, bytes]
) -> dict[str, int]:
    """Upsert everything in one transaction; returns counts of what the file holds.

    ValueError, before anything is written, if a meter's device has announced (birth)
    more than one tag of the meter's counter role: the KPIs would add them up."""
    counts = {"enterprises": 0, "sites": 0, "gateways": 0, "equipment": 0, "meters": 0}
    with conn.transaction():
        problems = [p for ent in registry.enterprises for p in _ambiguous_meters(conn, ent)]
        if problems:
            raise ValueError("; ".join(problems))
        for ent in registry.enterprises:
            _enterprise(conn, ent, keys, counts)
    return counts


def _ambiguous_meters(conn: psycopg.Connection, ent: EnterpriseDef) -> list[str]:
    announced: dict[tuple[str, str, str, str], list[str]] = {
        (site, gw, device, role): tags
        for site, gw, device, role, tags in conn.execute(
            "SELECT g.site_id, g.id, s.device, s.role, array_agg(s.tag ORDER BY s.tag) "
            "FROM series s JOIN gateways g USING (gid) WHERE g.enterprise_id = %s "
            "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1",
            (ent.id,),
        )
    }
    problems = []
    for site in ent.sites:
        for m in site.meters:
            role = CARRIER_ROLES.get(m.carrier)
            if m.gateway is None or m.device is None or role is None:
                continue
            tags = announced.get((site.id, m.gateway, m.device, role))
            if tags:
                problems.append(
                    f"meter {m.id}: device {m.device} on {m.gateway} has {len(tags)} {role} "
                    f"tags ({', '.join(tags)}) and a meter reads their sum; give each counter "
                    "its own device in the agent's config, or the role generic to the tags "
                    f"that are not {m.id}'s quantity ({DOCS})"
                )
    return problems


def _enterprise(
    conn: psycopg.Connection, ent: EnterpriseDef, keys: dict[str, bytes], counts: dict[str, int]
) -> None:
    conn.execute(
        "INSERT INTO enterprises (id, name, name_en, credit_code, industry) "
        "VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_en = excluded.name_en, "
        "credit_code = excluded.credit_code, industry = excluded.industry",
        (ent.id, ent.name, ent.name_en, ent.credit_code, ent.industry),
    )
    counts["enterprises"] += 1
    for cal in ent.calendars:
        conn.execute(
            "INSERT INTO shift_calendars (enterprise_id, id, definition) VALUES (%s, %s, %s) "
            "ON CONFLICT (enterprise_id, id) DO UPDATE SET definition = excluded.definition",
            (ent.id, cal.id, json.dumps(cal.model_dump(mode="json", exclude={"id"}))),
        )
    for p in ent.processes:
        conn.execute(
            "INSERT INTO processes (enterprise_id, id, name, name_en, key_process) "
            "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (enterprise_id, id) DO UPDATE SET "
            "name = excluded.name, name_en = excluded.name_en, key_process = excluded.key_process",
            (ent.id, p.id, p.name, p.name_en, p.key),
        )
    for site in ent.sites:
        conn.execute(
            "INSERT INTO sites (enterprise_id, id, name, name_en, timezone, calendar_id, "
            "grid_region) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (enterprise_id, id) DO UPDATE SET "
            "name = excluded.name, name_en = excluded.name_en, timezone = excluded.timezone, "
            "calendar_id = excluded.calendar_id, grid_region = excluded.grid_region",
            (
                ent.id,
                site.id,
                site.name,
                site.name_en,
                site.timezone,
                site.calendar,
                site.grid_region,
            ),
        )
        counts["sites"] += 1
        for gw in site.gateways:
            key = keys.get(gw.id)
            conn.execute(
                "INSERT INTO gateways (enterprise_id, site_id, id, hmac_key) "
                "VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (enterprise_id, site_id, id) DO UPDATE SET "
                "hmac_key = coalesce(excluded.hmac_key, gateways.hmac_key)",
                (ent.id, site.id, gw.id, key),
            )
            counts["gateways"] += 1
        conn.execute(
            "DELETE FROM equipment WHERE enterprise_id = %s AND site_id = %s AND NOT id = ANY(%s)",
            (ent.id, site.id, [e.id for e in site.equipment]),
        )
        for e in site.equipment:
            conn.execute(
                """
                INSERT INTO equipment (enterprise_id, id, site_id, name, name_en, process_id, nc,
                    production, interface, ideal_cycle_time_s, product, vendor, model, serial, year,
                    gateway_id, device)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (enterprise_id, id) DO UPDATE SET site_id = excluded.site_id,
                    name = excluded.name, name_en = excluded.name_en,
                    process_id = excluded.process_id, nc = excluded.nc,
                    production = excluded.production, interface = excluded.interface,
                    ideal_cycle_time_s = excluded.ideal_cycle_time_s, product = excluded.product,
                    vendor = excluded.vendor, model = excluded.model, serial = excluded.serial,
                    year = excluded.year, gateway_id = excluded.gateway_id, device = excluded.device
                """,
                (
                    ent.id, e.id, site.id, e.name, e.name_en, e.process, e.nc, e.production,
                    e.interface, e.ideal_cycle_time_s, e.product, e.vendor, e.model, e.serial,
                    e.year, e.gateway, e.device,
                ),
            )  # fmt: skip
            counts["equipment"] += 1
        conn.execute(
            "DELETE FROM meters WHERE enterprise_id = %s AND site_id = %s AND NOT id = ANY(%s)",
            (ent.id, site.id, [m.id for m in site.meters]),
        )
        for m in site.meters:
            conn.execute(
                """
                INSERT INTO meters (enterprise_id, id, site_id, name, name_en, carrier, unit,
                    parent_id, covers, gateway_id, device)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (enterprise_id, id) DO UPDATE SET site_id = excluded.site_id,
                    name = excluded.name, name_en = excluded.name_en, carrier = excluded.carrier,
                    unit = excluded.unit, parent_id = excluded.parent_id, covers = excluded.covers,
                    gateway_id = excluded.gateway_id, device = excluded.device
                """,
                (
                    ent.id, m.id, site.id, m.name, m.name_en, m.carrier, m.unit, m.parent,
                    m.covers, m.gateway, m.device,
                ),
            )  # fmt: skip
            counts["meters"] += 1
