"""Downtime reasons (停机原因): the enterprise's catalogue, the reason attached to a
machine's DOWN and IDLE intervals with the trail of every change, the stops the loss
Pareto and MTBF/MTTR by cause count (kpi/losses.py), and the alarm texts a machine's
device published (the one home of this SQL; `registry import` writes the catalogue,
repo/registry.py).

An assignment is keyed by (enterprise, equipment, interval start) and holds the state it
was given to (migration 0012): it is the reason of the machine's interval that starts at
that instant in that state. State intervals are re-derived when late samples arrive
(derive/intervals.py); an interval whose end moved keeps its reason, and an assignment
no interval matches any more is kept and listed as "interval changed" (`changed`),
counted nowhere, until an operator attaches it again.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest_server.derive.runs import GAP_AFTER
from ingest_server.errors import InvalidInputError
from ingest_server.repo.equipment import equipment_record

LOSS_STATES = ("DOWN", "IDLE")


class DowntimeInputError(InvalidInputError):
    """An attachment that cannot be made; the message names the request field and the fix."""


def catalogue(conn: psycopg.Connection, *, enterprise: str) -> list[dict[str, Any]]:
    """The enterprise's reasons ({id, name, name_en, category, applies_to, active}), the
    active ones first, then by id."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT id, name, name_en, category, applies_to, active FROM downtime_reasons "
            "WHERE enterprise_id = %s ORDER BY NOT active, id",
            (enterprise,),
        ).fetchall()


# The state intervals of the machines a scope selects (the enterprise's; one machine, a
# site's, a process's when %(eq)s, %(site)s, %(process)s are given) overlapping [a, b): the
# join and filters `stops` and `running_seconds` share.
_INTERVALS = """
    FROM equipment e
    JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
         AND g.id = e.gateway_id
    JOIN state_intervals si ON si.gid = g.gid AND si.device = e.device
"""
_SELECTED = """
      AND si.start < %(b)s AND coalesce(si."end", 'infinity') > %(a)s
      AND (%(eq)s::text IS NULL OR e.id = %(eq)s)
      AND (%(site)s::text IS NULL OR e.site_id = %(site)s)
      AND (%(process)s::text IS NULL OR e.process_id = %(process)s)
"""

# The DOWN and IDLE intervals, each with its machine's process and site and the reason
# attached to it (when the assignment was given to that state). An open interval ends now.
_STOPS = (
    """
    SELECT e.id AS equipment, e.process_id AS process, e.site_id AS site, si.state,
           si.start, coalesce(si."end", now()) AS "end", si."end" IS NULL AS open,
           a.reason_id AS reason, a.note, a.account, a.at
    """
    + _INTERVALS
    + """
    LEFT JOIN downtime_assignments a ON a.enterprise_id = e.enterprise_id
         AND a.equipment_id = e.id AND a.interval_start = si.start AND a.state = si.state
    WHERE e.enterprise_id = %(e)s AND si.state IN ('DOWN', 'IDLE')
    """
    + _SELECTED
    + "    ORDER BY e.id, si.start\n"
)
# every RUNNING second inside [a, b); an open interval runs until now
_RUNNING = (
    """
    SELECT coalesce(sum(extract(epoch FROM
               least(coalesce(si."end", now()), %(b)s) - greatest(si.start, %(a)s))), 0)
    """
    + _INTERVALS
    + """
    WHERE e.enterprise_id = %(e)s AND si.state = 'RUNNING'
      AND coalesce(si."end", now()) > si.start
    """
    + _SELECTED
)


def _scope(
    enterprise: str,
    start: dt.datetime,
    *,
    end: dt.datetime,
    equipment: str | None,
    site: str | None,
    process: str | None,
) -> dict[str, Any]:
    return {"e": enterprise, "a": start, "b": end, "eq": equipment, "site": site,
            "process": process}  # fmt: skip


def stops(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    start: dt.datetime,
    end: dt.datetime,
    equipment: str | None = None,
    site: str | None = None,
    process: str | None = None,
) -> list[dict[str, Any]]:
    """The DOWN and IDLE intervals overlapping [start, end) of the enterprise's machines
    (or of one, a site's, a process's), unclipped: {equipment, process, site, state,
    start, end, open, reason, note, account, at}; reason None: none attached."""
    params = _scope(enterprise, start, end=end, equipment=equipment, site=site, process=process)
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(_STOPS, params).fetchall()


def running_seconds(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    start: dt.datetime,
    end: dt.datetime,
    equipment: str | None = None,
    site: str | None = None,
    process: str | None = None,
) -> float:
    """Every RUNNING second in [start, end) of the machines the filters select (MTBF's
    numerator)."""
    params = _scope(enterprise, start, end=end, equipment=equipment, site=site, process=process)
    row = conn.execute(_RUNNING, params).fetchone()
    return max(0.0, float(row[0])) if row is not None else 0.0


