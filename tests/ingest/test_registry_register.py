"""The registry's declarations beside the figures' inputs (docs/ingest.md#registry): each
meter's nameplate and calibration certificate, the enterprise's declaration (承诺) and its
own targets. Validated with errors that say the fix, stored, read back
(repo/declarations.py), changed on the edit trail; a target's KPI and unit checked at
`registry import` (cli/registry_targets.py).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import psycopg
import pytest
import yaml

from ingest_server.cli.registry_targets import kpi_unit, target_problems
from ingest_server.reference.targets import TargetDef
from ingest_server.repo import declarations
from ingest_server.repo.registry import (
    Registry,
    RegistryError,
    import_with_trail,
    load_registry,
)
from tests.evidence.test_ledger import run
from tests.harness.ingest import dump

CERT = {"certificate": "JD-1", "issued_by": "某计量所", "calibrated_on": "2026-01-05",
        "valid_until": "2027-01-04"}  # fmt: skip
TARGET = {"kpi": "nc_rate_measured", "comparison": ">=", "threshold": 75, "unit": "%",
          "by": "2027-12-31", "programme": "省级智能工厂", "source": "实施方案 第三条"}  # fmt: skip


def registry_doc(**changes: object) -> dict[str, object]:
    meter: dict[str, object] = {"id": "m1", "carrier": "electricity", "unit": "kWh",
                                "serial": "S-1", "model": "DTSD", "accuracy_class": "0.5S",
                                "calibration": CERT}  # fmt: skip
    ent: dict[str, object] = {
        "id": "a", "name": "甲", "sites": [{"id": "s", "name": "S", "meters": [meter, {
            "id": "m2", "carrier": "water", "unit": "m3"}]}],
        "declaration": {"signatory": "张三", "position": "总经理"}, "targets": [TARGET],
    }  # fmt: skip
    ent.update(changes)
    return {"version": 1, "enterprises": [ent]}


def write(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def test_declarations_are_stored_read_back_and_changed_on_the_trail(
    db: str, tmp_path: Path
) -> None:
    reg = load_registry(write(tmp_path, registry_doc()))
    with psycopg.connect(db) as conn:
        import_with_trail(conn, reg, {}, account="t")
        meters = declarations.meter_register(conn, enterprise="a", sites=["s"])
        assert [(m["id"], m["serial"], m["model"], m["accuracy_class"]) for m in meters] == [
            ("m1", "S-1", "DTSD", "0.5S"),
            ("m2", None, None, None),
        ]
        cal = meters[0]["calibration"]
        assert (cal.certificate, cal.valid_until) == ("JD-1", dt.date(2027, 1, 4))
        assert meters[1]["calibration"] is None
        declared = declarations.declaration(conn, enterprise="a")
        assert declared is not None
        assert (declared.signatory, declared.position, declared.text) == ("张三", "总经理", "")
        assert declarations.enterprise_targets(conn, enterprise="a") == [
            TargetDef.model_validate(TARGET)
        ]
        assert declarations.enterprise_targets(conn, enterprise="nobody") == []
        assert declarations.declaration(conn, enterprise="nobody") is None

        renewed = {**CERT, "certificate": "JD-2", "valid_until": "2028-01-04"}
        doc = registry_doc(declaration=None, targets=[])
        doc["enterprises"][0]["sites"][0]["meters"][0]["calibration"] = renewed  # type: ignore[index]
        _, written = import_with_trail(conn, load_registry(write(tmp_path, doc)), {},
                                       account="t", note="new certificate")  # fmt: skip
        assert written == 3
        assert declarations.declaration(conn, enterprise="a") is None
        assert declarations.enterprise_targets(conn, enterprise="a") == []
    trail = dump(db, "SELECT kind, entity_id, field, new FROM registry_audit ORDER BY id")
    assert trail == [
        ("enterprise", "a", "declaration", None),
        ("enterprise", "a", "targets", []),
        ("meter", "m1", "calibration", renewed),
    ]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"calibration": {**CERT, "valid_until": "2025-01-01"}},
         "valid_until 2025-01-01 is before calibrated_on 2026-01-05"),
        ({"calibration": {**CERT, "certificate": ""}}, "calibration.certificate"),
        ({"calibration": {**CERT, "issuer": "x"}}, "calibration.issuer: unknown field"),
    ],
)  # fmt: skip
def test_a_bad_certificate_names_the_field_and_the_fix(
    tmp_path: Path, change: dict[str, object], problem: str
) -> None:
    doc = registry_doc()
    doc["enterprises"][0]["sites"][0]["meters"][0].update(change)  # type: ignore[index]
    with pytest.raises(RegistryError) as info:
        load_registry(write(tmp_path, doc))
    assert problem in str(info.value)


def test_a_declaration_text_needs_both_languages(tmp_path: Path) -> None:
    doc = registry_doc(declaration={"text": "承诺", "signatory": "张三", "position": "经理"})
    with pytest.raises(RegistryError) as info:
        load_registry(write(tmp_path, doc))
    assert "both languages (text and text_en)" in str(info.value)


@pytest.mark.parametrize(
    ("kpi", "unit"),
    [("nc_rate_measured", "%"), ("consumption_water", "m3"), ("energy_per_unit", "kgce/件"),
     ("energy_per_unit_change", "%"), ("mtbf", "h"), ("energy_tce", "tce")],
)  # fmt: skip
def test_a_target_of_a_known_kpi_in_its_unit_passes(kpi: str, unit: str) -> None:
    reg = Registry.model_validate(registry_doc(targets=[{**TARGET, "kpi": kpi, "unit": unit}]))
    assert target_problems(reg) == []


@pytest.mark.parametrize(
    ("kpi", "unit", "problem"),
    [
        ("nc_rate", "%", "targets[0].kpi: 'nc_rate' is no KPI's id"),
        ("consumption_coal", "t", "'consumption_coal' is no KPI's id"),
        ("nc_rate_measured_change_change", "%", "is no KPI's id"),
        ("nc_rate_measured", "percent", "targets[0].unit: 'percent' is not the unit of "
         "nc_rate_measured (%)"),
        ("energy_per_unit", "tce/件", "is not the unit of energy_per_unit (kgce/{output_unit})"),
    ],
)  # fmt: skip
def test_a_target_of_no_kpi_or_in_another_unit_is_refused(
    kpi: str, unit: str, problem: str
) -> None:
    reg = Registry.model_validate(registry_doc(targets=[{**TARGET, "kpi": kpi, "unit": unit}]))
    problems = target_problems(reg)
    assert len(problems) == 1
    assert problem in problems[0]
    assert kpi_unit(kpi) is None or "give the threshold in that unit" in problems[0]


def test_registry_import_refuses_a_bad_target_before_writing(db: str, tmp_path: Path) -> None:
    path = write(tmp_path, registry_doc(targets=[{**TARGET, "unit": "pct"}]))
    code, out = run("registry", "import", str(path), "--dsn", db)
    assert code == 2
    assert "'pct' is not the unit of nc_rate_measured" in out
    assert dump(db, "SELECT count(*) FROM enterprises") == [(0,)]
