"""docs/agent.md cannot rot: its complete example passes `edge-agent check`, its umati
table is the agent's mapping, and its discover table names what discover recognises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edge_agent.cli import main as edge_agent
from edge_agent.config import load_config
from edge_agent.contract.yaml12 import load_yaml
from edge_agent.discover import UMATI_ROLES
from edge_agent.umati import ITEM_STATES, MODE_NAMES, default_state

DOC = Path(__file__).parents[2] / "docs" / "agent.md"


def section(title: str) -> str:
    """The text of a `## ` or `### ` section of docs/agent.md, up to the next heading."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"^##+ {re.escape(title)}\n(.*?)(?=^##+ )", text, re.S | re.M)
    assert m, f"docs/agent.md has no section {title!r}"
    return m.group(1)


def example_yaml() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", section("A complete example"), re.S | re.M)
    assert len(blocks) == 1, "the complete example is one ```yaml block"
    return str(blocks[0])


def test_the_complete_example_passes_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(example_yaml(), encoding="utf-8")
    key = tmp_path / "gateway.key"  # the file the example names, beside it
    key.write_text("0123456789abcdef0123456789abcdef\n")
    key.chmod(0o600)
    config = load_config(path)
    # one machine per protocol, each with a mapped state and a part counter
    assert sorted(d.protocol for d in config.devices) == ["modbus", "opcua"]
    for d in config.devices:
        tags = d.nodes if d.protocol == "opcua" else d.tags
        assert {t.role.value for t in tags} >= {"machine_state", "part_count_total"}, d.id
    assert edge_agent(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK: gateway acme/plant1/gw-01, 2 device(s)" in out


def test_the_example_overrides_are_valid_and_shown_by_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", section("Machine state"), re.S | re.M)
    [block] = blocks
    overrides = load_yaml(block.replace("nodes: [...]", ""))[0]["umati_states"]
    data = load_yaml(example_yaml())
    data["devices"][0]["umati_states"] = overrides
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    key = tmp_path / "gateway.key"
    key.write_text("k\n")
    key.chmod(0o600)
    assert edge_agent(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "cnc-01: umati states overridden: OutOfService/Service -> PLANNED_STOP, "
        "NotExecuting/Manual -> SETUP, NotAvailable/* -> DOWN"
    ) in out


def test_the_umati_table_is_the_agents_default_mapping() -> None:
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in section("Machine state").splitlines()
        if line.startswith("| ")
    ]
    header, body = rows[0], rows[1:]
    assert header[0] == "MachineryItemState"
    columns = [h.split(", ") for h in header[1:]]
    # every mode of OPC 40501 and OPC 40001 has exactly one column
    assert sorted(m for col in columns for m in col) == sorted(MODE_NAMES)
    assert [r[0] for r in body] == list(reversed(ITEM_STATES))
    for item, *cells in body:
        for modes, cell in zip(columns, cells, strict=True):
            for mode in modes:
                assert default_state(item, mode).value == cell, (item, mode)


def test_the_discover_table_names_every_browse_name_discover_recognises() -> None:
    text = section("Discover")
    for suffix, (tag, role, _unit) in UMATI_ROLES.items():
        assert "/".join(suffix) in text, suffix
        assert f"`{tag}`" in text
        assert f"`{role}`" in text
    for name in ("RunsCompleted", "MachineryOperationMode", "OperationMode"):
        assert name in text
