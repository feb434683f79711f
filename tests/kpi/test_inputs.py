"""The KPI inputs two ways: from the derived data the server keeps (fast) and from the raw
samples alone (verify). Random plants with silences, offline spells, rollovers and
resets, written in shuffled batches, must give the same inputs row for row."""

from __future__ import annotations

import datetime as dt

import psycopg
import pytest

from ingest_server.kpi.fetch import fetch_inputs
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()  # 2026-11-16 00:00 in Shanghai
T1 = T0 + 2 * 86400 + 3 * 3600


def diff(a: list[str], b: list[str]) -> list[tuple[str, str]]:
    return [(x, y) for x, y in zip(a, b, strict=False) if x != y][:5]


@pytest.mark.parametrize(
    ("seed", "timezone"), [(1, "Asia/Shanghai"), (2, "Asia/Kolkata"), (3, "Asia/Shanghai")]
)
def test_derived_and_raw_inputs_are_the_same_rows(db: str, seed: int, timezone: str) -> None:
    prepare_kpi(db, timezone)
    samples = plant_samples(seed, T0, T1)
    store_samples(db, samples, seed)
    periods = [
        (dt.date(2026, 11, 16), dt.date(2026, 11, 16), utc(2026, 12, 1)),
        (dt.date(2026, 11, 16), dt.date(2026, 11, 17), utc(2026, 12, 1)),
        # partial: the report made mid-hour on the second day
        (dt.date(2026, 11, 16), dt.date(2026, 11, 20), utc(2026, 11, 17, 9, 41, 7)),
        # after the data ends: the tail is NO_DATA
        (dt.date(2026, 11, 18), dt.date(2026, 11, 19), utc(2026, 12, 1)),
    ]
    with psycopg.connect(db) as conn:
        for d0, d1, as_of in periods:
            fast = fetch_inputs(conn, "hf", d0, d1, as_of)
            raw = fetch_inputs(conn, "hf", d0, d1, as_of, raw=True)
            a, b = list(fast.rows()), list(raw.rows())
            assert len(a) == len(b), (d0, d1, len(a), len(b), diff(a, b))
            assert a == b, (d0, d1, diff(a, b))
            kinds = {line.split(",")[0] for line in a}
            assert {'["interval"', '["counter"', '["tag"'} <= kinds
    # the streams really hold what the test is about
    with psycopg.connect(db) as conn:
        flags = dict(
            conn.execute("SELECT flag, count(*) FROM counter_deltas GROUP BY flag").fetchall()
        )
        states = {r[0] for r in conn.execute("SELECT DISTINCT state FROM state_intervals")}
    assert flags.get("rollover", 0) > 0
    assert flags.get("reset", 0) > 0
    assert {"NO_DATA", "OFFLINE", "RUNNING", "PLANNED_STOP"} <= states


def test_counter_hourly_equals_the_deltas_it_sums(db: str) -> None:
    prepare_kpi(db)
    store_samples(db, plant_samples(5, T0, T0 + 86400), 5, per_batch=97)
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            """
            SELECT h.series_id, h.bucket, h.n, h.delta, d.n, d.delta
            FROM counter_hourly h
            FULL JOIN (SELECT series_id, date_trunc('hour', ts, 'UTC') AS bucket,
                              count(*) AS n, sum(delta) AS delta
                       FROM counter_deltas GROUP BY 1, 2) d USING (series_id, bucket)
            """
        ).fetchall()
    assert len(rows) > 48
    for sid, bucket, n1, d1, n2, d2 in rows:
        assert n1 == n2, (sid, bucket)
        assert d1 == pytest.approx(d2), (sid, bucket)
