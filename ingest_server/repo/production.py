"""production_entries: output and value added, entered by people (the one home of its SQL).

Energy and carbon intensities divide by these; every entry keeps who entered it and when.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest_server.errors import InvalidInputError
from ingest_server.repo.enterprises import EnterpriseNotFoundError, enterprise_exists

_COLUMNS = (
    "id, site_id, period_from, period_to, output, output_unit, value_added_10k_cny, note, "
    "entered_at, entered_by"
)


class UnknownSiteError(InvalidInputError):
    """An entry for a site its enterprise does not have."""


@dataclass(frozen=True, slots=True)
class NewEntry:
    enterprise: str
    site: str | None
    period_from: dt.date
    period_to: dt.date
    output: float | None
    output_unit: str | None
    value_added_10k_cny: float | None
    note: str | None
    entered_by: str | None


def list_entries(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """Every entry of an enterprise, by period, as rows keyed by column name."""
    cur = conn.execute(
        f"SELECT {_COLUMNS} FROM production_entries WHERE enterprise_id = %s "
        "ORDER BY period_from, id",
        (enterprise,),
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def entries_overlapping(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> list[tuple[Any, ...]]:
    """(id, site, from, to, output, unit, value added, note, entered at, entered by) of
    the entries that overlap the days `date_from`..`date_to`, by id: what a KPI
    computation prorates, and who entered it when."""
    return conn.execute(
        "SELECT id, site_id, period_from, period_to, output, output_unit, "
        "value_added_10k_cny, note, entered_at, entered_by FROM production_entries "
        "WHERE enterprise_id = %s AND period_from <= %s AND period_to >= %s ORDER BY id",
        (enterprise, date_to, date_from),
    ).fetchall()


def add_entry(conn: psycopg.Connection, entry: NewEntry) -> int:
    """Insert one entry; its id. Refuses an unknown enterprise or site by name."""
    if not enterprise_exists(conn, enterprise=entry.enterprise):
        raise EnterpriseNotFoundError(
            f"no enterprise {entry.enterprise!r}: import the registry first"
        )
    if entry.site is not None:
        site = conn.execute(
            "SELECT 1 FROM sites WHERE enterprise_id = %s AND id = %s",
            (entry.enterprise, entry.site),
        )
        if site.fetchone() is None:
            raise UnknownSiteError(f"enterprise {entry.enterprise} has no site {entry.site!r}")
    row = conn.execute(
        "INSERT INTO production_entries (enterprise_id, site_id, period_from, period_to, output, "
        "output_unit, value_added_10k_cny, note, entered_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            entry.enterprise, entry.site, entry.period_from, entry.period_to, entry.output,
            entry.output_unit, entry.value_added_10k_cny, entry.note, entry.entered_by,
        ),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])
