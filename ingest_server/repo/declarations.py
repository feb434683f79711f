"""What the enterprise declares beside its figures' inputs, read back (`registry import`
writes it, repo/registry.py): each meter's nameplate and calibration certificate (the
report's meter register), the declaration (承诺) a report ends with, and the targets of
its chosen programme or grade.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest_server.reference.targets import TargetDef
from ingest_server.repo.registry_model import CalibrationDef, DeclarationDef


def meter_register(
    conn: psycopg.Connection, *, enterprise: str, sites: list[str]
) -> list[dict[str, Any]]:
    """The meters of `sites`, by site and id: id, site, name, name_en, carrier, serial,
    model, accuracy_class and `calibration` (a CalibrationDef, or None)."""
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT id, site_id AS site, name, name_en, carrier, serial, model, accuracy_class, "
            "calibration FROM meters WHERE enterprise_id = %s AND site_id = ANY(%s) "
            "ORDER BY site_id, id",
            (enterprise, sites),
        ).fetchall()
    for r in rows:
        if r["calibration"] is not None:
            r["calibration"] = CalibrationDef.model_validate(r["calibration"])
    return rows


def declaration(conn: psycopg.Connection, *, enterprise: str) -> DeclarationDef | None:
    """The enterprise's declaration as its registry gives it; None if it entered none (or
    the registry does not hold the enterprise)."""
    row = conn.execute(
        "SELECT declaration FROM enterprises WHERE id = %s", (enterprise,)
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return DeclarationDef.model_validate(row[0])


def enterprise_targets(conn: psycopg.Connection, *, enterprise: str) -> list[TargetDef]:
    """The targets the enterprise entered in its registry, in its order; [] if none (or the
    registry does not hold the enterprise)."""
    row = conn.execute("SELECT targets FROM enterprises WHERE id = %s", (enterprise,)).fetchone()
    return [] if row is None else [TargetDef.model_validate(t) for t in row[0]]
