"""Agent config: the golden bad files, path resolution, secrets, and the demo config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import load_config, parse_config
from edge_agent.contract.secrets import ConfigError, read_secret
from edge_agent.contract.yaml12 import load_yaml
from simulators.agent_config import agent_config, dump_agent_config
from simulators.scenario import default_scenario_path, load_scenario

HERE = Path(__file__).parents[1] / "golden" / "agent_configs"
MINIMAL = HERE / "minimal.yaml"
BAD = sorted((HERE / "bad").glob("*.yaml"))


def test_minimal_config_is_valid() -> None:
    config = load_config(MINIMAL)
    assert [d.id for d in config.devices] == ["cnc-01", "em-main"]
    assert config.topic_prefix == "fe/v1/acme/plant1/gw-01"
    assert config.client_id == "fe-gw-01"
    # with a broker login, the client id is the login: a hardened broker binds the two
    with_login = config.model_copy(update={"mqtt": config.mqtt.model_copy(
        update={"username": "acme.plant1.gw-01"})})  # fmt: skip
    assert with_login.client_id == "acme.plant1.gw-01"
    modbus = config.devices[1]
    assert modbus.protocol == "modbus"
    # integer register codes arrive as text keys: the codec compares the code's text
    assert modbus.tags[2].state_map == {"0": "OFF", "1": "IDLE", "2": "RUNNING"}
    assert [t.count for t in modbus.tags] == [2, 2, 1]


def test_relative_paths_resolve_beside_the_config() -> None:
    config = load_config(MINIMAL)
    assert config.outbox.path == HERE / "outbox.db"
    assert config.mqtt.hmac_key_file == HERE / "gateway.key"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_config_names_file_path_and_fix(path: Path) -> None:
    expected = path.with_suffix(".expected").read_text(encoding="utf-8").strip().splitlines()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == expected
    message = str(info.value)
    assert message.startswith(f"{path}: invalid agent config")
    for line in expected:
        assert line in message


def test_every_bad_file_is_minimal_with_one_defect() -> None:
    """A bad case that differs from minimal.yaml in many places tests nothing precise."""
    minimal = MINIMAL.read_text(encoding="utf-8").splitlines()
    for path in BAD:
        lines = path.read_text(encoding="utf-8").splitlines()
        if path.stem in ("not_a_mapping", "bad_yaml", "no_devices"):
            continue
        removed = [x for x in minimal if x not in lines]
        added = [x for x in lines if x not in minimal]
        assert len(removed) <= 1, (path.name, removed)
        assert len(added) <= 3, (path.name, added)
        assert removed or added, path.name


def test_all_problems_are_reported_at_once() -> None:
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    data["mqtt"]["url"] = "http://x"
    data["devices"][1]["unit"] = 999
    data["devices"][0]["endpoint"] = "x"
    with pytest.raises(ConfigError) as info:
        parse_config(data, "inline")
    assert len(info.value.problems) == 3


def test_secret_file_must_be_private(tmp_path: Path) -> None:
    key = tmp_path / "gw.key"
    key.write_text("s3cret\n")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_secret(key, "HMAC key")
    key.chmod(0o600)
    assert read_secret(key, "HMAC key") == b"s3cret"
    with pytest.raises(ConfigError, match="cannot read the HMAC key"):
        read_secret(tmp_path / "missing.key", "HMAC key")
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        read_secret(empty, "HMAC key")


def test_committed_demo_agent_config_is_the_generated_one() -> None:
    scenario = load_scenario(default_scenario_path())
    committed = default_scenario_path().with_name("demo-agent.yaml").read_text(encoding="utf-8")
    assert committed == dump_agent_config(agent_config(scenario), scenario), (
        "regenerate: factory-sim agent-config --out simulators/scenarios/demo-agent.yaml"
    )


def test_demo_agent_config_covers_every_networked_device() -> None:
    scenario = load_scenario(default_scenario_path())
    config = load_config(default_scenario_path().with_name("demo-agent.yaml"))
    ids = {d.id for d in config.devices}
    for e in scenario.equipment:
        assert (e.id in ids) == (e.interface.value in ("opcua", "modbus_plc")), e.id
    for m in scenario.meters:
        assert m.id in ids
    opcua = [d for d in config.devices if d.protocol == "opcua"]
    assert len(opcua) == 8
    assert all(d.nodes[0].umati_operation_mode for d in opcua)


def test_umati_states_override_the_default_mapping_of_a_device() -> None:
    data = load_yaml(MINIMAL.read_text(encoding="utf-8"))
    data["devices"][0]["umati_states"] = {
        "OutOfService/Service": "PLANNED_STOP",
        "NotAvailable/*": "DOWN",
    }
    device = parse_config(data, "inline").devices[0]
    assert device.protocol == "opcua"
    assert device.umati_states == {"OutOfService/Service": "PLANNED_STOP", "NotAvailable/*": "DOWN"}
    # every bad key is named, each on its own line
    data["devices"][0]["umati_states"] = {"Running/Service": "DOWN", "OutOfService/Idle": "DOWN"}
    with pytest.raises(ConfigError) as info:
        parse_config(data, "inline")
    assert len(info.value.problems) == 2
    assert all(p.startswith("devices[0].umati_states: ") for p in info.value.problems)
