"""factory-sim as a user runs it: a separate process, its control API, check and history."""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from simulators.scenario import default_scenario_path, load_scenario
from simulators.truth import parse_iso, read_truth

SIM = [sys.executable, "-m", "simulators.cli"]


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def http(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_check_summarises_the_demo() -> None:
    res = run_cli("check", str(default_scenario_path()))
    assert res.returncode == 0, res.stderr
    assert "declared key-process NC rate: 10/12" in res.stdout
    assert "Modbus meter-gateway" in res.stdout


def test_check_names_the_field_and_exits_2(tmp_path: Path) -> None:
    bad = (
        default_scenario_path()
        .read_text(encoding="utf-8")
        .replace("cycle_time_s: 96", "cycle_time_s: -96", 1)
    )
    path = tmp_path / "bad.yaml"
    path.write_text(bad, encoding="utf-8")
    res = run_cli("check", str(path))
    assert res.returncode == 2
    assert f"{path}: invalid scenario" in res.stderr
    assert "equipment[0].cycle_time_s" in res.stderr


def test_bad_fault_spec_exits_2() -> None:
    res = run_cli("--free-ports", "--fault", "explode:cnc-01")
    assert res.returncode == 2
    assert "unknown fault kind 'explode'" in res.stderr


def test_run_serves_obeys_control_api_and_stops_cleanly(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    truth = tmp_path / "truth.jsonl"
    proc = subprocess.Popen(
        [
            *SIM,
            "--free-ports",
            "--speed",
            "30",
            "--truth",
            str(truth),
            "--control-port",
            "0",
            "--ready-file",
            str(ready),
            "--fault",
            "offline:cnc-01:60@0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the simulator did not become ready"
            time.sleep(0.1)
        endpoints = json.loads(ready.read_text(encoding="utf-8"))
        assert set(endpoints["opcua"]) == {"opc-turning", "opc-milling"}
        assert all(u.startswith("opc.tcp://127.0.0.1:") for u in endpoints["opcua"].values())
        assert set(endpoints["modbus"]) == {"plc-gateway", "meter-gateway"}
        control = endpoints["control"]

        status, body = http(f"{control}/status")
        assert status == 200
        assert body["scenario"] == "demo-machining"
        status, body = http(f"{control}/faults", {"kind": "reset", "target": "em-main"})
        assert (status, body) == (200, {"ok": True})
        status, body = http(f"{control}/faults", {"kind": "freeze", "target": "nope", "seconds": 5})
        assert status == 400
        assert "not a meter id" in body["error"]
        status, body = http(f"{control}/nothing")
        assert status == 404
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "OPC UA opc-turning: opc.tcp://127.0.0.1:" in out
    records = list(read_truth(truth))
    assert records[-1]["type"] == "summary"
    kinds = {(r["kind"], r["device"]) for r in records if r["type"] == "fault"}
    assert ("offline", "cnc-01") in kinds
    assert ("counter_reset", "em-main") in kinds


def test_history_matches_its_truth(tmp_path: Path) -> None:
    out = tmp_path / "history.jsonl.gz"
    truth = tmp_path / "truth.jsonl"
    res = run_cli(
        "history",
        "--days",
        "1",
        "--end",
        "2026-11-24T00:00:00+08:00",
        "--interval",
        "300",
        "--out",
        str(out),
        "--truth",
        str(truth),
    )
    assert res.returncode == 0, res.stderr
    with gzip.open(out, "rt", encoding="utf-8") as f:
        samples = [json.loads(line) for line in f]
    records = list(read_truth(truth))
    scenario = load_scenario(default_scenario_path())

    devices = {s["d"] for s in samples}
    assert "cnc-08" not in devices, "a machine that is not networked delivers nothing"
    assert "drill-01" not in devices  # meter_only: seen through em-drill-01
    assert {"cnc-01", "ht-01", "em-main", "wm-main", "gm-main"} <= devices

    end = parse_iso("2026-11-24T00:00:00+08:00")
    assert len({(s["d"], s["t"], s["ts"]) for s in samples}) == len(samples), "no repeats"
    times = [parse_iso(s["ts"]) for s in samples]
    assert times == sorted(times), "in time order"

    # every state span of a networked machine appears as a state sample at its exact
    # start; every poll (every 300 s, and at the end) reads the state too, the heartbeat
    # that tells a long OFF span from a silent gateway; each state sample shows the state
    # of the span it falls in
    networked = {e.id for e in scenario.equipment if e.interface in ("opcua", "modbus_plc")}
    spans = defaultdict(list)
    for r in records:
        if r["type"] == "state" and r["device"] in networked:
            spans[r["device"]].append((parse_iso(r["start"]), parse_iso(r["end"]), r["state"]))
    states: dict[str, dict[float, str]] = defaultdict(dict)
    for s in samples:
        if s["t"] == "state":
            states[s["d"]][parse_iso(s["ts"])] = s["v"]
    assert set(states) == networked
    polls = {end - 86_400 + 300 * i for i in range(289)}
    for device, expected in spans.items():
        mine = states[device]
        assert {start: st for start, _, st in expected}.items() <= mine.items(), device
        assert polls <= set(mine), device
        assert len(mine) > len(expected) + 200, device
        for t, st in mine.items():
            if t < end:  # the truth covers [start, end)
                assert [s for a, b, s in expected if a <= t < b] == [st], (device, t, st)
    # a PLC's running and alarm bits are read with its state, and agree with it
    bits = [s for s in samples if s["t"] in ("running", "alarm")]
    assert {s["d"] for s in bits} == {"ht-01", "wash-01", "press-01"}
    for s in bits:
        on = states[s["d"]][parse_iso(s["ts"])] == ("RUNNING" if s["t"] == "running" else "DOWN")
        assert s["v"] == int(on), s

    # a meter's samples rise by its truth consumption (em-main: u32 at 0.1 kWh, no wrap)
    em_main = sorted(
        (s["ts"], s["v"]) for s in samples if s["d"] == "em-main" and s["t"] == "energy_kwh"
    )
    consumed = sum(
        r["consumed"] for r in records if r["type"] == "meter_hour" and r["device"] == "em-main"
    )
    assert em_main[-1][1] - em_main[0][1] == pytest.approx(consumed, abs=0.2)
    assert parse_iso(em_main[-1][0]) - parse_iso(em_main[0][0]) == 86_400


def test_a_taken_port_is_reported_not_a_traceback() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_cli("--free-ports", "--control-port", str(port), "--duration", "1")
    assert res.returncode == 1
    assert "a port is already taken" in res.stderr
    assert "Traceback" not in res.stderr
