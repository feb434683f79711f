"""The registry file: validation with errors that say what to fix, and import (upsert)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ingest_server.registry import RegistryError, import_registry, load_registry
from simulators.agent_config import dump_registry, registry
from simulators.scenario import default_scenario_path, load_scenario
from tests.ingest_harness import dump

DEMO = default_scenario_path().with_name("demo-registry.yaml")


def test_the_committed_demo_registry_is_the_generators_output() -> None:
    scenario = load_scenario(default_scenario_path())
    assert DEMO.read_text(encoding="utf-8") == dump_registry(registry(scenario), scenario), (
        "regenerate: factory-sim registry --out simulators/scenarios/demo-registry.yaml"
    )


def test_the_demo_registry_imports_and_a_second_import_changes_nothing(db: str) -> None:
    reg = load_registry(DEMO)
    with psycopg.connect(db) as conn:
        counts = import_registry(conn, reg, {"gw-01": b"k" * 32})
        before = dump(db, "SELECT * FROM equipment ORDER BY id")
        import_registry(conn, reg, {})  # no key given: the stored one stays
    assert counts == {"enterprises": 1, "sites": 1, "gateways": 1, "equipment": 15, "meters": 9}
    assert dump(db, "SELECT * FROM equipment ORDER BY id") == before
    assert dump(db, "SELECT hmac_key IS NOT NULL FROM gateways") == [(True,)]
    # declared: 10 NC of 12 key-process machines (the scenario's comment)
    assert dump(
        db,
        "SELECT count(*) FILTER (WHERE e.nc), count(*) FROM equipment e "
        "JOIN processes p ON p.enterprise_id = e.enterprise_id AND p.id = e.process_id "
        "WHERE p.key_process",
    ) == [(10, 12)]
    networked = dump(db, "SELECT id FROM equipment WHERE device IS NOT NULL ORDER BY id")
    assert ("cnc-08",) not in networked
    assert ("grd-02",) not in networked  # seen only through its meter


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("enterprises: []", "enterprises: List should have at least 1 item"),
        (
            "enterprises: [{id: a, name: A, sites: [{id: s, name: S, equipment: "
            "[{id: m1, name: M, process: nope, nc: true}]}]}]",
            "equipment m1: process 'nope' is not among processes []",
        ),
        (
            "enterprises: [{id: a, name: A, processes: [{id: p, name: P, key: true}], sites: "
            "[{id: s, name: S, equipment: [{id: m1, name: M, process: p, nc: true, "
            "device: d1}]}]}]",
            "a device needs its gateway",
        ),
        (
            "enterprises: [{id: A B, name: A, sites: [{id: s, name: S}]}]",
            "enterprises[0].id",
        ),
        ("enterprises: [{id: a, name: A, sites: [{id: s, name: S}]}", "line 1"),
    ],
)
def test_bad_registry_files_name_the_problem(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_registry(path)
    assert problem in str(info.value)
    assert str(path) in str(info.value)
