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
Meters carry their nameplate (serial, model, accuracy class) and calibration certificate,
the enterprise its declaration (承诺) and its own targets: declarations a report states
(repo/declarations.py reads them back), not inputs of its figures.
The enterprise's catalogue of downtime reasons (`downtime_reasons`) is what operators
attach to DOWN and IDLE intervals (repo/downtime.py): a reason removed from the file is
deleted, or kept inactive while intervals carry it. It moves no figure and is not on the
trail below; attaching a reason has a trail of its own (`downtime_audit`).

Every change an import makes to a registry that exists is on the trail, with who (`account`,
`registry import --account`) and why (`note`), at the import's transaction time: an
equipment attribute as a row of `equipment_audit` (the shape an edit through the API
writes, repo/equipment.py), anything else (a site's time zone, grid region or calendar, a
calendar, a process's key_process, a meter, the enterprise's attributes, and any of these
or an equipment inserted or removed: field `*`) as a row of `registry_audit` (migration
0010). The registry is read before and after the upsert and the two compared, so the trail
says what changed whatever the upsert did. An import that changes nothing writes nothing;
the import that creates an enterprise writes no row (there was no registry to change).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from edge_agent.contract.secrets import read_secret
from edge_agent.contract.yaml12 import (
    InvalidFileError,
    YamlFileError,
    read_yaml_file,
    validation_problems,
)
from ingest_server.errors import InvalidInputError

# The declared model lives in repo/registry_model.py (pure: the KPI engine and the offline
# verifier read it without a database driver); these names stay importable from here.
from ingest_server.repo.registry_model import (
    CARRIER_ROLES,
    CalendarDef,
    EnterpriseDef,
    EquipmentDef,
    GatewayDef,
    MeterDef,
    ProcessDef,
    Registry,
    Shift,
    ShiftBreak,
    SiteDef,
    hhmm,
)

__all__ = [
    "CARRIER_ROLES", "DOCS", "CalendarDef", "EnterpriseDef", "EquipmentDef", "GatewayDef",
    "MeterDef", "ProcessDef", "Registry", "RegistryError", "Shift", "ShiftBreak", "SiteDef",
    "gateway_keys", "hhmm", "import_registry", "import_with_trail", "load_registry",
]  # fmt: skip

DOCS = "docs/ingest.md#registry"


class RegistryError(InvalidFileError, InvalidInputError):
    kind = "registry"


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
    conn: psycopg.Connection,
    registry: Registry,
    keys: dict[str, bytes],
    *,
    account: str = "registry-import",
    note: str = "",
) -> dict[str, int]:
    """Upsert everything in one transaction; returns counts of what the file holds.
    Each change to a registry that exists is written to the trail as `account` with
    `note` (module docstring; `import_with_trail` also returns how many rows).

    ValueError, before anything is written, if a meter's device has announced (birth)
    more than one tag of the meter's counter role: the KPIs would add them up."""
    counts, _ = import_with_trail(conn, registry, keys, account=account, note=note)
    return counts


def import_with_trail(
    conn: psycopg.Connection,
    registry: Registry,
    keys: dict[str, bytes],
    *,
    account: str,
    note: str = "",
) -> tuple[dict[str, int], int]:
    """`import_registry`, and the number of trail rows it wrote (both trails)."""
    counts = {"enterprises": 0, "sites": 0, "gateways": 0, "equipment": 0, "meters": 0}
    written = 0
    with conn.transaction():
        problems = [p for ent in registry.enterprises for p in _ambiguous_meters(conn, ent)]
        if problems:
            raise ValueError("; ".join(problems))
        for ent in registry.enterprises:
            before = _declared(conn, ent.id)
            _enterprise(conn, ent, keys, counts)
            if before["enterprise"]:  # a registry that existed: its changes are the trail
                written += _record(conn, ent.id, before, _declared(conn, ent.id), account, note)
    return counts, written


# What the trail compares, by kind: (table, columns); the first column is the id. The
# columns are registry.json's (repo/bundle.py registry_rows), so that the offline verifier
# rolls registry.json back by a row's `field` as it stands.
_DECLARED: dict[str, tuple[str, tuple[str, ...]]] = {
    "enterprise": ("enterprises", ("id", "name", "name_en", "credit_code", "industry",
                                   "declaration", "targets")),
    "calendar": ("shift_calendars", ("id", "definition")),
    "process": ("processes", ("id", "name", "name_en", "key_process")),
    "site": ("sites", ("id", "name", "name_en", "timezone", "calendar_id", "grid_region")),
    "equipment": ("equipment", (
        "id", "site_id", "name", "name_en", "process_id", "nc", "production", "interface",
        "ideal_cycle_time_s", "product", "vendor", "model", "serial", "year", "gateway_id",
        "device")),
    "meter": ("meters", ("id", "site_id", "name", "name_en", "carrier", "unit", "parent_id",
                         "covers", "gateway_id", "device", "serial", "model",
                         "accuracy_class", "calibration", "role")),
}  # fmt: skip
# an equipment column -> the attribute name an edit through the API gives it (EDITABLE)
_EQUIPMENT_FIELD = {"process_id": "process"}

Declared = dict[str, dict[str, dict[str, Any]]]