def changed(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dict[str, Any]]:
    """Assignments of the machine in [start, end) that no interval matches any more (its
    start or state changed when it was re-derived): {start, state, reason, note, account,
    at}."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            """
            SELECT a.interval_start AS start, a.state, a.reason_id AS reason, a.note,
                   a.account, a.at
            FROM downtime_assignments a
            JOIN equipment e ON e.enterprise_id = a.enterprise_id AND e.id = a.equipment_id
            WHERE a.enterprise_id = %s AND a.equipment_id = %s
              AND a.interval_start >= %s AND a.interval_start < %s
              AND NOT EXISTS (
                  SELECT 1 FROM gateways g
                  JOIN state_intervals si ON si.gid = g.gid AND si.device = e.device
                  WHERE g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
                    AND g.id = e.gateway_id AND si.start = a.interval_start
                    AND si.state = a.state)
            ORDER BY a.interval_start
            """,
            (enterprise, equipment, start, end),
        ).fetchall()


def _interval_state(
    conn: psycopg.Connection, *, enterprise: str, equipment: str, start: dt.datetime
) -> str | None:
    row = conn.execute(
        """
        SELECT si.state FROM equipment e
        JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
             AND g.id = e.gateway_id
        JOIN state_intervals si ON si.gid = g.gid AND si.device = e.device
        WHERE e.enterprise_id = %s AND e.id = %s AND si.start = %s
        """,
        (enterprise, equipment, start),
    ).fetchone()
    return None if row is None else str(row[0])


def _reason_problem(reasons: list[dict[str, Any]], reason: str, state: str) -> str | None:
    found = next((r for r in reasons if r["id"] == reason), None)
    offered = [r["id"] for r in reasons if r["active"] and r["applies_to"] in (state, "both")]
    if found is None:
        return (
            f"reason: {reason!r} is not in the enterprise's catalogue; give one of "
            f"{', '.join(offered) or '(none: declare downtime_reasons in the registry)'}"
        )
    if not found["active"]:
        return f"reason: {reason!r} is retired from the catalogue; give one of {offered}"
    if found["applies_to"] not in (state, "both"):
        return (
            f"reason: {reason!r} applies to {found['applies_to']} intervals and this one is "
            f"{state}; give one of {offered}"
        )
    return None


def set_reason(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    start: dt.datetime,
    reason: str | None,
    note: str,
    account: str,
) -> dict[str, Any] | None:
    """Attach `reason` (with `note`) to the machine's DOWN or IDLE interval starting at
    `start`, replacing any, in one transaction with a row of the trail when anything
    changes; the assignment after ({start, state, reason, note, account, at}).
    UnknownEquipmentError; DowntimeInputError for no such interval, or a reason that is
    not in the catalogue, retired or not for the interval's state: nothing is changed.

    `reason` None clears the assignment at `start`, also one whose interval changed (it
    has none to check against); clearing where there is none changes nothing: None."""
    if reason is None:
        _clear(conn, enterprise=enterprise, equipment=equipment, start=start, account=account)
        return None
    with conn.transaction():
        equipment_record(conn, enterprise=enterprise, equipment=equipment)  # or 404
        state = _interval_state(conn, enterprise=enterprise, equipment=equipment, start=start)
        if state not in LOSS_STATES:
            what = "no state interval" if state is None else f"a {state} interval"
            raise DowntimeInputError(
                f"start: {equipment} has {what} starting at {start.isoformat()}; a reason "
                "goes on a DOWN or IDLE interval: give its exact start (GET .../stops)"
            )
        assert state is not None
        problem = _reason_problem(catalogue(conn, enterprise=enterprise), reason, state)
        if problem:
            raise DowntimeInputError(problem)
        key = (enterprise, equipment, start)
        before = _locked(conn, key)
        old = None if before is None else {"reason": before["reason"], "note": before["note"]}
        new = {"reason": reason, "note": note}
        if old != new or before is None or before["state"] != state:
            conn.execute(
                "INSERT INTO downtime_assignments (enterprise_id, equipment_id, interval_start, "
                "state, reason_id, note, account) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (enterprise_id, equipment_id, interval_start) DO UPDATE SET "
                "state = excluded.state, reason_id = excluded.reason_id, "
                "note = excluded.note, account = excluded.account, at = now()",
                (*key, state, reason, note, account),
            )
            _audit(conn, key, state, account, old, new)
        return _assignment(conn, enterprise=enterprise, equipment=equipment, start=start)


def _clear(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    start: dt.datetime,
    account: str,
) -> None:
    with conn.transaction():
        equipment_record(conn, enterprise=enterprise, equipment=equipment)  # or 404
        key = (enterprise, equipment, start)
        before = _locked(conn, key)
        if before is None:
            return
        conn.execute(
            "DELETE FROM downtime_assignments "
            "WHERE enterprise_id = %s AND equipment_id = %s AND interval_start = %s",
            key,
        )
        old = {"reason": before["reason"], "note": before["note"]}
        _audit(conn, key, before["state"], account, old, None)


def _locked(conn: psycopg.Connection, key: tuple[str, str, dt.datetime]) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT reason_id AS reason, note, state FROM downtime_assignments "
            "WHERE enterprise_id = %s AND equipment_id = %s AND interval_start = %s "
            "FOR UPDATE",
            key,
        ).fetchone()


def _audit(  # noqa: PLR0917 (one row's columns)
    conn: psycopg.Connection,
    key: tuple[str, str, dt.datetime],
    state: str,
    account: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    conn.execute(
        "INSERT INTO downtime_audit (enterprise_id, equipment_id, interval_start, state, "
        "account, old, new) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (*key, state, account, _json(old), _json(new)),
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _assignment(
    conn: psycopg.Connection, *, enterprise: str, equipment: str, start: dt.datetime
) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT interval_start AS start, state, reason_id AS reason, note, account, at "
            "FROM downtime_assignments "
            "WHERE enterprise_id = %s AND equipment_id = %s AND interval_start = %s",
            (enterprise, equipment, start),
        ).fetchone()


def trail(
    conn: psycopg.Connection, *, enterprise: str, equipment: str | None = None
) -> list[dict[str, Any]]:
    """Every attachment, change and removal of a reason, of the enterprise's machines or
    one's: {at, equipment, start, state, account, old, new} (old, new: {reason, note} or
    None); oldest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT at, equipment_id AS equipment, interval_start AS start, state, account, "
            "old, new FROM downtime_audit WHERE enterprise_id = %s "
            "AND (%s::text IS NULL OR equipment_id = %s) ORDER BY at, id",
            (enterprise, equipment, equipment),
        ).fetchall()


