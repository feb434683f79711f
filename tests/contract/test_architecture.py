"""The import contracts in pyproject.toml ([tool.importlinter], run by `make lint`) cover
the whole agent: a module added to edge_agent is forbidden to the server until it is
put in edge_agent.contract or named here."""

from __future__ import annotations

import pkgutil
import tomllib
from pathlib import Path

import edge_agent

ROOT = Path(__file__).resolve().parents[2]


def contracts() -> list[dict]:
    doc = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return doc["tool"]["importlinter"]["contracts"]


def agent_modules_outside_the_contract() -> set[str]:
    return {
        f"edge_agent.{m.name}"
        for m in pkgutil.iter_modules(edge_agent.__path__)
        if m.name != "contract"
    }


def test_the_server_is_forbidden_every_agent_module_but_the_contract() -> None:
    (server,) = [c for c in contracts() if c.get("source_modules") == ["ingest_server"]]
    assert server["type"] == "forbidden"
    assert set(server["forbidden_modules"]) == agent_modules_outside_the_contract()


def test_the_contract_is_forbidden_the_rest_of_the_agent() -> None:
    (alone,) = [c for c in contracts() if c.get("source_modules") == ["edge_agent.contract"]]
    forbidden = set(alone["forbidden_modules"])
    assert agent_modules_outside_the_contract() <= forbidden
    assert {"ingest_server", "simulators"} <= forbidden


def test_every_server_package_is_in_a_layer() -> None:
    (layers,) = [c for c in contracts() if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    packages = {
        f"ingest_server.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "ingest_server")])
    }
    assert packages == named, "a module of ingest_server/ outside the layers is not checked"