def _declared(conn: psycopg.Connection, enterprise: str) -> Declared:
    """kind -> id -> the row's declared columns, of one enterprise as the database holds it."""
    out: Declared = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for kind, (table, columns) in _DECLARED.items():
            key = "id" if kind == "enterprise" else "enterprise_id"
            rows = cur.execute(
                f"SELECT {', '.join(columns)} FROM {table} WHERE {key} = %s",
                (enterprise,),
            ).fetchall()
            out[kind] = {str(r["id"]): {k: v for k, v in r.items() if k != "id"} for r in rows}
    return out


def _record(  # noqa: PLR0917 (one caller)
    conn: psycopg.Connection,
    enterprise: str,
    before: Declared,
    after: Declared,
    account: str,
    note: str,
) -> int:
    """Write the trail of `before` -> `after`; the number of rows written."""
    n = 0
    for kind in _DECLARED:
        old_rows, new_rows = before[kind], after[kind]
        for entity in sorted(old_rows.keys() | new_rows.keys()):
            old, new = old_rows.get(entity), new_rows.get(entity)
            if old is None or new is None:  # inserted or removed: one row, field '*'
                _registry_row(conn, enterprise, kind, entity, "*", old, new, account, note)
                n += 1
                continue
            for column in old:
                if _same(old[column], new[column]):
                    continue
                if kind == "equipment":
                    conn.execute(
                        "INSERT INTO equipment_audit (enterprise_id, equipment_id, account, "
                        "field, old, new, note) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (enterprise, entity, account, _EQUIPMENT_FIELD.get(column, column),
                         _json(old[column]), _json(new[column]), note),
                    )  # fmt: skip
                else:
                    _registry_row(conn, enterprise, kind, entity, column, old[column],
                                  new[column], account, note)  # fmt: skip
                n += 1
    return n


def _registry_row(  # noqa: PLR0917
    conn: psycopg.Connection,
    enterprise: str,
    kind: str,
    entity: str,
    field: str,
    old: Any,
    new: Any,
    account: str,
    note: str,
) -> None:
    conn.execute(
        "INSERT INTO registry_audit (enterprise_id, kind, entity_id, field, old, new, account, "
        "note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (enterprise, kind, entity, field, _json(old), _json(new), account, note),
    )


def _same(a: Any, b: Any) -> bool:
    return _json(a) == _json(b)


def _json(value: Any) -> str:
    """A value as the trail's jsonb (None: JSON null, as repo/equipment.py writes it)."""
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


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
    declaration = (
        None if ent.declaration is None else Jsonb(ent.declaration.model_dump(mode="json"))
    )
    conn.execute(
        "INSERT INTO enterprises (id, name, name_en, credit_code, industry, declaration, "
        "targets) VALUES (%s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET name = excluded.name, name_en = excluded.name_en, "
        "credit_code = excluded.credit_code, industry = excluded.industry, "
        "declaration = excluded.declaration, targets = excluded.targets",
        (ent.id, ent.name, ent.name_en, ent.credit_code, ent.industry, declaration,
         Jsonb([t.model_dump(mode="json") for t in ent.targets])),
    )  # fmt: skip
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
    _downtime_reasons(conn, ent)
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
                    parent_id, covers, gateway_id, device, serial, model, accuracy_class,
                    calibration, role)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
                ON CONFLICT (enterprise_id, id) DO UPDATE SET site_id = excluded.site_id,
                    name = excluded.name, name_en = excluded.name_en, carrier = excluded.carrier,
                    unit = excluded.unit, parent_id = excluded.parent_id, covers = excluded.covers,
                    gateway_id = excluded.gateway_id, device = excluded.device,
                    serial = excluded.serial, model = excluded.model,
                    accuracy_class = excluded.accuracy_class, calibration = excluded.calibration,
                    role = excluded.role
                """,
                (
                    ent.id, m.id, site.id, m.name, m.name_en, m.carrier, m.unit, m.parent,
                    m.covers, m.gateway, m.device, m.serial, m.model, m.accuracy_class,
                    None if m.calibration is None else Jsonb(m.calibration.model_dump(mode="json")),
                    m.role,
                ),
            )  # fmt: skip
            counts["meters"] += 1


def _downtime_reasons(conn: psycopg.Connection, ent: EnterpriseDef) -> None:
    """The catalogue as the file gives it; a reason no longer in the file is deleted, or,
    when intervals carry it, kept inactive so that they keep their reason."""
    ids = [r.id for r in ent.downtime_reasons]
    conn.execute(
        "DELETE FROM downtime_reasons d WHERE enterprise_id = %s AND NOT id = ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM downtime_assignments a "
        "WHERE a.enterprise_id = d.enterprise_id AND a.reason_id = d.id)",
        (ent.id, ids),
    )
    conn.execute(
        "UPDATE downtime_reasons SET active = false WHERE enterprise_id = %s AND NOT id = ANY(%s)",
        (ent.id, ids),
    )
    for r in ent.downtime_reasons:
        conn.execute(
            "INSERT INTO downtime_reasons (enterprise_id, id, name, name_en, category, "
            "applies_to, active) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (enterprise_id, id) DO UPDATE SET name = excluded.name, "
            "name_en = excluded.name_en, category = excluded.category, "
            "applies_to = excluded.applies_to, active = excluded.active",
            (ent.id, r.id, r.name, r.name_en, r.category, r.applies_to, r.active),
        )
