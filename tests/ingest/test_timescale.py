"""The TimescaleDB path: hypertable, continuous aggregate, compression and retention.

Runs when FE_TEST_DSN points at a PostgreSQL server with the timescaledb extension
(preloaded); elsewhere it is skipped, saying so. The rest of the suite runs on that
server too, in TimescaleDB mode, when FE_TEST_DSN is set.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

import psycopg
import pytest

from ingest_server.cli.run import PolicyJobRunner, upkeep
from ingest_server.db.schema import apply_policies, migrate, policy_jobs
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


def _scheduled_run_status(dsn: str, job_ids: list[int], timeout_s: float = 120.0) -> list[str]:
    """Has the TimescaleDB scheduler run each job now, and wait for the outcome of each."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for job_id in job_ids:
            conn.execute("SELECT alter_job(%s, next_start => now())", (job_id,))
        deadline = time.monotonic() + timeout_s
        while True:
            rows = conn.execute(
                "SELECT last_run_status FROM timescaledb_information.job_stats "
                "WHERE job_id = ANY(%s) AND last_run_status IS NOT NULL",
                (job_ids,),
            ).fetchall()
            if len(rows) == len(job_ids):
                # no more scheduled runs while the test runs
                for job_id in job_ids:
                    conn.execute(
                        "SELECT alter_job(%s, next_start => now() + INTERVAL '1 day')", (job_id,)
                    )
                return [str(r[0]) for r in rows]
            if time.monotonic() > deadline:
                pytest.skip(
                    f"the TimescaleDB scheduler did not run the policy jobs within {timeout_s:.0f}"
                    " s (timescaledb.max_background_workers?): nothing to test against"
                )
            time.sleep(0.5)


def _compressed(dsn: str) -> dict[bool, bool]:
    """{older than 7 days: all compressed?} over the chunks of `samples`."""
    rows = dump(
        dsn,
        "SELECT range_end < now() - INTERVAL '7 days', bool_and(is_compressed) "
        "FROM timescaledb_information.chunks WHERE hypertable_name = 'samples' GROUP BY 1",
    )
    return {bool(old): bool(all_compressed) for old, all_compressed in rows}


def test_upkeep_runs_the_policy_jobs_the_scheduler_fails_to_run(
    timescale: PgServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen with TimescaleDB 2.28.3 on PostgreSQL 15.20: every background run of a job
    fails (`cannot drop portal "" while it is being set up`). Then upkeep runs the
    project's policy jobs itself, once per schedule_interval; on a server whose
    scheduler works, it leaves them alone."""
    caplog.set_level(logging.DEBUG, logger="ingest_server")
    with timescale.database() as dsn:
        migrate(dsn)
        apply_policies(dsn, compress_after=timedelta(days=7), retention=timedelta(days=3650))
        with psycopg.connect(dsn, autocommit=True) as conn:
            # someone else's job in the same database: never the server's business
            conn.execute("CREATE TABLE other (ts timestamptz NOT NULL, v double precision)")
            conn.execute("SELECT create_hypertable('other', 'ts')")
            conn.execute("ALTER TABLE other SET (timescaledb.compress)")
            conn.execute("SELECT add_compression_policy('other', INTERVAL '7 days')")
            jobs = policy_jobs(conn)
        assert sorted((j.proc_name, j.relation) for j in jobs) == [
            ("policy_compression", "samples"),
            ("policy_refresh_continuous_aggregate", "samples_hourly"),
            ("policy_retention", "samples"),
        ]
        statuses = _scheduled_run_status(dsn, [j.job_id for j in jobs])

        # data the scheduler's runs have not seen: old chunks to compress, recent hours
        # to materialise
        with psycopg.connect(dsn, autocommit=True) as conn:
            for first, last in (("12 days", "9 days"), ("2 days", "2 hours")):
                conn.execute(
                    "INSERT INTO samples (series_id, ts, value) SELECT s, t, s * 10 "
                    "FROM generate_series(1, 2) s, generate_series(now() - %s::interval, "
                    "now() - %s::interval, INTERVAL '1 hour') t",
                    (first, last),
                )
            mat = conn.execute(
                "SELECT format('%I.%I', materialization_hypertable_schema, "
                "materialization_hypertable_name) FROM timescaledb_information."
                "continuous_aggregates WHERE view_name = 'samples_hourly'"
            ).fetchone()
            assert mat is not None
            recent = "SELECT count(DISTINCT (series_id, time_bucket('1 hour', ts))) FROM samples "
            recent += "WHERE ts > now() - INTERVAL '3 days'"
            buckets = dump(dsn, recent)[0][0]
        materialised = f"SELECT count(*) FROM {mat[0]}"
        assert _compressed(dsn) == {True: False, False: False}
        assert dump(dsn, materialised) == [(0,)]

        clock = [1000.0]
        runs = PolicyJobRunner(clock=lambda: clock[0])
        if set(statuses) == {"Success"}:
            upkeep(dsn, "timescale", None, None, runs)
            assert _compressed(dsn) == {True: False, False: False}
            assert dump(dsn, materialised) == [(0,)]
            assert "scheduler's runs of it fail" not in caplog.text
            return
        assert set(statuses) == {"Failed"}, statuses

        upkeep(dsn, "timescale", None, None, runs)
        assert _compressed(dsn) == {True: True, False: False}
        assert dump(dsn, materialised) == [(buckets,)]
        announced = [r.getMessage() for r in caplog.records if "runs of it fail" in r.message]
        assert len(announced) == 3
        with psycopg.connect(dsn) as conn:
            errors = conn.execute(
                "SELECT DISTINCT sqlerrcode || ': ' || err_message FROM "
                "timescaledb_information.job_errors WHERE job_id = ANY(%s)",
                ([j.job_id for j in jobs],),
            ).fetchall()
        assert errors
        assert all(any(e in msg for (e,) in errors) for msg in announced)
        assert "other" not in caplog.text

        # within the interval: not again (a chunk decompressed meanwhile stays so)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT decompress_chunk(c) FROM show_chunks('samples', "
                "older_than => INTERVAL '7 days') c LIMIT 1"
            )
        assert _compressed(dsn) == {True: False, False: False}
        caplog.clear()
        upkeep(dsn, "timescale", None, None, runs)
        assert _compressed(dsn) == {True: False, False: False}
        assert caplog.text == ""

        # after the interval (12 hours for the compression of 1-day chunks): again
        clock[0] += max(j.schedule_interval for j in jobs).total_seconds()
        upkeep(dsn, "timescale", None, None, runs)
        assert _compressed(dsn) == {True: True, False: False}
        assert "runs of it fail" not in caplog.text  # said once per job
