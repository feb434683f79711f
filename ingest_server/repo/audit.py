"""The registry's edit trails as a report reads them (the one home of these reads;
repo/equipment.py writes `equipment_audit` as attributes are edited through the API,
repo/registry.py writes both trails as `registry import` changes the registry,
repo/bundle.py reads them for a bundle).

kpi/plant.py reads the trails with the plant, and the report signs how many rows each held
and their SHA-256 (`registry_audit`, docs/evidence.md), so that a row removed from a
bundle's trail shows (evidence/offline/kpi_trail.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.rows import dict_row

EQUIPMENT_TRAIL = (
    "SELECT id, at, equipment_id, account, field, old, new, note FROM equipment_audit "
    "WHERE enterprise_id = %s ORDER BY at, id"
)
REGISTRY_TRAIL = (
    "SELECT id, at, kind, entity_id, account, field, old, new, note FROM registry_audit "
    "WHERE enterprise_id = %s ORDER BY at, id"
)


def equipment_trail(
    conn: psycopg.Connection, *, enterprise: str
) -> tuple[dt.datetime, list[dict[str, Any]]]:
    """(the transaction's time, every edit of the enterprise's declared equipment attributes
    the transaction sees: id, at, equipment_id, account, field, old, new, note; oldest
    first)."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(EQUIPMENT_TRAIL, (enterprise,)).fetchall()
    return row[0], rows


def registry_trail(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """Every other change of the enterprise's registry the transaction sees (migration
    0010: sites, calendars, processes, meters, the enterprise, and what was inserted or
    removed): id, at, kind, entity_id, account, field, old, new, note; oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(REGISTRY_TRAIL, (enterprise,)).fetchall()
