"""`edge-agent backfill`: a simulated day of history through the agent's outbox, a real
Mosquitto and the real ingestion server into PostgreSQL, sample for sample; and a
history the config does not cover refused before anything is published."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.backfill import Backfill, BackfillInterruptedError
from edge_agent.cli import main
from edge_agent.config import load_config
from edge_agent.outbox import Outbox
from simulators.agent_config import agent_config
from simulators.history import write_history
from simulators.scenario import default_scenario_path, load_scenario
from simulators.truth import parse_iso, read_truth
from tests.harness.agent import Collector
from tests.harness.backfill import history_agent_config, load_history
from tests.harness.broker import Broker
from tests.harness.ingest import dump
from tests.harness.netutil import free_port

# a local midnight in Asia/Shanghai starting a working day (Wednesday 2026-11-25)
MIDNIGHT = parse_iso("2026-11-24T16:00:00Z")

Key = tuple[str, str, int]  # device, tag, ms


def history_samples(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path) as f:
        return [json.loads(line) for line in f]


def number_or_text(v: Any) -> float | str:
    return v if isinstance(v, str) else float(v)


def test_history_tags_are_those_of_the_agent_config(tmp_path: Path) -> None:
    scenario = load_scenario(default_scenario_path())
    config = agent_config(scenario)
    want = {
        (d["id"], t["tag"], t["role"])
        for d in config["devices"]
        for t in d.get("nodes", d.get("tags"))
    }
    out = tmp_path / "history.jsonl.gz"
    write_history(scenario, start=MIDNIGHT, end=MIDNIGHT + 3600, out=out, truth=None)
    assert {(s["d"], s["t"], s["role"]) for s in history_samples(out)} == want


async def test_a_day_of_history_is_stored_exactly_through_the_outbox(
    db: str, broker: Broker, tmp_path: Path
) -> None:
    scenario = load_scenario(default_scenario_path())
    t0 = time.monotonic()
    truth = await load_history(db, broker, tmp_path, scenario, MIDNIGHT, MIDNIGHT + 86_400)
    elapsed = time.monotonic() - t0
    samples = history_samples(tmp_path / "history.jsonl.gz")

    want: dict[Key, float | str] = {
        (s["d"], s["t"], round(parse_iso(s["ts"]) * 1000)): number_or_text(s["v"]) for s in samples
    }
    assert len(want) == len(samples), "the history itself has no repeats"
    rows = dump(
        db,
        "SELECT se.device, se.tag, round(extract(epoch FROM s.ts) * 1000)::bigint, "
        "s.value, s.text, s.quality FROM samples s JOIN series se USING (series_id)",
    )
    got: dict[Key, float | str] = {}
    for device, tag, ts_ms, value, text, quality in rows:
        assert quality == 0, (device, tag, ts_ms)
        got[(device, tag, ts_ms)] = text if text is not None else value
    assert len(rows) == len(got), "no sample stored twice"
    assert sorted(set(want) - set(got))[:5] == [], "history samples missing in the database"
    assert sorted(set(got) - set(want))[:5] == [], "samples in the database not in the history"
    assert got == want
    assert dump(db, "SELECT count(*) FROM dead_letters") == [(0,)]

    # one new boot, batches numbered from 1 without gaps, each sample in exactly one
    batches = dump(db, "SELECT boot, seq, samples FROM batches ORDER BY boot, seq")
    assert {b for b, _, _ in batches} == {1}
    assert [seq for _, seq, _ in batches] == list(range(1, len(batches) + 1))
    assert sum(n for _, _, n in batches) == len(samples)
    # the birth came first: every series has the role the history (and config) gives it
    series = dump(db, "SELECT device, tag, role FROM series WHERE tag <> '_status'")
    roles = {(d, t): role for d, t, role in series}
    assert roles == {(s["d"], s["t"]): s["role"] for s in samples}

    # the history: a state heartbeat at every poll for every networked machine, and a
    # state sample at the exact start of every span the truth records
    networked = {e.id for e in scenario.equipment if e.interface.value in ("opcua", "modbus_plc")}
    polls = {round((MIDNIGHT + 60 * i) * 1000) for i in range(1441)}
    states = {(d, ms): v for (d, t, ms), v in want.items() if t == "state"}
    for device in networked:
        assert {ms for d, ms in states if d == device} >= polls, device
    starts = [r for r in read_truth(truth) if r["type"] == "state" and r["device"] in networked]
    assert len(starts) > 100
    for r in starts:
        assert states[(r["device"], round(parse_iso(r["start"]) * 1000))] == r["state"], r
    print(f"{len(samples)} samples backfilled and stored in {elapsed:.1f} s")


def test_an_unknown_device_exits_2_naming_it_and_publishes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = load_scenario(default_scenario_path())
    # no broker: the backfill must stop before it connects (or opens its outbox)
    config, _ = history_agent_config(scenario, "mqtt://127.0.0.1:9", tmp_path / "agent")
    history = tmp_path / "history.jsonl"
    good = {"d": "cnc-01", "t": "state", "role": "machine_state", "ts": "2026-11-24T16:00:00Z"}
    lines = [
        good | {"v": "OFF", "q": "good"},
        good | {"d": "cnc-99", "v": "RUNNING", "q": "good"},
        good | {"t": "coolant_temp", "role": "generic", "v": 21.5},
    ]
    history.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")

    assert main(["backfill", "--config", str(config), str(history)]) == 2
    err = capsys.readouterr().err
    assert f"{history}: does not fit the agent config {config}" in err
    assert "device 'cnc-99' (tag 'state'): 1 sample(s), first at line 2" in err
    assert "tag 'coolant_temp' of 'cnc-01': 1 sample(s), first at line 3" in err
    assert "factory-sim agent-config" in err
    assert not (config.parent / "outbox.db").exists(), "refused before the outbox is opened"


async def test_a_stopped_backfill_leaves_its_batches_for_the_next_start(
    broker: Broker, tmp_path: Path
) -> None:
    scenario = load_scenario(default_scenario_path())
    history = tmp_path / "history.jsonl"  # plain, not gzip
    write_history(scenario, start=MIDNIGHT, end=MIDNIGHT + 3600, out=history, truth=None)
    samples = history_samples(history)
    # first with no broker: everything is sealed, nothing acknowledged, then stopped
    nobody = f"mqtt://127.0.0.1:{free_port()}"
    config, key = history_agent_config(
        scenario, nobody, tmp_path / "agent", mqtt={"batch_max_samples": 500}
    )
    first = Backfill(load_config(config), history)
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    for _ in range(400):  # 20 s
        if first.samples == len(samples):
            break
        await asyncio.sleep(0.05)
    stop.set()
    with pytest.raises(BackfillInterruptedError, match="11 batch\\(es\\) left in the outbox"):
        await asyncio.wait_for(task, 10)
    with Outbox(config.parent / "outbox.db", max_bytes=2**30, max_age_s=1e9) as outbox:
        assert outbox.stats().samples == len(samples)

    # then with the broker: the next start publishes both boots, the birth first
    data = json.loads(config.read_text(encoding="utf-8"))
    data["mqtt"]["url"] = f"mqtt://{broker.host}:{broker.port}"
    config.write_text(json.dumps(data), encoding="utf-8")
    collector = Collector(broker, key)
    try:
        second = await Backfill(load_config(config), history).run()
        assert (second.boot, second.batches, second.samples) == (2, 11, len(samples))
        await collector.wait_for(lambda c: len(c.batches()) >= 22, 10, "22 batches")
        await asyncio.sleep(0.2)  # nothing more comes
    finally:
        collector.close()
    assert collector.errors == []
    kinds = [t.rsplit("/", 1)[1] for t, _ in collector.messages]
    assert kinds[:2] == ["birth", "status"]
    assert kinds[2:].count("data") == 22
    boots: dict[int, list[tuple[str, str, int, Any]]] = {1: [], 2: []}
    for b in sorted(collector.batches(), key=lambda b: (b["boot"], b["seq"])):
        boots[b["boot"]] += [(x["d"], x["t"], x["ts"], x["v"]) for x in b["samples"]]
    want = [
        (s["d"], s["t"], round(parse_iso(s["ts"]) * 1000), number_or_text(s["v"])) for s in samples
    ]
    assert boots[1] == want
    assert boots[2] == want
