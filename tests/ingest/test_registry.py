"""The registry file: validation with errors that say what to fix, and import (upsert)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ingest_server.repo.registry import RegistryError, import_registry, load_registry
from simulators.agent_config import dump_registry, registry
from simulators.scenario import default_scenario_path, load_scenario
from tests.harness.ingest import dump

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


def _site_file(tmp_path: Path, site: str) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(
        "enterprises: [{id: a, name: A, processes: [{id: p, name: P, key: true}], sites: "
        f"[{{id: s, name: S, {site}}}]}}]",
        encoding="utf-8",
    )
    return path


def test_an_unknown_grid_region_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    from ingest_server.reference.factors import grid_regions  # noqa: PLC0415

    with pytest.raises(RegistryError) as info:
        load_registry(_site_file(tmp_path, "grid_region: hefei"))
    text = str(info.value)
    assert "sites[0].grid_region" in text
    assert "grid_region 'hefei' is not a grid region of emission factor table" in text
    known = grid_regions()
    assert {"national", "east_china", "anhui"} <= set(known)
    assert f"use one of: {', '.join(known)}" in text
    assert load_registry(_site_file(tmp_path, "grid_region: east_china")).enterprises[0]


def test_two_meters_on_one_device_and_carrier_are_refused(tmp_path: Path) -> None:
    meters = (
        "gateways: [{id: gw}], meters: ["
        "{id: em-a, carrier: electricity, unit: kWh, gateway: gw, device: pm1},"
        "{id: em-b, carrier: electricity, unit: kWh, gateway: gw, device: pm1},"
        "{id: wm, carrier: water, unit: m3, gateway: gw, device: pm1}]"
    )
    with pytest.raises(RegistryError) as info:
        load_registry(_site_file(tmp_path, meters))
    text = str(info.value)
    assert "meters em-a and em-b both read the energy_kwh counter of device pm1 on gw" in text
    assert "wm" not in text  # another carrier on the same device is another counter


def test_a_meter_on_a_device_with_two_tags_of_its_role_is_refused(tmp_path: Path, db: str) -> None:
    meters = (
        "gateways: [{id: gw}], meters: ["
        "{id: em, carrier: electricity, unit: kWh, gateway: gw, device: pm1},"
        "{id: wm, carrier: water, unit: m3, gateway: gw, device: pm1}]"
    )
    reg = load_registry(_site_file(tmp_path, meters))
    with psycopg.connect(db) as conn:
        import_registry(conn, reg, {})
        # the gateway's birth announced the device: an energy and a water counter is fine
        conn.execute(
            "INSERT INTO series (gid, device, tag, role) SELECT gid, 'pm1', t, r FROM gateways,"
            " (VALUES ('kwh_import', 'energy_kwh'), ('water', 'water_m3')) v(t, r)"
        )
        conn.commit()
        import_registry(conn, reg, {})
        conn.execute(
            "INSERT INTO series (gid, device, tag, role) "
            "SELECT gid, 'pm1', 'kwh_export', 'energy_kwh' FROM gateways"
        )
        conn.commit()
        with pytest.raises(ValueError, match="meter em") as info:
            import_registry(conn, reg, {})
    text = str(info.value)
    assert "device pm1 on gw has 2 energy_kwh tags (kwh_export, kwh_import)" in text
    assert "wm" not in text
