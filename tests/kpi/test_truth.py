"""KPIs against the simulator's ground truth, end to end.

Two days of the demo plant (a working Saturday with two shifts, breaks and planned
stops, then an idle Sunday) go through the real path: factory-sim history (what the
gateway would have read, every 300 s plus every state change) -> edge-agent backfill (the
agent's outbox, signing, delivery) -> Mosquitto -> the ingestion server -> PostgreSQL.
With faults: a CNC offline for two hours of the day shift, a PLC machine offline across
the 16:00 shift change, a meter counter reset; the em-ht register and wash-01's part
counters roll over. The report's figures are compared with figures computed from the
truth file:

- state times per machine (every ISO 22400 bucket), availability, effectiveness,
  quality, OEE, NC rates (declared and measured), networking rate: exact;
- part counts over the two days: exact (both edges fall where the plant is off);
- energy per meter and in tce: within the register's resolution (a meter shows its
  reading truncated to it, at both edges of the period);
- a partial period cut mid-shift: state times exact; parts between the counts of the
  spans finished one poll before the cut and of all spans begun before it (a part is
  seen at the first poll after it is made).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest_server.db.schema import migrate
from ingest_server.evidence.offline.kpis import check_kpis
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import verify
from ingest_server.kpi.engine import Parameters
from ingest_server.kpi.equipment import segments_of
from ingest_server.kpi.plant import load_registry
from ingest_server.kpi.timemodel import Interval, TimeBuckets, performance, time_model
from simulators.faults import Fault
from simulators.scenario import Interface, Scenario, default_scenario_path, load_scenario
from simulators.truth import parse_iso, read_truth
from tests.evidence.test_ledger import run
from tests.harness.backfill import load_history
from tests.harness.broker import start_broker
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow


def _scenario() -> Scenario:
    """The demo plant, with planned maintenance in every shift of cnc-05 (PLANNED_STOP in
    work time leaves PBT) and wash-01's 16-bit part counters just below their wrap."""
    demo = load_scenario(default_scenario_path())
    equipment = []
    for e in demo.equipment:
        if e.id == "cnc-05":
            e = e.model_copy(  # noqa: PLW2901
                update={"behaviour": e.behaviour.model_copy(update={"planned_stop_per_shift": 1.0})}
            )
        elif e.id == "wash-01":
            e = e.model_copy(  # noqa: PLW2901
                update={
                    "counters": e.counters.model_copy(update={"completed": 65300, "good": 65290})
                }
            )
        equipment.append(e)
    return demo.model_copy(update={"equipment": equipment})


SCENARIO = _scenario()
NETWORKED = (Interface.OPCUA, Interface.MODBUS_PLC)
ENT = SCENARIO.enterprise.id
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
START = dt.datetime(2026, 11, 20, 16, tzinfo=dt.UTC).timestamp()  # Sat 00:00 in Hefei
END = START + 2 * 86400  # Mon 00:00
POLL_S = 300.0
H = 3600.0
FAULTS = [
    Fault("offline", "cnc-03", 2 * H, 9.5 * H),  # 09:30-11:30, in the day shift
    Fault("offline", "ht-01", 0.5 * H, 15.75 * H),  # 15:45-16:15, across the shift change
    Fault("reset", "em-assembly", 0.0, 14 * H),  # right after the 14:00 reading
]
AS_OF = dt.datetime.fromtimestamp(START + 14 * H + 7.5 * 60, dt.UTC)  # Sat 14:07:30 local
BUCKETS = (
    "calendar_s", "pot_s", "planned_downtime_s", "pbt_s", "apt_s", "setup_s", "idle_s",
    "down_s", "off_in_plan_s", "unknown_s", "running_outside_s", "running_s", "down_events",
)  # fmt: skip


