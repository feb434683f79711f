"""The raw samples the server held when it made a report: the `received` tally.

A signed report carries, for the raw series its figures read, how many samples of the
period the server held, an order-independent checksum of them, and each series' latest
sample time (whatever its time). At verification, samples later than a series' latest
arrived after the report was issued (late data); samples no later than it whose count or
checksum differ were changed. It is a diagnosis, not a proof: the signature and the
recomputation are the proof; the tally only says why a recomputation differs
(docs/kpi.md, Verification).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg

from ingest_server.kpi.inputs import Inputs

# One row's contribution to the tally: the first 60 bits of the MD5 of its key and
# content, as an integer; the tally is their sum (order-independent, so one SQL
# aggregate). It is a diagnosis, not a proof: the signature and the recomputation are
# the proof; the tally only says why a recomputation differs.
_ROW_HASH = (
    "('x' || substr(md5(format('%%s|%%s|%%s|%%s|%%s|%%s', s.series_id, "
    "(extract(epoch FROM s.ts) * 1000000)::bigint, s.value, s.text, s.quality, s.status)), "
    "1, 15))::bit(60)::bigint"
)


def _tally_scope(
    conn: psycopg.Connection, inputs: Inputs
) -> tuple[dict[str, int], dt.datetime, dt.datetime] | None:
    """The report's raw series ("gateway/device/tag" -> series_id) and the window that
    holds every site's period, or None when there is nothing to tally."""
    devices = sorted(
        {e.device for e in inputs.equipment if e.device}
        | {m.device for m in inputs.meters if m.device}
    )
    if not devices or not inputs.sites:
        return None
    series = {
        f"{inputs.device_names.get((gid, dev), f'{gid}/{dev}')}/{tag}": sid
        for sid, gid, dev, tag in conn.execute(
            "SELECT series_id, gid, device, tag FROM series "
            "WHERE (gid, device) IN (SELECT * FROM unnest(%s::int[], %s::text[]))",
            ([d[0] for d in devices], [d[1] for d in devices]),
        )
    }
    return series, min(s.start for s in inputs.sites), max(s.end for s in inputs.sites)


def received_tally(conn: psycopg.Connection, inputs: Inputs) -> dict[str, Any]:
    """The raw samples of the period held now: how many, their checksum, and each
    series' latest sample (whatever its time): a sample later than that arrived later."""
    scope = _tally_scope(conn, inputs)
    if scope is None:
        return {"samples": 0, "checksum": "0", "latest": {}}
    series, start, end = scope
    sids = list(series.values())
    row = conn.execute(
        f"SELECT count(*), coalesce(sum({_ROW_HASH}), 0)::text FROM samples s "
        "WHERE s.series_id = ANY(%s) AND s.ts >= %s AND s.ts < %s",
        (sids, start, end),
    ).fetchone()
    assert row is not None
    latest: dict[int, dt.datetime | None] = dict(
        conn.execute(
            "SELECT sid, (SELECT max(ts) FROM samples WHERE series_id = sid) "
            "FROM unnest(%s::int[]) AS sid",
            (sids,),
        ).fetchall()
    )
    by_sid = {sid: name for name, sid in series.items()}
    return {
        "samples": int(row[0]),
        "checksum": str(row[1]),
        "latest": {
            by_sid[sid]: None if t is None else t.astimezone(dt.UTC).isoformat()
            for sid, t in sorted(latest.items(), key=lambda x: by_sid[x[0]])
        },
    }


@dataclass(frozen=True, slots=True)
class Arrivals:
    """The raw samples now against the report's tally."""

    kept: int  # samples in the window no later than their series' latest at issue
    kept_checksum: str
    late: int  # samples the period reads that arrived after the report was issued


def compare_received(
    conn: psycopg.Connection, inputs: Inputs, received: dict[str, Any]
) -> Arrivals:
    scope = _tally_scope(conn, inputs)
    if scope is None:
        return Arrivals(0, "0", 0)
    series, start, end = scope
    latest = received.get("latest") or {}
    sids = list(series.values())
    lasts = [
        None if latest.get(name) is None else dt.datetime.fromisoformat(latest[name])
        for name in series
    ]
    row = conn.execute(
        f"""
        WITH w AS (SELECT * FROM unnest(%(sids)s::int[], %(lasts)s::timestamptz[]) AS w(sid, last))
        SELECT
          (SELECT count(*) FILTER (WHERE s.ts <= w.last)
            FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s),
          (SELECT coalesce(sum({_ROW_HASH}) FILTER (WHERE s.ts <= w.last), 0)::text
            FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s),
          (SELECT count(*) FROM samples s JOIN w ON s.series_id = w.sid
            WHERE s.ts >= %(start)s AND s.ts < %(end)s AND (w.last IS NULL OR s.ts > w.last)),
          -- the first reading after the period (it closes the last state and shares out
          -- the last counter interval) was not there yet
          (SELECT count(*) FROM w WHERE (w.last IS NULL OR w.last < %(end)s)
            AND EXISTS (SELECT 1 FROM samples s WHERE s.series_id = w.sid AND s.ts >= %(end)s)),
          -- nor the last one before it
          (SELECT count(*) FROM w WHERE (w.last IS NULL OR w.last < %(start)s)
            AND EXISTS (SELECT 1 FROM samples s WHERE s.series_id = w.sid AND s.ts < %(start)s
                        AND (w.last IS NULL OR s.ts > w.last)))
        """,
        {"sids": sids, "lasts": lasts, "start": start, "end": end},
    ).fetchone()
    assert row is not None
    return Arrivals(int(row[0]), str(row[1]), int(row[2]) + int(row[3]) + int(row[4]))
