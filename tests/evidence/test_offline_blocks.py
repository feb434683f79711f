"""The offline verifier's check of the report's blocks after its figures (evidence/offline/
kpi_blocks.py, inside the `kpis` check): `targets`, `meter_register`, `green`, `ghg`.

The plant is test_offline_kpi's (a counter, a machine state, an edit, a production entry,
an anchored day), with what makes each block more than empty, entered as a user enters
it: an electricity meter with its nameplate and certificate and an entered target
(`registry import`), its energy readings (the ingest path's Store), the period's
green-factory entries and a process emission (repo/green.py). Each test then alters the
signed report's block, re-signs it with the report key the trust file trusts (so the
signature holds) and fixes the manifest, as the server's bug or a forger would: the check
must fail with the block's code, naming the field and both values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingest_server.evidence.declared import register_problems
from ingest_server.evidence.offline import Verdict, check_bundle
from ingest_server.evidence.targets import evaluate, targets_problems
from ingest_server.reference.targets import TargetDef, targets_from_json
from ingest_server.repo import green
from ingest_server.repo.registry import Registry, import_registry
from tests.evidence.test_ledger import DAY
from tests.evidence.test_offline import resigned, zipped
from tests.evidence.test_offline_kpi import CNC, _World, bundle_of
from tests.harness.ingest import ENT, KEY, batch, birth, open_store, s, small_registry, write

Made = dict[str, Any]
BLOCKS = ("targets", "meter_register", "green", "ghg")
METER = {"id": "em-1", "protocol": "modbus", "metadata": {"kind": "meter"},
         "tags": [{"t": "energy_kwh", "role": "energy_kwh", "unit": "kWh"}]}  # fmt: skip
CERT = {"certificate": "JD-2026-0117", "issued_by": "省计量院", "calibrated_on": "2026-01-05",
        "valid_until": "2027-01-04"}  # fmt: skip
TARGET = {"kpi": "utilisation", "comparison": ">=", "threshold": 99.0, "unit": "%",
          "programme": "企业目标", "source": "2026 年度计划"}  # fmt: skip


class _BlocksWorld(_World):
    """test_offline_kpi's plant, plus a metered electricity meter with its certificate,
    an entered target, and the period's green-factory entries and process emission."""

    def __init__(self, db: str) -> None:
        super().__init__(db)
        reg = small_registry(("gw-01", "gw-02")).model_dump(mode="json", exclude_unset=True)
        ent = reg["enterprises"][0]
        ent["targets"] = [TARGET]
        ent["sites"][0]["meters"] = [{
            "id": "em-1", "name": "总电表", "carrier": "electricity", "unit": "kWh",
            "gateway": "gw-01", "device": "em-1", "serial": "SN-88017", "model": "DTSD341",
            "accuracy_class": "0.5S", "calibration": CERT,
        }]  # fmt: skip
        import_registry(self.conn, Registry.model_validate(reg), dict.fromkeys(("gw-01", "gw-02"),
                                                                               KEY))  # fmt: skip
        noon = self.noon.timestamp()
        with open_store(db) as store:  # 40 kWh an hour over two hours
            kwh = [s("em-1", "energy_kwh", noon - 3600 + 600 * i, 5000.0 + 40 * i / 6)
                   for i in range(13)]  # fmt: skip
            write(store, ("birth", birth([CNC, METER], boot=10)),
                  ("data", batch(1, kwh, boot=10)))  # fmt: skip
        entries = {"indicators": [
            {"id": "energy_per_unit", "baseline": 2.0, "leading": 1.0, "reference": "行业表A.1"},
            {"id": "solid_waste_reuse", "group": "resource_efficiency", "name": "固废综合利用率",
             "unit": "%", "direction": "higher", "value": 92.5, "evidence": "固废台账",
             "baseline": 80, "leading": 95}], "pv": None}  # fmt: skip
        process = [{"source": "CO2 焊接保护气", "activity": 0.4, "unit": "t", "factor": 1.0,
                    "factor_source": "购入量即排放量", "evidence": "采购台账"}]  # fmt: skip
        green.add_entries(self.conn, green.NewGreenEntries(ENT, DAY, DAY, entries, process,
                                                           "月度填报", "张工"))  # fmt: skip


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[Made]:
    yield from bundle_of(_BlocksWorld, tmp_path_factory.mktemp("offline_blocks"), pg_server)


