"""Equipment as the API shows and edits it: its declared attributes beside its live state,
one machine's record, the audited edit of the attributes an enterprise may correct, and
the audit trail (the one home of this SQL; `registry import` writes the attributes,
repo/registry.py).

A later `registry import` of a file that says otherwise sets the attributes back, and the
audit trail shows the edit it undid.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ingest_server.errors import InvalidInputError, NotFoundError

# the attributes an edit may change, and their columns
EDITABLE = {
    "name": "name",
    "name_en": "name_en",
    "process": "process_id",
    "nc": "nc",
    "production": "production",
    "ideal_cycle_time_s": "ideal_cycle_time_s",
    "product": "product",
}

_RECORD = (
    "enterprise_id, id, site_id, name, name_en, process_id, nc, production, interface, "
    "ideal_cycle_time_s, product, vendor, model, serial, year, gateway_id, device"
)


class UnknownEquipmentError(NotFoundError):
    """The enterprise has no such equipment."""


class UnknownProcessError(InvalidInputError):
    """An edit names a process its enterprise does not have."""


def list_equipment(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """The enterprise's equipment, by id: declared attributes beside the live state (the
    latest state interval of its device, since when, and whether its gateway is online)."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT e.id, e.name, e.name_en, e.site_id AS site, e.process_id AS process,
                   coalesce(p.key_process, false) AS key_process, e.nc, e.production,
                   e.interface, e.ideal_cycle_time_s, e.product, e.vendor, e.model,
                   e.serial, e.year, e.gateway_id AS gateway, e.device,
                   g.online AS gateway_online, live.state, live.start AS state_since
            FROM equipment e
            LEFT JOIN processes p ON p.enterprise_id = e.enterprise_id
                 AND p.id = e.process_id
            LEFT JOIN gateways g ON g.enterprise_id = e.enterprise_id
                 AND g.site_id = e.site_id AND g.id = e.gateway_id
            LEFT JOIN LATERAL (
                SELECT si.state, si.start FROM state_intervals si
                WHERE si.gid = g.gid AND si.device = e.device
                ORDER BY si.start DESC LIMIT 1
            ) live ON true
            WHERE e.enterprise_id = %s ORDER BY e.id
            """,
            (enterprise,),
        ).fetchall()


def equipment_record(
    conn: psycopg.Connection, *, enterprise: str, equipment: str
) -> dict[str, Any]:
    """One machine's row, keyed by column; UnknownEquipmentError if there is none."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            f"SELECT {_RECORD} FROM equipment WHERE enterprise_id = %s AND id = %s",
            (enterprise, equipment),
        ).fetchone()
    if row is None:
        raise UnknownEquipmentError(f"enterprise {enterprise!r} has no equipment {equipment!r}")
    return row


def edit_equipment(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    changes: dict[str, Any],
    account: str,
    note: str,
) -> dict[str, Any]:
    """Set declared attributes (`changes`: attribute of EDITABLE -> value) in one
    transaction, with an audit row (who, old, new, why) per attribute whose value changes;
    the row after. UnknownEquipmentError, or UnknownProcessError for a process the
    enterprise does not have: nothing is changed."""
    with conn.transaction():
        before = equipment_record(conn, enterprise=enterprise, equipment=equipment)
        if (
            "process" in changes
            and conn.execute(
                "SELECT 1 FROM processes WHERE enterprise_id = %s AND id = %s",
                (enterprise, changes["process"]),
            ).fetchone()
            is None
        ):
            raise UnknownProcessError(f"no process {changes['process']!r}")
        for field, value in changes.items():
            column = EDITABLE[field]
            old = before[column]
            if old == value:
                continue
            conn.execute(
                sql.SQL("UPDATE equipment SET {} = %s WHERE enterprise_id = %s AND id = %s").format(
                    sql.Identifier(column)
                ),
                (value, enterprise, equipment),
            )
            conn.execute(
                "INSERT INTO equipment_audit (enterprise_id, equipment_id, account, field, "
                "old, new, note) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (enterprise, equipment, account, field, json.dumps(old), json.dumps(value),
                 note),
            )  # fmt: skip
        return equipment_record(conn, enterprise=enterprise, equipment=equipment)


def audit_trail(
    conn: psycopg.Connection, *, enterprise: str, equipment: str
) -> list[dict[str, Any]]:
    """Who changed which attribute of a machine, from what to what, when and why; oldest
    first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT at, account, field, old, new, note FROM equipment_audit "
            "WHERE enterprise_id = %s AND equipment_id = %s ORDER BY at, id",
            (enterprise, equipment),
        ).fetchall()
