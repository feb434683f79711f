"""`edge-agent check`: the read plan on success, every problem on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import main
from simulators.agent_config import agent_config, dump_agent_config
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.agent import write_key

BAD = Path(__file__).parents[1] / "golden" / "agent_configs" / "bad"


def demo_config(tmp_path: Path) -> Path:
    scenario = load_scenario(default_scenario_path())
    path = tmp_path / "agent.yaml"
    path.write_text(dump_agent_config(agent_config(scenario), scenario), encoding="utf-8")
    (tmp_path / "keys").mkdir()
    write_key(tmp_path / "keys" / "gateway.key")
    return path


def test_check_prints_the_read_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = demo_config(tmp_path)
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: OK: gateway hf-precision/hf-plant1/gw-01, 21 device(s)")
    plan = {line.split(":")[0].strip(): line.strip() for line in out[1:]}
    # ht-01: state at 0 and two u32 counters at 10-13 fit one request (gap 9 <= 10),
    # plus one request for the two discrete inputs; press-01 spans 40001-40013
    assert plan["ht-01"].startswith("ht-01: 2 requests cover 14 registers and 2 bits (unit 1")
    assert plan["press-01"].startswith("press-01: 2 requests cover 13 registers and 1 bit")
    assert plan["em-assembly"].startswith("em-assembly: 1 request covers 6 registers")
    assert plan["cnc-01"].startswith("cnc-01: 6 nodes by subscription")


def test_check_refuses_a_key_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo_config(tmp_path)
    (tmp_path / "keys" / "gateway.key").chmod(0o644)
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert "gateway.key" in err
    assert "chmod 600" in err


def test_check_reports_a_bad_file_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    path = BAD / "modbus_overlap.yaml"
    assert main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err
    assert "devices[1]: tags 'energy' and 'power' both use holding address 1" in err


def test_run_refuses_a_bad_file_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(BAD / "mqtt_url_scheme.yaml")]) == 2
    assert "is not an MQTT URL" in capsys.readouterr().err


def test_run_stops_with_a_clear_error_when_the_outbox_is_not_ours(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = demo_config(tmp_path)
    outbox = tmp_path / "var" / "outbox.db"
    outbox.parent.mkdir()
    outbox.write_text("operator notes, not a database\n" * 50)
    assert main(["run", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{outbox}: not a usable outbox" in err
    assert outbox.read_text().startswith("operator notes")  # left as it was
