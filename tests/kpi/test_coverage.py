"""Data coverage at the period's edges: the hour that holds `as_of` (a report made while
the period runs) and a period that starts or ends mid-hour (a site whose midnight is not
on a UTC hour). Each case's expected coverage is computed from the samples it writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import verify
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.records import HEARTBEAT_S
from ingest_server.kpi.window import hour_pieces
from tests.harness.ingest import s
from tests.harness.kpi import prepare_kpi, store_samples, utc

DAY = dt.date(2026, 11, 16)


def _meter(device: str, t0: float, t1: float, step_s: float = 60.0) -> list[Any]:
    n = round((t1 - t0) / step_s)
    return [s(device, "energy_kwh", t0 + i * step_s, round(100 + i * 0.1, 1)) for i in range(n)]


def _tags(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{t['device']}/{t['tag']}": t for t in doc["quality"]["tags"]}


def test_a_meter_heard_only_in_the_last_quarter_hour_of_a_running_day(db: str) -> None:
    """Issue 14.3: today in Shanghai, report made at 01:17 local (77 min into the day).
    em-main was silent until 01:02 and then read every 60 s: it covered 15 of 77 minutes
    (19 %), where counting the current hour as a whole one showed 12 heartbeats of the
    15.4 expected (78 %)."""
    prepare_kpi(db)
    start = utc(2026, 11, 15, 16).timestamp()  # 2026-11-16 00:00 in Shanghai
    as_of = utc(2026, 11, 15, 17, 17)  # 01:17 local: the current hour holds 17 min
    end = as_of.timestamp()
    quarter = 900.0
    samples = [
        # the meter: silent all day but for the quarter hour before as_of
        *_meter("em-main", end - quarter, end),
        # the submeter: nothing until as_of, then data within the same hour (a report
        # with an as_of in the past, rebuilt later, must not count them)
        *_meter("em-sub", end, end + 40 * 60),
        # a machine heard in the same quarter hour as em-main
        *[s("cnc-01", "state", t, "RUNNING") for t in range(int(end - quarter), int(end), 60)],
        # a machine on the agent's heartbeat, off the hour grid, before and after as_of:
        # a steady stream must not lose what its last sample before an hour vouches for
        *[
            s("cnc-02", "state", t, "IDLE")
            for t in (start - 293 + HEARTBEAT_S * i for i in range(30))
        ],
    ]
    store_samples(db, samples, 1)
    truth = quarter / (end - start)
    with psycopg.connect(db) as conn:
        doc = make_report(conn, Request("hf", DAY, DAY), key=None, as_of=as_of)
        fast = fetch_inputs(conn, "hf", DAY, DAY, as_of)
        raw = fetch_inputs(conn, "hf", DAY, DAY, as_of, raw=True)
        verdict = verify(doc, conn=conn)
    assert doc["period"]["partial"] is True
    meters = {m["id"]: m for m in doc["meters"]}
    assert meters["em-main"]["coverage"] == pytest.approx(truth)
    assert truth == pytest.approx(0.1948, abs=1e-4)  # the 19 %, not 78 %
    k = {x["id"]: x for x in doc["kpis"]}
    for kid in ("consumption_electricity", "energy_tce", "carbon_tco2"):
        assert k[kid]["coverage"] == pytest.approx(truth), kid
    tags = _tags(doc)
    assert tags["gw-01/em-main/energy_kwh"]["received"] == 15
    assert tags["gw-01/em-main/energy_kwh"]["coverage"] == pytest.approx(truth)
    # after as_of: neither received nor covering
    assert tags["gw-01/em-sub/energy_kwh"]["received"] == 0
    assert meters["em-sub"]["coverage"] == 0.0
    assert tags["gw-01/cnc-02/state"]["coverage"] == pytest.approx(1.0)
    # the machines' coverage (state intervals: NC rate measured, networking) agrees
    eq = {e["id"]: e for e in doc["equipment"]}
    assert eq["cnc-01"]["coverage"] == pytest.approx(truth)
    assert tags["gw-01/cnc-01/state"]["coverage"] == pytest.approx(truth)
    assert eq["cnc-02"]["coverage"] == pytest.approx(1.0)
    # every coverage in the report is at most 1, and both input paths agree row by row
    assert all(t["coverage"] <= 1.0 for t in doc["quality"]["tags"] if t["coverage"] is not None)
    assert list(fast.rows()) == list(raw.rows())
    assert verdict.checks, "nothing was recomputed"
    assert all(c.ok for c in verdict.checks), [c for c in verdict.checks if not c.ok]


def test_a_period_that_starts_and_ends_mid_hour_counts_only_its_own_samples(db: str) -> None:
    """Asia/Kolkata: the local day is [18:30Z, 18:30Z next day). Samples in the half hours
    just outside it share a UTC hour with the period but are not in it."""
    prepare_kpi(db, "Asia/Kolkata")
    start = utc(2026, 11, 15, 18, 30).timestamp()
    end = start + 86400
    samples = [
        *_meter("em-main", start, end),  # every minute of the day, no more
        *_meter("em-sub", start - 1800, start),  # the half hour before it
        *_meter("em-sub", end, end + 1800),  # and the half hour after it
    ]
    store_samples(db, samples, 2)
    with psycopg.connect(db) as conn:
        doc = make_report(conn, Request("hf", DAY, DAY), key=None, as_of=utc(2026, 12, 1))
        fast = fetch_inputs(conn, "hf", DAY, DAY, utc(2026, 12, 1))
        raw = fetch_inputs(conn, "hf", DAY, DAY, utc(2026, 12, 1), raw=True)
    assert doc["period"]["partial"] is False
    tags = _tags(doc)
    main, sub = tags["gw-01/em-main/energy_kwh"], tags["gw-01/em-sub/energy_kwh"]
    assert main["received"] == 24 * 60
    assert main["expected"] == pytest.approx(86400 / HEARTBEAT_S)
    assert main["coverage"] == pytest.approx(1.0)
    assert sub["received"] == 0
    assert sub["coverage"] == 0.0
    meters = {m["id"]: m for m in doc["meters"]}
    assert meters["em-main"]["coverage"] == pytest.approx(1.0)
    assert meters["em-sub"]["coverage"] == 0.0
    assert list(fast.rows()) == list(raw.rows())


def test_a_period_is_cut_into_whole_hours_and_edge_pieces() -> None:
    t = utc(2026, 11, 15, 16)

    def at(minutes: int) -> dt.datetime:
        return t + dt.timedelta(minutes=minutes)

    def cut(a: int, b: int) -> tuple[Any, list[Any]]:
        return hour_pieces(at(a), at(b))

    assert cut(0, 120) == ((at(0), at(120)), [])
    assert cut(0, 77) == ((at(0), at(60)), [(at(60), at(77))])  # the hour holding as_of
    assert cut(30, 80) == (None, [(at(30), at(60)), (at(60), at(80))])
    assert cut(30, 150) == ((at(60), at(120)), [(at(30), at(60)), (at(120), at(150))])
    assert cut(5, 17) == (None, [(at(5), at(17))])  # inside one hour
    assert cut(0, 0) == (None, [])
