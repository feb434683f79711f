"""The TimescaleDB path: hypertable, continuous aggregate, compression and retention.

Runs when FE_TEST_DSN points at a PostgreSQL server with the timescaledb extension
(preloaded); elsewhere it is skipped, saying so. The rest of the suite runs on that
server too, in TimescaleDB mode, when FE_TEST_DSN is set.
"""

from __future__ import annotations

import random
from datetime import timedelta

import psycopg
import pytest

from ingest_server.db.schema import apply_policies, migrate
from tests.harness.ingest import batch, birth, dump, open_store, prepare, write
from tests.harness.pg import PgServer, has_timescale
from tests.ingest.test_store import CNC, METER, _stream

ROLLUP = (
    "SELECT series_id, bucket, n, n_good, round(v_sum::numeric, 6), v_min, v_max, first_ts, "
    "first_value, last_ts, last_value FROM samples_hourly ORDER BY 1, 2"
)


@pytest.fixture
def timescale(pg_server: PgServer) -> PgServer:
    if not has_timescale(pg_server.admin_dsn):
        pytest.skip(
            "TimescaleDB is not installed on the test PostgreSQL (the embedded one has no "
            "extensions): set FE_TEST_DSN to a server with timescaledb preloaded to run this"
        )
    return pg_server


def test_timescale_mode_stores_and_rolls_up_like_plain_postgresql(timescale: PgServer) -> None:
    stream = _stream(random.Random(7))
    batches = [stream[i : i + 25] for i in range(0, len(stream), 25)]
    with timescale.database() as ts_dsn, timescale.database() as plain_dsn:
        info = migrate(ts_dsn)
        assert info.mode == "timescale"
        assert info.timescale_version
        assert migrate(plain_dsn, allow_timescale=False).mode == "plain"
        for dsn in (ts_dsn, plain_dsn):
            prepare(dsn)
            with open_store(dsn) as store:
                write(store, ("birth", birth([CNC, METER])))
                for i, b in enumerate(batches, 1):
                    write(store, ("data", batch(i, b)))
        assert dump(ts_dsn, "SELECT hypertable_name FROM timescaledb_information.hypertables") == [
            ("samples",)
        ]
        assert dump(
            ts_dsn, "SELECT view_name FROM timescaledb_information.continuous_aggregates"
        ) == [("samples_hourly",)]
        with psycopg.connect(ts_dsn, autocommit=True) as conn:
            conn.execute("CALL refresh_continuous_aggregate('samples_hourly', NULL, NULL)")
        assert dump(ts_dsn, ROLLUP) == dump(plain_dsn, ROLLUP)
        for query in (
            'SELECT device, start, "end", state FROM state_intervals ORDER BY 1, 2',
            "SELECT ts, delta, flag FROM counter_deltas ORDER BY series_id, ts",
        ):
            assert dump(ts_dsn, query) == dump(plain_dsn, query)


def test_policies_and_late_data_into_compressed_chunks(timescale: PgServer) -> None:
    stream = _stream(random.Random(8))
    first, late = stream[:300], stream[300:]
    with timescale.database() as dsn:
        prepare(dsn)
        done = apply_policies(dsn, compress_after=timedelta(days=7), retention=timedelta(days=3650))
        assert len(done) == 2
        jobs = dump(
            dsn,
            "SELECT proc_name FROM timescaledb_information.jobs WHERE hypertable_name = "
            "'samples' ORDER BY 1",
        )
        assert jobs == [("policy_compression",), ("policy_retention",)]
        with open_store(dsn) as store:
            write(store, ("birth", birth([CNC, METER])), ("data", batch(1, first)))
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("SELECT compress_chunk(c) FROM show_chunks('samples') c")
            # a backlog arriving after compression, with a repeat of an earlier sample
            write(store, ("data", batch(2, [first[-1], *late])))
        assert dump(dsn, "SELECT count(*) FROM samples") == [(len(stream),)]
        deltas = dump(dsn, "SELECT count(*) FROM counter_deltas")[0][0]
        counters = [x for x in stream if x.tag in ("parts", "energy_kwh")]
        assert deltas == len(counters) - 2  # one per reading after each series' first
