"""The declared side of a KPI computation: the period in each site's time zone, and the
plant the registry holds (enterprise, sites and their calendars, equipment, meters,
production entries) as the records of kpi/records.py, with the registry's edit trails as
the registry was read (what the report signs of them, `registry_audit`). What was measured
is fetched on top of these (kpi/fetch.py).
"""

from __future__ import annotations

import datetime as dt

import psycopg

from ingest_server.kpi.columnar import audit_block
from ingest_server.kpi.edges import local_period
from ingest_server.kpi.period import check_period
from ingest_server.kpi.records import (
    DeviceKey,
    Equipment,
    Inputs,
    Meter,
    ProductionEntry,
    Site,
    UnknownEnterpriseError,
)
from ingest_server.repo import audit, enterprises, plant
from ingest_server.repo import production as production_entries
from ingest_server.repo.registry import CalendarDef


def load_registry(
    conn: psycopg.Connection,
    enterprise: str,
    date_from: dt.date,
    date_to: dt.date,
    as_of: dt.datetime,
) -> Inputs:
    """The report's inputs as the registry declares them, without measurements: each
    site with its period (cut at `as_of`), equipment, meters, the production entries the
    period overlaps, and the devices' names."""
    check_period(date_from, date_to)
    row = enterprises.get_enterprise(conn, enterprise=enterprise)
    if row is None:
        known = [e["id"] for e in enterprises.list_enterprises(conn)]
        raise UnknownEnterpriseError(
            f"no enterprise {enterprise!r} in the registry (known: {known}); "
            "import it with `ingest-server registry import`"
        )
    ent = {k: row[k] for k in ("id", "name", "name_en", "credit_code")}
    sites = []
    for s in row["sites"]:
        start, end, _ = local_period(date_from, date_to, s["timezone"], as_of)
        cal = s["calendar"]
        calendar = None if cal is None else CalendarDef.model_validate({"id": "c", **cal})
        name_en = s["name_en"] or ""
        sites.append(
            Site(s["id"], s["name"], name_en, s["timezone"], s["grid_region"], calendar, start, end)
        )
    equipment = [
        Equipment(
            id=r[0],
            name=r[1],
            name_en=r[2] or "",
            site=r[3],
            process=r[4],
            process_name=r[5] or "",
            process_name_en=r[6] or "",
            key_process=bool(r[7]),
            nc=r[8],
            production=r[9],
            interface=r[10],
            ideal_cycle_time_s=r[11],
            device=None if r[12] is None or r[13] is None else (r[12], r[13]),
        )
        for r in plant.equipment_rows(conn, enterprise=enterprise)
    ]
    meters = [
        Meter(
            r[0],
            r[1] or "",
            r[2] or "",
            r[3],
            r[4],
            r[5],
            r[6],
            None if r[7] is None or r[8] is None else (r[7], r[8]),
            r[9],
        )
        for r in plant.meter_rows(conn, enterprise=enterprise)
    ]
    production = [
        ProductionEntry(*r)
        for r in production_entries.entries_overlapping(
            conn, enterprise=enterprise, date_from=date_from, date_to=date_to
        )
    ]
    inputs = Inputs(ent, row["industry"], date_from, date_to, as_of, sites, equipment, meters)
    inputs.production = production
    # the trails of what was just read, signed with the report (`registry_audit`, version
    # 2: the equipment trail and the registry's other trail, kpi/columnar.py audit_block)
    read_at, trail = audit.equipment_trail(conn, enterprise=enterprise)
    others = audit.registry_trail(conn, enterprise=enterprise)
    midnight = dt.datetime.combine(date_from, dt.time(), tzinfo=dt.UTC)
    since = min((s.start for s in sites), default=midnight)
    inputs.registry_audit = audit_block(trail, read_at, since, others)
    gw_names = plant.gateway_names(conn)
    for dev in devices_of(inputs):
        inputs.device_names[dev] = f"{gw_names.get(dev[0], dev[0])}/{dev[1]}"
    return inputs


def devices_of(inputs: Inputs) -> list[DeviceKey]:
    """The devices the equipment and meters read, sorted."""
    devs = {e.device for e in inputs.equipment if e.device} | {
        m.device for m in inputs.meters if m.device
    }
    return sorted(d for d in devs if d is not None)
