"""The plant as the registry declares it, read for a KPI computation: an enterprise's
equipment and meters with the devices they read, and the gateways' names (the one home
of these reads; `registry import` writes them, repo/registry.py).

kpi/plant.py builds the typed records of a report's inputs from these rows and from the
enterprise with its sites (repo/enterprises.py).
"""

from __future__ import annotations

from typing import Any

import psycopg


def equipment_rows(conn: psycopg.Connection, *, enterprise: str) -> list[tuple[Any, ...]]:
    """(id, name, name_en, site, process, process name, process name_en, key process,
    nc, production, interface, ideal cycle time s, gateway gid, device) of the
    enterprise's equipment, by id; gid and device None when it reads no device."""
    return conn.execute(
        """
        SELECT e.id, e.name, e.name_en, e.site_id, e.process_id, p.name, p.name_en,
               coalesce(p.key_process, false), e.nc, e.production, e.interface,
               e.ideal_cycle_time_s, g.gid, e.device
        FROM equipment e
        LEFT JOIN processes p ON p.enterprise_id = e.enterprise_id AND p.id = e.process_id
        LEFT JOIN gateways g ON g.enterprise_id = e.enterprise_id
             AND g.site_id = e.site_id AND g.id = e.gateway_id
        WHERE e.enterprise_id = %s ORDER BY e.id
        """,
        (enterprise,),
    ).fetchall()


def meter_rows(conn: psycopg.Connection, *, enterprise: str) -> list[tuple[Any, ...]]:
    """(id, name, name_en, site, carrier, unit, parent, gateway gid, device, role) of the
    enterprise's meters, by id; gid and device None when it reads no device; role
    `consumption` or `generation` (on-site generation, migration 0013)."""
    return conn.execute(
        """
        SELECT m.id, m.name, m.name_en, m.site_id, m.carrier, m.unit, m.parent_id,
               g.gid, m.device, m.role
        FROM meters m
        LEFT JOIN gateways g ON g.enterprise_id = m.enterprise_id
             AND g.site_id = m.site_id AND g.id = m.gateway_id
        WHERE m.enterprise_id = %s ORDER BY m.id
        """,
        (enterprise,),
    ).fetchall()


def gateway_names(conn: psycopg.Connection) -> dict[int, str]:
    """Every gateway's name (its id in its site) by its number (gid)."""
    return dict(conn.execute("SELECT gid, id FROM gateways").fetchall())
