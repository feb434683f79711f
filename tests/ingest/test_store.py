"""What the server writes for accepted messages, on a real PostgreSQL: samples exactly
once, and derived data (state intervals, counter deltas, rollups) that is the same
whatever the order and repetition of arrival."""

from __future__ import annotations

import random

import pytest

from edge_agent.contract.sample import Quality, Sample
from tests.harness.ingest import (
    batch,
    birth,
    dump,
    intervals,
    open_store,
    prepare,
    s,
    write,
)
from tests.harness.pg import PgServer

T0 = 1_795_000_000.0  # seconds
CNC = {
    "id": "cnc-01",
    "protocol": "opcua",
    "metadata": {"nc": True},
    "tags": [
        {"t": "state", "role": "machine_state"},
        {"t": "parts", "role": "part_count_total", "unit": "pcs"},
    ],
}
METER = {
    "id": "em-1",
    "protocol": "modbus",
    "metadata": {"kind": "meter"},
    "tags": [{"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh", "wrap": 6553.6}],
}


def test_a_batch_is_stored_once_however_often_it_arrives(db: str) -> None:
    prepare(db)
    samples = [s("cnc-01", "state", T0 + i, "RUNNING" if i % 2 else "IDLE") for i in range(10)]
    with open_store(db) as store:
        write(store, ("birth", birth([CNC])), ("data", batch(1, samples)))
        write(store, ("data", batch(1, samples)), ("data", batch(1, samples)))
        # the same samples in another batch (a republish after a restart): dropped by key
        write(store, ("data", batch(2, samples[:5])))
    assert dump(db, "SELECT count(*) FROM samples") == [(10,)]
    assert dump(db, "SELECT count(*) FROM batches") == [(2,)]
    rows = dump(db, "SELECT text FROM samples ORDER BY ts")
    assert [r[0] for r in rows] == [x.value for x in samples]


def test_states_with_an_offline_spell_make_intervals(db: str) -> None:
    prepare(db)
    seq = [
        s("cnc-01", "_status", T0, "online"),
        s("cnc-01", "state", T0, "IDLE"),
        s("cnc-01", "state", T0 + 60, "RUNNING"),
        s("cnc-01", "state", T0 + 120, "RUNNING"),  # a heartbeat: no new interval
        s("cnc-01", "_status", T0 + 180, "offline"),
        s("cnc-01", "state", T0 + 180, None, Quality.BAD),
        s("cnc-01", "_status", T0 + 300, "online"),
        s("cnc-01", "state", T0 + 300, "DOWN"),
        s("cnc-01", "state", T0 + 400, None, Quality.BAD),
        s("cnc-01", "state", T0 + 450, "IDLE"),
    ]
    with open_store(db) as store:
        write(store, ("birth", birth([CNC])), ("data", batch(1, seq)))
    assert intervals(db) == [
        (T0, T0 + 60, "IDLE"),
        (T0 + 60, T0 + 180, "RUNNING"),
        (T0 + 180, T0 + 300, "OFFLINE"),
        (T0 + 300, T0 + 400, "DOWN"),
        (T0 + 400, T0 + 450, "UNKNOWN"),
        (T0 + 450, None, "IDLE"),
    ]


def test_counter_rollover_and_reset_are_flagged(db: str) -> None:
    prepare(db)
    readings = [6550.0, 6552.5, 1.5, 3.0, 0.5, 2.0]  # wraps at 6553.6, then a reset
    seq = [s("em-1", "energy_kwh", T0 + 10 * i, v) for i, v in enumerate(readings)]
    with open_store(db) as store:
        write(store, ("birth", birth([METER])), ("data", batch(1, seq)))
    rows = dump(db, "SELECT delta, flag FROM counter_deltas ORDER BY ts")
    assert [(round(d, 6), f) for d, f in rows] == [
        (2.5, None),
        (round(6553.6 - 6552.5 + 1.5, 6), "rollover"),
        (1.5, None),
        (0.5, "reset"),
        (1.5, None),
    ]


def test_a_birth_after_the_data_gives_roles_and_derived_data(db: str) -> None:
    prepare(db)
    seq = [s("em-1", "energy_kwh", T0 + i, 100.0 + i) for i in range(5)]
    seq += [s("cnc-01", "state", T0, "RUNNING"), s("cnc-01", "state", T0 + 3, "IDLE")]
    with open_store(db) as store:
        write(store, ("data", batch(1, seq)))
        assert dump(db, "SELECT count(*) FROM counter_deltas") == [(0,)]  # no roles yet
        write(store, ("birth", birth([CNC, METER])))
    assert dump(db, "SELECT sum(delta) FROM counter_deltas") == [(4.0,)]
    assert [r[2] for r in intervals(db)] == ["RUNNING", "IDLE"]


