"""The windows a report's measurements are read over, and what is cut at their edges.

Each site's period is one window [start, end) (UTC instants, the end cut at `as_of`); the
series of the devices a site's equipment and meters read are read over it. Here: the
series grouped by window, the window cut on UTC hours (whole hours come from the hourly
rollups), and state intervals clipped to it under the NO_DATA rule
(derive/runs.py's hold_until). Both ways of fetching (kpi/fetch.py, kpi/raw.py) use these.
The pure part is kpi/edges.py (the offline verifier reads it without a database driver);
its names stay importable from here. Here: what reads the database (`Slice`,
`series_refs`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

import psycopg

from ingest_server.kpi.edges import (
    PART_ROLES,
    PRORATED_ROLES,
    SeriesRef,
    by_window,
    clip_intervals,
    hour_ceil,
    hour_floor,
    hour_pieces,
    is_counter,
    site_of,
    spans,
    state_devices,
)
from ingest_server.kpi.records import DeviceKey, Inputs
from ingest_server.repo import measurements

__all__ = [
    "PART_ROLES", "PRORATED_ROLES", "SeriesRef", "Slice", "by_window", "clip_intervals",
    "hour_ceil", "hour_floor", "hour_pieces", "is_counter", "series_refs", "site_of", "spans",
    "state_devices",
]  # fmt: skip


class Slice(NamedTuple):
    """One group of series over one window of a site: what each fetch step reads
    (`conn`, `group`, [`start`, `end`)) and fills (`inputs`)."""

    conn: psycopg.Connection
    inputs: Inputs
    group: Sequence[SeriesRef]
    start: dt.datetime
    end: dt.datetime


def series_refs(conn: psycopg.Connection, devices: Sequence[DeviceKey]) -> list[SeriesRef]:
    """The series of the devices, by device and tag."""
    return [
        SeriesRef(r[0], (r[1], r[2]), r[3], r[4], r[5])
        for r in measurements.series_of(conn, devices=devices)
    ]