def _report(made: Made) -> dict[str, Any]:
    return json.loads(made["files"]["report.json"])  # type: ignore[no-any-return]


def _reasons(v: Verdict, code: str) -> list[str]:
    """The English reasons of the kpis check with `code` (asserting that it failed)."""
    c = v.check("kpis")
    assert c.status == "failed", c
    return [r.text_en for r in c.reasons if r.code == code]


def test_a_bundle_with_every_block_passes(made: Made, tmp_path: Path) -> None:
    doc = _report(made)
    # each block is more than empty: the meter, the entered target, the entries
    (meter,) = doc["meter_register"]["meters"]
    assert (meter["id"], meter["serial"], meter["valid_until"], meter["status"]) == (
        "em-1", "SN-88017", "2027-01-04", "valid")  # fmt: skip
    entered = [r for r in doc["targets"]["results"] if r["origin"] == "entered"]
    assert [(r["kpi"], r["status"]) for r in entered] == [("utilisation", "not_met")]
    rows = {r["id"]: r for r in doc["green"]["rows"]}
    assert rows["energy_per_unit"]["value"] > 0
    assert doc["ghg"]["report"]["total_tco2e"] > doc["ghg"]["report"]["process_tco2e"] == 0.4
    v = check_bundle(zipped(tmp_path, made["files"]), made["trust"])
    c = v.check("kpis")
    assert c.status == "ok", [r.text_en for r in c.reasons]
    blocks = c.details["blocks"]
    assert set(blocks) == set(BLOCKS)
    compared = {"targets": f"results: {len(doc['targets']['results'])}",
                "meter_register": "meters: 1", "green": f"rows: {len(rows)}",
                "ghg": f"sources: {len(doc['ghg']['report']['sources'])}"}  # fmt: skip
    for name in BLOCKS:
        assert blocks[name] == {"compared": compared[name], "own_problems": [],
                                "differences": []}, name  # fmt: skip
    assert v.verdict == "pass"


def test_a_target_flipped_to_met_fails_targets_differ(made: Made, tmp_path: Path) -> None:
    doc = _report(made)
    (i,) = [i for i, r in enumerate(doc["targets"]["results"]) if r["origin"] == "entered"]
    doc["targets"]["results"][i].update(status="met", holds=True)
    v = resigned(made, tmp_path, doc)
    reasons = _reasons(v, "targets_differ")
    where = f"targets.results[{i}] (utilisation >= 99.0 %)"
    # the server's own check, and the result against the recomputed KPI: both values named
    assert any(
        r.startswith(
            f"targets: result {i} (utilisation >= 99.0 %): status 'met' in "
            "the report, 'not_met' re-evaluated"
        )
        for r in reasons
    ), reasons
    assert f"{where}.status: the report states 'met', the KPIs recomputed from the bundle " \
           "give 'not_met'" in reasons, reasons  # fmt: skip
    zh = [r.text for r in v.check("kpis").reasons if r.code == "targets_differ"]
    assert any("报告为 'met'" in t and "'not_met'" in t for t in zh), zh
    assert v.verdict == "fail"


def test_a_kpi_and_its_targets_forged_together_fail_against_the_bundle(
    made: Made, tmp_path: Path
) -> None:
    """The report agrees with itself (the server's check passes): only the bundle's
    recomputed KPI shows the target was not met."""
    doc = _report(made)
    kpi = next(k for k in doc["kpis"] if k["id"] == "utilisation")
    recomputed = kpi["value"]
    kpi["value"] = 99.5
    block = doc["targets"]
    table = targets_from_json({k: block[k] for k in ("version", "title", "rows")})
    entered = [TargetDef.model_validate(t) for t in block["entered"]]
    block["results"] = [r.model_dump(mode="json")
                        for r in evaluate(doc["kpis"], table, entered)]  # fmt: skip
    assert targets_problems(doc) == []
    v = resigned(made, tmp_path, doc)
    reasons = _reasons(v, "targets_differ")
    (i,) = [i for i, r in enumerate(block["results"]) if r["origin"] == "entered"]
    where = f"targets.results[{i}] (utilisation >= 99.0 %)"
    assert f"{where}.status: the report states 'met', the KPIs recomputed from the bundle " \
           "give 'not_met'" in reasons, reasons  # fmt: skip
    assert f"{where}.value: the report states 99.5, the KPIs recomputed from the bundle " \
           f"give {recomputed!r}" in reasons, reasons  # fmt: skip
    assert not any("against the report's own figures" in r for r in reasons)


