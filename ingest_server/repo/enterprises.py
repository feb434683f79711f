"""Enterprises as the API shows them: the list, and one with its sites (and their shift
calendars) and processes (the one home of these reads; `registry import` writes them,
repo/registry.py).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

# defined with the registry's pure model (kpi/records.py needs no database driver), and
# re-exported: its importers keep importing it from here
from ingest_server.repo.registry_model import (
    EnterpriseNotFoundError as EnterpriseNotFoundError,  # noqa: PLC0414
)

_ENTERPRISE = "SELECT id, name, name_en, credit_code, industry FROM enterprises"


def list_enterprises(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every enterprise of the registry, by id (the caller filters what it may read)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(f"{_ENTERPRISE} ORDER BY id").fetchall()


def enterprise_exists(conn: psycopg.Connection, *, enterprise: str) -> bool:
    """Whether the registry holds the enterprise."""
    row = conn.execute("SELECT 1 FROM enterprises WHERE id = %s", (enterprise,)).fetchone()
    return row is not None


def get_enterprise(conn: psycopg.Connection, *, enterprise: str) -> dict[str, Any] | None:
    """One enterprise with its `sites` (each with its calendar's definition, or None) and
    `processes`, by id; None if the registry does not hold it."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"{_ENTERPRISE} WHERE id = %s", (enterprise,)).fetchone()
        if row is None:
            return None
        sites = cur.execute(
            "SELECT s.id, s.name, s.name_en, s.timezone, s.grid_region, "
            "c.definition AS calendar FROM sites s LEFT JOIN shift_calendars c "
            "ON c.enterprise_id = s.enterprise_id AND c.id = s.calendar_id "
            "WHERE s.enterprise_id = %s ORDER BY s.id",
            (enterprise,),
        ).fetchall()
        processes = cur.execute(
            "SELECT id, name, name_en, key_process FROM processes WHERE enterprise_id = %s "
            "ORDER BY id",
            (enterprise,),
        ).fetchall()
    return {**row, "sites": sites, "processes": processes}