def alarms(
    conn: psycopg.Connection,
    *,
    enterprise: str,
    equipment: str,
    start: dt.datetime,
    end: dt.datetime,
) -> list[dict[str, Any]]:
    """The alarms the machine's device raised over [start, end), from its tags of role
    `alarm`: {tag, start, end, text, value} per span of one raised value (a text, or a
    number other than 0), clipped to the window. A span ends at the next different good
    value; with nothing after it, GAP_AFTER after its last sample (the agent re-sends a
    value every heartbeat: derive/runs.py). A value in force at `start` counts from its
    last sample before it; bad samples neither raise nor clear."""
    rows = conn.execute(
        """
        WITH tags AS (
            SELECT se.series_id, se.tag FROM equipment e
            JOIN gateways g ON g.enterprise_id = e.enterprise_id AND g.site_id = e.site_id
                 AND g.id = e.gateway_id
            JOIN series se ON se.gid = g.gid AND se.device = e.device AND se.role = 'alarm'
            WHERE e.enterprise_id = %(e)s AND e.id = %(eq)s
        ), good AS (
            SELECT t.tag, s.series_id, s.ts, s.text, s.value,
                   coalesce(s.text, s.value::text) AS v
            FROM tags t JOIN samples s USING (series_id)
            WHERE s.quality < 2 AND s.ts < %(b)s AND s.ts >= coalesce(
                (SELECT max(p.ts) FROM samples p WHERE p.series_id = t.series_id
                   AND p.ts < %(a)s AND p.quality < 2), %(a)s)
        ), marked AS (
            SELECT *, v IS DISTINCT FROM lag(v) OVER w AS first,
                   lead(ts) OVER w AS next_ts
            FROM good WINDOW w AS (PARTITION BY series_id ORDER BY ts)
        ), spans AS (
            SELECT *, sum(first::int) OVER (PARTITION BY series_id ORDER BY ts) AS run
            FROM marked
        )
        SELECT tag, min(ts), max(coalesce(next_ts, ts + %(hold)s)), min(text), min(value)
        FROM spans GROUP BY series_id, tag, run
        ORDER BY min(ts), tag
        """,
        {"e": enterprise, "eq": equipment, "a": start, "b": end, "hold": GAP_AFTER},
    ).fetchall()
    out = []
    for tag, first, last, text, value in rows:
        raised = text.strip() not in ("", "0") if text is not None else bool(value)
        a, b = max(first, start), min(last, end)
        if raised and b > a:
            out.append({"tag": tag, "start": a, "end": b, "text": text, "value": value})
    return out