def test_a_meter_certificate_changed_fails_register_differs(made: Made, tmp_path: Path) -> None:
    """Still valid at the period's end, so the report agrees with itself: the registry
    the bundle rolls back says otherwise."""
    doc = _report(made)
    (meter,) = doc["meter_register"]["meters"]
    meter["valid_until"] = "2028-06-30"
    assert register_problems(doc) == []
    v = resigned(made, tmp_path, doc)
    (reason,) = _reasons(v, "register_differs")
    assert reason.startswith("meter_register.meters[em-1].valid_until: the report states "
                             "'2028-06-30', registry.json rolled back to ")  # fmt: skip
    assert reason.endswith("gives '2027-01-04'")
    (zh,) = [r.text for r in v.check("kpis").reasons if r.code == "register_differs"]
    assert "报告为 '2028-06-30'" in zh
    assert "登记表为 '2027-01-04'" in zh


def test_a_meter_stated_valid_after_it_expired_fails_both_ways(made: Made, tmp_path: Path) -> None:
    doc = _report(made)
    (meter,) = doc["meter_register"]["meters"]
    meter["valid_until"] = "2026-02-01"  # expired before the period; status still "valid"
    v = resigned(made, tmp_path, doc)
    reasons = _reasons(v, "register_differs")
    assert any(r.startswith("meter_register em-1: stated 'valid', its certificate's dates "
                            "give 'expired'") for r in reasons), reasons  # fmt: skip
    assert any(r.startswith("meter_register.meters[em-1].valid_until: the report states "
                            "'2026-02-01'") for r in reasons), reasons  # fmt: skip


def test_a_green_row_value_changed_fails_green_differs(made: Made, tmp_path: Path) -> None:
    doc = _report(made)
    row = next(r for r in doc["green"]["rows"] if r["id"] == "energy_per_unit")
    value = row["value"]
    row["value"] = value / 2
    v = resigned(made, tmp_path, doc)
    reasons = _reasons(v, "green_differs")
    assert any(r.startswith(f"green energy_per_unit: value {value / 2!r} in the report, "
                            f"{value!r} computed again") for r in reasons), reasons  # fmt: skip
    assert f"green.rows[energy_per_unit].value: the report states {value / 2!r}, the " \
           f"figures recomputed from the bundle give {value!r}" in reasons, reasons  # fmt: skip


def test_a_ghg_total_changed_fails_ghg_differs(made: Made, tmp_path: Path) -> None:
    doc = _report(made)
    total = doc["ghg"]["report"]["total_tco2e"]
    doc["ghg"]["report"]["total_tco2e"] = total - 0.4  # the process emission left out
    v = resigned(made, tmp_path, doc)
    reasons = _reasons(v, "ghg_differs")
    assert any(r.startswith("ghg: total_tco2e in the report differs") for r in reasons), reasons
    assert f"ghg.report.total_tco2e: the report states {total - 0.4!r}, the figures " \
           f"recomputed from the bundle give {total!r}" in reasons, reasons  # fmt: skip
    assert v.verdict == "fail"


def test_a_report_made_before_the_blocks_passes_saying_not_present(
    made: Made, tmp_path: Path
) -> None:
    doc = _report(made)
    for name in BLOCKS:
        del doc[name]
    v = resigned(made, tmp_path, doc)
    c = v.check("kpis")
    assert c.status == "ok", [r.text_en for r in c.reasons]
    assert c.details["blocks"] == dict.fromkeys(BLOCKS, "not present")
    assert v.verdict == "pass"
