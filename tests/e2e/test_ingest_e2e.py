"""The whole pipeline on this machine: simulators -> agent -> Mosquitto -> server ->
PostgreSQL, compared with what the agent published and with the simulator's truth.

The plant runs in real time (the agent stamps Modbus values with its own clock) with
spans of seconds instead of minutes, around the clock, so a minute shows every state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections import Counter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from edge_agent.config import load_config
from ingest_server.kpi.equipment import segments_of
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.timemodel import Interval, time_model
from ingest_server.repo.registry import import_registry, load_registry
from simulators.cli import free_ports
from simulators.clock import ScaledClock
from simulators.runtime import FactorySim
from simulators.scenario import Behaviour, Scenario, Shift, default_scenario_path, load_scenario
from simulators.truth import parse_iso, read_truth
from tests.harness.agent import Collector, running_agent, sim_agent_config
from tests.harness.broker import Broker
from tests.harness.ingest import dump
from tests.ingest.test_consumer import running_consumer, wait_until

pytestmark = pytest.mark.slow
REGISTRY = default_scenario_path().with_name("demo-registry.yaml")
RUN_S = 75


def fast_plant() -> Scenario:
    """The demo plant working around the clock, with spans of seconds."""
    demo = free_ports(load_scenario(default_scenario_path()))
    calendar = demo.calendar.model_copy(
        update={
            "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
            "holidays": [],
            "shifts": [Shift(name="all", start="00:00", end="00:00")],
        }
    )
    fast = Behaviour(
        run_min=(0.1, 0.3),
        idle_min=(0.05, 0.15),
        setup_min=(0.05, 0.1),
        mtbf_h=0.01,
        mttr_min=0.1,
        changeover_per_run=0.2,
        planned_stop_per_shift=0.0,
    )
    equipment = [e.model_copy(update={"behaviour": fast}) for e in demo.equipment]
    return demo.model_copy(update={"calendar": calendar, "equipment": equipment})


def truth_changes(truth: Path) -> dict[str, list[tuple[float, str]]]:
    """Each device's changes of state. The simulator's schedule is made one local day at a
    time, so a state running across local midnight is two spans of one state: no change a
    machine could show, and none is expected."""
    out: dict[str, list[tuple[float, str]]] = {}
    for rec in read_truth(truth):
        if rec["type"] == "state":
            changes = out.setdefault(rec["device"], [])
            if not changes or changes[-1][1] != rec["state"]:
                changes.append((parse_iso(rec["start"]), rec["state"]))
    return out


def truth_spans(truth: Path) -> dict[str, list[tuple[float, float, str]]]:
    out: dict[str, list[tuple[float, float, str]]] = {}
    for rec in read_truth(truth):
        if rec["type"] == "state":
            out.setdefault(rec["device"], []).append(
                (parse_iso(rec["start"]), parse_iso(rec["end"]), rec["state"])
            )
    return out


def db_changes(dsn: str) -> dict[str, list[tuple[float, str]]]:
    out: dict[str, list[tuple[float, str]]] = {}
    for device, start, state in dump(
        dsn,
        "SELECT device, extract(epoch FROM start)::float8, state FROM state_intervals "
        "ORDER BY device, start",
    ):
        out.setdefault(device, []).append((start, state))
    return out


def matched(t: float, st: str, pts: list[tuple[float, str]], sign: int, late: float) -> bool:
    """A change to `st` in `pts` from 2 ms before to `late` after t (sign +1), or before
    (sign -1)."""
    return any(s2 == st and -0.002 <= sign * (t2 - t) <= late for t2, s2 in pts)


async def test_the_database_holds_exactly_what_was_published_and_states_match_the_truth(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    scenario = fast_plant()
    truth = tmp_path / "truth.jsonl"
    sim = FactorySim(scenario, ScaledClock(), truth_path=truth, tick_s=0.1)
    await sim.start()
    try:
        config, key = sim_agent_config(scenario, sim, broker, tmp_path / "agent")
        keyfile = tmp_path / "agent" / "gateway.key"
        with psycopg.connect(db) as conn:
            import_registry(conn, load_registry(REGISTRY), {"gw-01": keyfile.read_bytes().strip()})
        collector = Collector(broker, key)
        try:
            with running_consumer(db, broker) as consumer:
                async with running_agent(config):
                    await asyncio.sleep(RUN_S)
                published = collector.samples()
                await asyncio.to_thread(
                    wait_until,
                    lambda: (
                        consumer.counters.samples_new + consumer.counters.samples_repeated
                        >= len(published)
                    ),
                    30,
                    "every published sample",
                )
        finally:
            collector.close()
    finally:
        await sim.stop()
    assert collector.errors == []
    assert consumer.counters.dead_letters == 0

    # values and counts per tag: the rows are exactly the published samples
    def key_of(d: str, t: str, ts: float, v: Any) -> tuple[str, str, float, Any]:
        return (d, t, round(ts, 3), v)

    want = {key_of(x["d"], x["t"], x["ts"] / 1000, x["v"]) for x in published}
    rows = dump(
        db,
        "SELECT se.device, se.tag, extract(epoch FROM s.ts)::float8, "
        "coalesce(to_jsonb(s.text), to_jsonb(s.value)) "
        "FROM samples s JOIN series se USING (series_id)",
    )
    got = [key_of(d, t, ts, v) for d, t, ts, v in rows]
    assert len(got) == len(set(got))
    assert set(got) == want
    per_tag = Counter((d, t) for d, t, _, _ in got)
    assert len(per_tag) >= 8 * 6 + 30
    # every device of the agent's config, registered from its birth
    assert dump(db, "SELECT count(*) FROM devices") == [(len(load_config(config).devices),)]

    # state intervals: OPC UA states carry the machine's time, so the change points are
    # the truth's exactly; Modbus states are stamped by the gateway's clock when polled
    # (every 0.2 s), and the sim's clock runs `offset` behind the wall clock (it starts on
    # a whole second): Modbus truth times are moved onto the wall clock, and a change is
    # seen between its wall time and the next poll (plus a little scheduling)
    truth_by_device = truth_changes(truth)
    measured = db_changes(db)
    opcua = {m for srv in scenario.opcua_servers for m in srv.machines}
    plc = {e.id for e in scenario.equipment if e.interface.value == "modbus_plc"}
    offset = time.time() - sim.clock.now()
    checked = 0
    for device in sorted(opcua | plc):
        mine = measured[device]
        shift, late = (0.0, 0.002) if device in opcua else (offset, 0.6)
        # every truth change inside the measured window (away from its edges: the first
        # interval starts when the agent first read the machine) was measured, with its
        # state, at its time or up to `late` after; and every measured change was one
        truth_pts = [(t + shift, st) for t, st in truth_by_device[device]]
        lo, hi = mine[0][0] + late, mine[-1][0] - late

        for t, st in truth_pts:
            if lo < t < hi:
                assert matched(t, st, mine, +1, late), (device, "not measured", t, st)
        db_pts = [(t, st) for t, st in mine if lo + late < t < hi]
        for t, st in db_pts:
            assert matched(t, st, truth_pts, -1, late), (device, "not in the truth", t, st)
        checked += len(db_pts)
    assert checked > 40, "a minute of a fast plant has many state changes"

    # the KPI engine's inputs from these rows: each machine's ISO 22400 time buckets over
    # the measured window equal the truth's, within the same timing tolerance per change
    spans = truth_spans(truth)
    now = dt.datetime.now(dt.UTC)
    local_today = now.astimezone(ZoneInfo(scenario.site.timezone)).date()
    with psycopg.connect(db) as conn:
        inputs = fetch_inputs(
            conn, scenario.enterprise.id, local_today - dt.timedelta(days=1), local_today, now
        )
    segments = segments_of(inputs.sites[0])
    by_device = {dev[1]: ivs for dev, ivs in inputs.intervals.items()}
    for device in sorted(opcua | plc):
        shift, late = (0.0, 0.002) if device in opcua else (offset, 0.6)
        truth_ivs = [Interval(a + shift, b + shift, st) for a, b, st in spans[device]]
        a = by_device[device][0].start + late
        # up to when both watched the machine: the truth ends when the simulator stops,
        # the measurement when the agent does (then the device shows OFFLINE); and a change
        # in the server's last publishing interval (0.5 s) may never be sent before it
        # stops. The last second is left out.
        seen = max(iv.end for iv in by_device[device] if iv.state not in ("OFFLINE", "NO_DATA"))
        b = min(truth_ivs[-1].end, seen) - 1.0
        got = time_model(a, b, by_device[device], segments)
        want = time_model(a, b, truth_ivs, segments)
        changes = sum(a < iv.start < b for iv in truth_ivs)
        tol = (changes + 1) * late
        for bucket in ("apt_s", "setup_s", "idle_s", "down_s", "unknown_s", "running_s"):
            assert abs(getattr(got, bucket) - getattr(want, bucket)) <= tol, (
                device,
                bucket,
                getattr(got, bucket),
                getattr(want, bucket),
                tol,
            )
        assert got.running_s > 0, device
