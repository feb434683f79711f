"""green_entries: what the enterprise enters for a period's green-factory sheet and GHG
report (the one home of its SQL), and which of its meters generate on site.

An entry holds the indicators' baseline and leading values with their reference, the
indicators no meter measures with their evidence, on-site generation and renewable
power bought (`entries`, evidence/green.py GreenEntries as JSON) and the process
emissions of its ledger (`process`, evidence/ghg.py ProcessEmission as JSON), validated
by the caller (this layer does not read the evidence models). Rows are only added: the
newest of a period is the one in force, and the older ones are the trail of who entered
what and when, as production entries keep theirs (repo/production.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ingest_server.repo.enterprises import EnterpriseNotFoundError, enterprise_exists

_COLUMNS = "id, period_from, period_to, entries, process, note, entered_at, entered_by"


@dataclass(frozen=True, slots=True)
class NewGreenEntries:
    enterprise: str
    period_from: dt.date
    period_to: dt.date
    entries: dict[str, Any]
    process: list[dict[str, Any]]
    note: str
    entered_by: str


def add_entries(conn: psycopg.Connection, new: NewGreenEntries) -> int:
    """Add the period's entries (they replace, for reports made from now on, what was in
    force; nothing is overwritten); the row's id. Refuses an unknown enterprise."""
    if not enterprise_exists(conn, enterprise=new.enterprise):
        raise EnterpriseNotFoundError(
            f"no enterprise {new.enterprise!r}: import the registry first"
        )
    row = conn.execute(
        "INSERT INTO green_entries (enterprise_id, period_from, period_to, entries, process, "
        "note, entered_by) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (new.enterprise, new.period_from, new.period_to, Jsonb(new.entries),
         Jsonb(new.process), new.note, new.entered_by),
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def current_entries(
    conn: psycopg.Connection, *, enterprise: str, date_from: dt.date, date_to: dt.date
) -> dict[str, Any] | None:
    """The entries in force for exactly the period `date_from`..`date_to` (the newest
    row of it), keyed by column name; None when none was entered. Process emissions are
    the period's activity data, so a row of another period (a year for a month's report)
    never stands in for it."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM green_entries WHERE enterprise_id = %s "
            "AND period_from = %s AND period_to = %s ORDER BY id DESC LIMIT 1",
            (enterprise, date_from, date_to),
        ).fetchone()


def entry_trail(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    date_from: dt.date | None = None,
    date_to: dt.date | None = None,
) -> list[dict[str, Any]]:
    """Every row of the enterprise (of one period, given both dates), oldest first."""
    where = "enterprise_id = %s"
    params: list[Any] = [enterprise]
    if date_from is not None and date_to is not None:
        where += " AND period_from = %s AND period_to = %s"
        params += [date_from, date_to]
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM green_entries WHERE {where} ORDER BY id",
            params,
        ).fetchall()
