"""`make demo` runs the whole pipeline: started, summarised, stopped cleanly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_the_demo_runs_the_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "simulators.demo", "--workdir", str(tmp_path / "demo"),
         "--duration", "20", "--every", "4", "--history-days", "0.25"],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    stored = [int(n.replace(",", "")) for n in re.findall(r"([\d,]+) stored", out)]
    assert len(stored) >= 3, out
    assert stored[-1] > stored[0] > 0, "samples keep arriving"
    online = re.findall(r"(\d+)/(\d+) devices online", out)
    assert online[-1][0] == online[-1][1] != "0", out
    states = re.findall(
        r"(RUNNING|IDLE|SETUP|DOWN|PLANNED_STOP|OFF|OFFLINE|UNKNOWN) ([a-z0-9 -]+)", out
    )
    assert any("cnc-01" in devices.split() for _, devices in states), out  # live states
    assert not any("em-main" in devices.split() for _, devices in states), "meters have none"
    assert "0 dead letters" in out
    # six hours of the plant's past went in first, through the agent's outbox
    backfilled = re.search(r"backfill \S+: (\d+) samples in \d+ batches", out)
    assert backfilled, out
    assert stored[0] >= int(backfilled.group(1)), "the past is stored before the live data"
    # the API with a login per role; the passwords kept for the next run, private
    assert re.search(r"API +http://127\.0\.0\.1:\d+/docs", out), out
    logins = json.loads((tmp_path / "demo" / "logins.json").read_text())
    assert sorted(logins) == ["demo-admin", "demo-enterprise", "demo-verifier"]
    assert all(f"{name:<16} {pw}" in out for name, pw in logins.items())
    assert (tmp_path / "demo" / "logins.json").stat().st_mode & 0o777 == 0o600
    for name in ("ingest-api", "edge-agent", "ingest-server", "factory-sim", "mosquitto"):
        assert f"stopped {name}" in out
    assert "killed" not in out, "every process stops on SIGTERM"