def _stream(rng: random.Random) -> list[Sample]:
    """A day of one machine and one meter with offline spells, a rollover and a reset."""
    out: list[Sample] = []
    t, energy, parts = T0, 6400.0, 0.0
    states = ["RUNNING", "IDLE", "SETUP", "DOWN", "PLANNED_STOP", "OFF"]
    for _ in range(400):
        t += rng.choice([1, 5, 30, 60, 61.5])
        r = rng.random()
        if r < 0.05:
            out.append(s("cnc-01", "_status", t, rng.choice(["online", "offline"])))
        elif r < 0.45:
            quality = Quality.BAD if rng.random() < 0.05 else Quality.GOOD
            value = None if quality is Quality.BAD else rng.choice(states)
            out.append(s("cnc-01", "state", t, value, quality))
        elif r < 0.7:
            parts += rng.choice([0, 1, 1, 2])
            out.append(s("cnc-01", "parts", t, parts))
        else:
            energy += rng.random() * 5
            if rng.random() < 0.01:
                energy = rng.random()  # a reset
            out.append(s("em-1", "energy_kwh", t, round(energy % 6553.6, 1)))
    return out


DERIVED = (
    'SELECT gid, device, start, "end", state FROM state_intervals ORDER BY 1, 2, 3',
    "SELECT series_id, ts, prev_ts, prev_value, value, delta, flag FROM counter_deltas "
    "ORDER BY 1, 2",
    "SELECT series_id, bucket, n, n_good, round(v_sum::numeric, 6), v_min, v_max, first_ts, "
    "first_value, last_ts, last_value FROM samples_hourly ORDER BY 1, 2",
    "SELECT series_id, ts, value, text, quality FROM samples ORDER BY 1, 2",
)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replays_and_out_of_order_backlog_derive_the_same_as_in_order(
    pg_server: PgServer, seed: int
) -> None:
    rng = random.Random(seed)
    stream = _stream(rng)
    batches = [stream[i : i + 17] for i in range(0, len(stream), 17)]
    with pg_server.database() as in_order, pg_server.database() as shuffled:
        for dsn in (in_order, shuffled):
            prepare(dsn)
        with open_store(in_order) as store:
            write(store, ("birth", birth([CNC, METER])))
            for i, b in enumerate(batches, 1):
                write(store, ("data", batch(i, b)))

        # the other way: live batches overtaking a backlog, repeats, several per commit
        order = list(enumerate(batches, 1))
        rng.shuffle(order)
        order += rng.sample(order, 6)  # delivered twice
        with open_store(shuffled) as store:
            write(store, ("birth", birth([CNC, METER])))
            while order:
                n = rng.randint(1, 4)
                group, order = order[:n], order[n:]
                write(store, *[("data", batch(i, b)) for i, b in group])

        assert dump(in_order, "SELECT count(*) FROM state_intervals")[0][0] > 20
        assert dump(in_order, "SELECT count(*) FROM counter_deltas WHERE flag = 'rollover'")
        for query in DERIVED:
            assert dump(shuffled, query) == dump(in_order, query), query


def test_two_writers_at_once_derive_the_same_as_one(pg_server: PgServer) -> None:
    """Two servers writing batches of the same series at the same time (a shared
    subscription splits one gateway's batches): the derived rows equal an in-order run."""
    import threading  # noqa: PLC0415

    stream = _stream(random.Random(11))
    batches = [stream[i : i + 10] for i in range(0, len(stream), 10)]
    with pg_server.database() as in_order, pg_server.database() as concurrent:
        for dsn in (in_order, concurrent):
            prepare(dsn)
            with open_store(dsn) as store:
                write(store, ("birth", birth([CNC, METER])))
        with open_store(in_order) as store:
            for i, b in enumerate(batches, 1):
                write(store, ("data", batch(i, b)))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def writer(parity: int) -> None:
            try:
                with open_store(concurrent) as store:
                    for i, b in enumerate(batches, 1):
                        if i % 2 == parity:
                            barrier.wait(10)  # both write batch i and i+1 together
                            write(store, ("data", batch(i, b)))
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(p,)) for p in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        for query in DERIVED:
            assert dump(concurrent, query) == dump(in_order, query), query
