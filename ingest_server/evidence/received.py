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

from ingest_server.kpi.plant import devices_of
from ingest_server.kpi.records import Inputs
from ingest_server.repo import measurements


def _tally_scope(
    conn: psycopg.Connection, inputs: Inputs
) -> tuple[dict[str, int], dt.datetime, dt.datetime] | None:
    """The report's raw series ("gateway/device/tag" -> series_id) and the window that
    holds every site's period, or None when there is nothing to tally."""
    devices = devices_of(inputs)
    if not devices or not inputs.sites:
        return None
    series = {
        f"{inputs.device_names.get((gid, dev), f'{gid}/{dev}')}/{tag}": sid
        for sid, gid, dev, tag, _, _ in measurements.series_of(conn, devices=devices)
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
    samples, checksum = measurements.sample_tally(conn, series_ids=sids, start=start, end=end)
    latest = measurements.latest_samples(conn, series_ids=sids)
    by_sid = {sid: name for name, sid in series.items()}
    return {
        "samples": samples,
        "checksum": checksum,
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
    """The samples now against the report's `received` tally: those it counted, their
    checksum, and how many the period reads that came after it was issued (in the
    period, or the first after it or the last before it that close its ends)."""
    scope = _tally_scope(conn, inputs)
    if scope is None:
        return Arrivals(0, "0", 0)
    series, start, end = scope
    latest = received.get("latest") or {}
    lasts = [
        None if latest.get(name) is None else dt.datetime.fromisoformat(latest[name])
        for name in series
    ]
    kept, checksum, later, after_end, before_start = measurements.tally_since(
        conn, series_ids=list(series.values()), lasts=lasts, start=start, end=end
    )
    return Arrivals(kept, checksum, later + after_end + before_start)
