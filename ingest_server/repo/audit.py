"""The equipment audit trail as a report reads it (the one home of this read; repo/equipment.py
writes the trail as attributes are edited, repo/bundle.py reads it for a bundle).

kpi/plant.py reads the trail with the plant, and the report signs how many edits it held
and their SHA-256 (`registry_audit`, docs/evidence.md), so that an edit removed from a
bundle's trail shows (evidence/offline_kpi.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
from psycopg.rows import dict_row


def equipment_trail(
    conn: psycopg.Connection, *, enterprise: str
) -> tuple[dt.datetime, list[dict[str, Any]]]:
    """(the transaction's time, every edit of the enterprise's declared attributes the
    transaction sees: id, at, equipment_id, account, field, old, new, note; oldest first)."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, at, equipment_id, account, field, old, new, note FROM equipment_audit "
            "WHERE enterprise_id = %s ORDER BY at, id",
            (enterprise,),
        ).fetchall()
    return row[0], rows
