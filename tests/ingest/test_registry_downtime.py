"""The registry's catalogue of downtime reasons (docs/ingest.md#downtime-reasons):
validated with errors that say the fix, stored, and on re-import a reason removed from the
file deleted, or kept inactive while an interval carries it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from ingest_server.repo import downtime
from ingest_server.repo.registry import Registry, RegistryError, import_registry, load_registry
from simulators.scenario import default_scenario_path
from tests.harness.ingest import GW, KEY, batch, birth, dump, open_store, s, write
from tests.harness.kpi import kpi_registry, prepare_kpi, utc

DEMO = default_scenario_path().with_name("demo-registry.yaml")
REASONS = [
    {"id": "breakdown", "name": "设备故障", "name_en": "Breakdown", "category": "unplanned",
     "applies_to": "DOWN"},
    {"id": "no-material", "name": "待料", "name_en": "Waiting for material",
     "category": "material", "applies_to": "IDLE"},
    {"id": "cleaning", "name": "清洁", "name_en": "Cleaning", "category": "planned"},
]  # fmt: skip


def with_reasons(reasons: list[dict[str, Any]]) -> Registry:
    doc = kpi_registry().model_dump(mode="json")
    doc["enterprises"][0]["downtime_reasons"] = reasons
    return Registry.model_validate(doc)


def catalogue(db: str) -> list[tuple[Any, ...]]:
    return dump(db, "SELECT id, name_en, category, applies_to, active FROM downtime_reasons "
                    "ORDER BY id")  # fmt: skip


def test_the_demo_registry_declares_a_catalogue() -> None:
    reasons = load_registry(DEMO).enterprises[0].downtime_reasons
    assert len(reasons) >= 4
    assert {r.category for r in reasons} >= {"planned", "unplanned"}
    assert all(r.name and r.name_en for r in reasons)  # both languages


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ([REASONS[0], REASONS[0]], "['breakdown'] given twice"),
        ([{**REASONS[0], "applies_to": "OFF"}], "applies_to: Input should be 'DOWN', 'IDLE'"),
        ([{**REASONS[0], "name_en": ""}], "name_en: String should have at least 1 character"),
        ([{**REASONS[0], "category": "Not An Id"}], "category: String should match pattern"),
        ([{k: v for k, v in REASONS[0].items() if k != "category"}], "category: required field"),
    ],
)
def test_a_bad_catalogue_is_refused_naming_the_field(
    tmp_path: Path, reasons: list[dict[str, Any]], expected: str
) -> None:
    doc = kpi_registry().model_dump(mode="json")
    doc["enterprises"][0]["downtime_reasons"] = reasons
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(RegistryError) as exc:
        load_registry(path)
    assert "downtime_reasons" in str(exc.value)
    assert expected in str(exc.value)


def test_stored_updated_retired_and_deleted(db: str) -> None:
    prepare_kpi(db)
    with psycopg.connect(db) as conn:
        import_registry(conn, with_reasons(REASONS), {GW: KEY})
    assert catalogue(db) == [
        ("breakdown", "Breakdown", "unplanned", "DOWN", True),
        ("cleaning", "Cleaning", "planned", "both", True),
        ("no-material", "Waiting for material", "material", "IDLE", True),
    ]
    # an IDLE interval of cnc-01 carries no-material
    t0 = utc(2026, 11, 16, 1).timestamp()
    store = open_store(db)
    try:
        tags = [{"t": "state", "role": "machine_state"}]
        write(store, ("birth", birth([{"id": "cnc-01", "protocol": "opcua", "metadata": {},
                                       "tags": tags}])))  # fmt: skip
        samples = [s("cnc-01", "state", t0, "RUNNING"), s("cnc-01", "state", t0 + 60, "IDLE"),
                   s("cnc-01", "state", t0 + 120, "RUNNING")]  # fmt: skip
        write(store, ("data", batch(1, samples)))
    finally:
        store.conn.close()
    with psycopg.connect(db) as conn:
        (stop,) = downtime.stops(conn, enterprise="hf", start=utc(2026, 11, 16),
                                 end=utc(2026, 11, 17))  # fmt: skip
        downtime.set_reason(conn, enterprise="hf", equipment="cnc-01", start=stop["start"],
                            reason="no-material", note="", account="op")  # fmt: skip
        # the file drops no-material (in use: kept, inactive) and cleaning (unused: gone),
        # and renames breakdown
        renamed = {**REASONS[0], "name_en": "Machine breakdown"}
        import_registry(conn, with_reasons([renamed]), {})
    assert catalogue(db) == [
        ("breakdown", "Machine breakdown", "unplanned", "DOWN", True),
        ("no-material", "Waiting for material", "material", "IDLE", False),
    ]
    with psycopg.connect(db) as conn:
        (stop,) = downtime.stops(conn, enterprise="hf", start=utc(2026, 11, 16),
                                 end=utc(2026, 11, 17))  # fmt: skip
        assert stop["reason"] == "no-material"  # the interval keeps its reason
        # back in the file: active again
        import_registry(conn, with_reasons([renamed, REASONS[1]]), {})
    assert ("no-material", "Waiting for material", "material", "IDLE", True) in catalogue(db)
    # the catalogue is not on the registry's edit trail (it moves no figure)
    assert dump(db, "SELECT count(*) FROM registry_audit WHERE kind = 'enterprise'") == [(0,)]