@pytest.fixture(scope="module")
def plant(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The database with the two days in it, and the truth."""
    work = tmp_path_factory.mktemp("truth")
    with pg_server.database() as db:
        migrate(db)
        broker = start_broker(work / "broker")
        try:
            truth = asyncio.run(
                load_history(db, broker, work, SCENARIO, START, END, POLL_S, faults=FAULTS)
            )
        finally:
            broker.stop()
        yield db, list(read_truth(truth))


def truth_intervals(truth: list[dict[str, Any]]) -> dict[str, list[Interval]]:
    """Each machine's true spans, OFFLINE where a fault cut it off (its state unseen)."""
    spans: dict[str, list[Interval]] = defaultdict(list)
    for r in truth:
        if r["type"] == "state":
            spans[r["device"]].append(
                Interval(parse_iso(r["start"]), parse_iso(r["end"]), r["state"])
            )
    for r in truth:
        if r["type"] == "fault" and r["kind"] == "offline" and r["device"] in spans:
            a, b = parse_iso(r["start"]), parse_iso(r["end"])
            out: list[Interval] = []
            for iv in spans[r["device"]]:
                if iv.start < a:
                    out.append(Interval(iv.start, min(iv.end, a), iv.state))
                if iv.end > b:
                    out.append(Interval(max(iv.start, b), iv.end, iv.state))
            out.append(Interval(a, b, "OFFLINE"))
            spans[r["device"]] = sorted(out, key=lambda i: i.start)
    return spans


def true_parts(truth: list[dict[str, Any]], until: float = END) -> dict[str, tuple[int, int]]:
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in truth:
        if r["type"] == "state" and parse_iso(r["end"]) <= until:
            out[r["device"]][0] += r["parts_completed"]
            out[r["device"]][1] += r["parts_good"]
    return {k: (v[0], v[1]) for k, v in out.items()}


def true_consumption(truth: list[dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in truth:
        if r["type"] == "meter_hour":
            out[r["device"]] += r["consumed"]
    return out


def resolution(meter: str, reading: float) -> float:
    """What one reading of the meter's counter register can be off by."""
    for srv in SCENARIO.modbus_servers:
        for unit in srv.units:
            if unit.device != meter:
                continue
            for reg in unit.registers:
                if reg.source in ("energy_kwh", "water_m3", "gas_m3"):
                    if reg.type in ("f32", "f64"):
                        return 2 * abs(reading) * 2**-23 + 1e-9
                    return reg.scale * 1.000001
    raise AssertionError(f"no counter register for {meter}")


def report(db: str, d0: dt.date, d1: dt.date, as_of: dt.datetime, **params: Any) -> Any:
    req = Request(ENT, d0, d1, params=Parameters(**params))
    with psycopg.connect(db) as conn:
        return make_report(conn, req, key=None, as_of=as_of)


NOW = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)


def expected_times(db: str, truth: list[dict[str, Any]], d0: dt.date, d1: dt.date,
                   as_of: dt.datetime) -> dict[str, TimeBuckets]:  # fmt: skip
    with psycopg.connect(db) as conn:
        inputs = load_registry(conn, ENT, d0, d1, as_of)
    site = inputs.sites[0]
    segments = segments_of(site)
    return {
        dev: time_model(site.start.timestamp(), site.end.timestamp(), ivs, segments)
        for dev, ivs in truth_intervals(truth).items()
    }


def test_state_times_and_oee_equal_the_truth(plant: Any) -> None:
    db, truth = plant
    doc = report(db, SAT, SUN, NOW)
    expected = expected_times(db, truth, SAT, SUN, NOW)
    parts = true_parts(truth)
    eq = {e["id"]: e for e in doc["equipment"]}
    networked = {e.id for e in SCENARIO.equipment if e.interface in NETWORKED}
    assert networked == {e for e, x in eq.items() if x["time"] is not None}
    checked = 0
    for dev in sorted(networked):
        t, got = expected[dev], eq[dev]["time"]
        for b in BUCKETS:
            assert got[b] == pytest.approx(getattr(t, b), abs=1e-3), (dev, b)
        produced, good = parts[dev]
        assert (eq[dev]["parts"]["produced"], eq[dev]["parts"]["good"]) == (produced, good), dev
        ideal = next(e.ideal_cycle_time_s for e in SCENARIO.equipment if e.id == dev)
        p = performance(t, ideal_cycle_time_s=ideal, produced=produced, good=good)
        for name in ("availability", "effectiveness", "quality_ratio", "oee", "utilisation",
                     "mtbf_s", "mttr_s"):  # fmt: skip
            want = getattr(p, name)
            assert eq[dev][name] == (want if want is None else pytest.approx(want, rel=1e-9)), (
                dev,
                name,
            )
        checked += 1
    assert checked == len(networked) >= 11
    # the faults show as unknown time, never as stopped or running
    assert eq["cnc-03"]["time"]["unknown_s"] == pytest.approx(2 * H, abs=1e-3)
    # ht-01: 15:45-16:15 is all work time (the shift change has no break)
    assert eq["ht-01"]["time"]["unknown_s"] == pytest.approx(0.5 * H, abs=1e-3)
    gaps = [g for g in doc["quality"]["gaps"] if g["kind"] == "offline"]
    assert sorted(g["device"].split("/")[1] for g in gaps) == ["cnc-03", "ht-01"]
    # the plant ran, stopped as planned, broke down and was set up
    total = {b: sum(eq[d]["time"][b] for d in networked) for b in ("apt_s", "setup_s", "down_s")}
    assert all(v > 0 for v in total.values()), total
    # breaks (an hour on Saturday) are planned downtime; cnc-05's maintenance adds to it
    assert all(eq[d]["time"]["planned_downtime_s"] >= H for d in networked)
    maintenance = sum(
        r["seconds"] for r in truth
        if r["type"] == "state" and r["device"] == "cnc-05" and r["state"] == "PLANNED_STOP"
    ) - H  # fmt: skip
    assert maintenance >= 30 * 60
    assert eq["cnc-05"]["time"]["planned_downtime_s"] == pytest.approx(H + maintenance)

    # enterprise KPIs: sums of the truth's times and counts
    k = {x["id"]: x for x in doc["kpis"]}
    apt = sum(expected[d].apt_s for d in networked)
    known = sum(expected[d].known_pbt_s for d in networked)
    assert k["availability"]["value"] == pytest.approx(100 * apt / known, rel=1e-9)
    produced = sum(parts[d][0] for d in networked)
    good = sum(parts[d][1] for d in networked)
    assert k["quality_ratio"]["value"] == pytest.approx(100 * good / produced, rel=1e-9)
    assert k["quality_ratio"]["denominator"] == produced


def test_nc_and_networking_rates_equal_the_declared_and_measured_truth(plant: Any) -> None:
    db, truth = plant
    key_processes = {p.id for p in SCENARIO.processes if p.key}
    key = [e for e in SCENARIO.equipment if e.process in key_processes]
    networked = NETWORKED
    expected = expected_times(db, truth, SAT, SUN, NOW)
    for threshold in (0.8, 0.9):
        doc = report(db, SAT, SUN, NOW, coverage_threshold=threshold)
        k = {x["id"]: x for x in doc["kpis"]}
        declared = [e.id for e in key if e.nc]
        measured = [
            e.id for e in key
            if e.nc and e.interface in networked and expected[e.id].coverage >= threshold
        ]  # fmt: skip
        assert k["nc_rate_declared"]["value"] == pytest.approx(100 * len(declared) / len(key))
        assert k["nc_rate_measured"]["value"] == pytest.approx(100 * len(measured) / len(key))
        assert k["nc_rate_measured"]["inputs"] == sorted(measured)
    # cnc-03 was offline 2 h of its 16 h of planned time: 87.5 %, in at 80 %, out at 90 %
    assert expected["cnc-03"].coverage == pytest.approx(14 / 16)
    assert "cnc-03" not in k["nc_rate_measured"]["inputs"]
    assert (len(declared), len(key)) == (10, 12)  # as the scenario says: 83.3 %
    production = SCENARIO.equipment  # all production equipment in the demo registry
    on = [e for e in production if e.interface in networked]
    assert k["networking_rate"]["value"] == pytest.approx(100 * len(on) / len(production))


def test_energy_per_meter_and_in_tce_equal_the_truth(plant: Any) -> None:
    db, truth = plant
    doc = report(db, SAT, SUN, NOW)
    consumed = true_consumption(truth)
    meters = {m["id"]: m for m in doc["meters"]}
    assert set(meters) == {m.id for m in SCENARIO.meters}
    for m in SCENARIO.meters:
        reading = m.initial + consumed[m.id]
        assert meters[m.id]["quantity"] == pytest.approx(
            consumed[m.id], abs=resolution(m.id, reading)
        ), m.id
        assert meters[m.id]["coverage"] > 0.9, m.id
    # the counter anomalies the truth has, the report flagged
    rolled = {r["device"] for r in truth if r["type"] == "rollover"}
    assert "em-ht" in rolled
    flags = {(a["device"].split("/")[1], a["flag"]) for a in doc["quality"]["counter_anomalies"]}
    assert ("em-ht", "rollover") in flags
    assert ("em-assembly", "reset") in flags
    parts = {
        (a["device"].split("/")[1], a["tag"], a["flag"])
        for a in doc["quality"]["counter_anomalies"]
    }
    assert ("wash-01", "parts_completed", "rollover") in parts
    assert meters["em-assembly"]["resets"] == 1
    # comprehensive energy: the top-level meters, GB/T 2589 coefficients
    top = [m for m in SCENARIO.meters if not any(m.id in p.submeters for p in SCENARIO.meters)]
    coef = {"electricity": 0.1229, "gas": 1.2143}
    tce = sum(consumed[m.id] * coef[m.carrier.value] / 1000 for m in top
              if m.carrier.value in coef)  # fmt: skip
    tol = sum(resolution(m.id, m.initial + consumed[m.id]) * 1.3 / 1000 for m in top)
    k = {x["id"]: x for x in doc["kpis"]}
    assert k["energy_tce"]["value"] == pytest.approx(tce, abs=tol)
    assert sorted(k["energy_tce"]["inputs"]) == sorted(m.id for m in top if m.carrier.value in coef)
    # and the report verifies against the raw samples
    with psycopg.connect(db) as conn:
        v = verify(doc, conn=conn)
    assert [c for c in v.checks if not c.ok] == []
    assert v.digest_ok


def test_a_partial_period_and_single_days(plant: Any) -> None:
    db, truth = plant
    doc = report(db, SAT, SUN, AS_OF)
    assert doc["period"]["partial"] is True
    expected = expected_times(db, truth, SAT, SUN, AS_OF)
    eq = {e["id"]: e for e in doc["equipment"]}
    done = true_parts(truth, until=AS_OF.timestamp() - POLL_S)
    started: dict[str, int] = defaultdict(int)
    for r in truth:
        if r["type"] == "state" and parse_iso(r["start"]) < AS_OF.timestamp():
            started[r["device"]] += r["parts_completed"]
    for dev, t in expected.items():
        if eq[dev]["time"] is None:
            continue  # not networked: no state measured
        for b in BUCKETS:
            assert eq[dev]["time"][b] == pytest.approx(getattr(t, b), abs=1e-3), (dev, b)
        assert eq[dev]["time"]["calendar_s"] == pytest.approx(14 * H + 450)
        produced = eq[dev]["parts"]["produced"]
        assert done.get(dev, (0, 0))[0] <= produced <= started[dev], dev
    # each day alone: the state times add up to the two days'
    sat, sun = report(db, SAT, SAT, NOW), report(db, SUN, SUN, NOW)
    both = {e["id"]: e for e in report(db, SAT, SUN, NOW)["equipment"]}
    for e in sat["equipment"]:
        if e["time"] is None:
            continue
        s2 = next(x for x in sun["equipment"] if x["id"] == e["id"])
        for b in ("apt_s", "pbt_s", "unknown_s", "down_s", "setup_s", "idle_s"):
            assert e["time"][b] + s2["time"][b] == pytest.approx(
                both[e["id"]]["time"][b], abs=1e-3
            ), (e["id"], b)
        assert s2["time"]["pot_s"] == 0  # Sunday is not a working day


def test_every_kpi_recomputed_from_a_bundle_equals_the_report(plant: Any, tmp_path: Path) -> None:
    """The offline verifier's recomputation (evidence/offline/kpis.py: the bundle's samples
    through kpi/columnar.py, no database) gives the signed report's every figure, over
    the two days and over the partial period cut mid-shift."""
    db, _ = plant
    for as_of in (NOW, AS_OF):
        zipped = tmp_path / f"b-{as_of:%H%M}.zip"
        code, out = run("report", "--enterprise", ENT, "--from", str(SAT), "--to", str(SUN),
                        "--dsn", db, "--signing-key", str(tmp_path / "report.pem"),
                        "--out", str(tmp_path / "r.json"), "--as-of", as_of.isoformat(),
                        "--bundle", str(zipped))  # fmt: skip
        assert code == 0, out
        with zipfile.ZipFile(zipped) as z:
            files = {n: z.read(n) for n in z.namelist()}
        found = check_kpis(files)
        assert found.failures == [], found.failures[:5]
        assert found.details["figures_differ"] == 0
        doc = json.loads(files["report.json"])
        # one comparison per KPI; equipment, meter and origin figures count when they differ
        assert found.details["figures_compared"] == len(doc["kpis"])
        assert sum(e["time"] is not None for e in doc["equipment"]) > 3
