"""A meter of role `generation` (on-site PV, migration 0013): the engine lists it with its
quantity and role and counts it in no consumption, tce or CO2; the GHG report has no
source for it; the renewable share reads it as a top-level meter; the registry stores the
role, the report reads it back, and the offline verifier's rebuild from a bundle gives the
same input rows (the digest) and figures. A registry without roles keeps its digest lines.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ingest_server.evidence.compute import Request, compute_report
from ingest_server.evidence.ghg import ghg_report
from ingest_server.evidence.green import GreenEntries, PvEntry, indicators
from ingest_server.evidence.offline.kpis import check_kpis
from ingest_server.kpi.fetch import fetch_inputs
from ingest_server.kpi.records import Inputs, Meter
from ingest_server.repo.registry import RegistryError, import_registry, load_registry
from simulators.scenario import default_scenario_path
from tests.evidence.test_green import AS_OF, FROM, TO, plant_inputs, plant_report
from tests.evidence.test_ledger import run

DEMO = default_scenario_path().with_name("demo-registry.yaml")
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)


def with_pv_top_level(report_inputs: Inputs) -> Inputs:
    """test_green's plant with its PV meter top-level and of role generation."""
    report_inputs.meters = [
        dataclasses.replace(m, parent=None, role="generation") if m.id == "pv-roof" else m
        for m in report_inputs.meters
    ]
    return report_inputs


@pytest.fixture(scope="module")
def reports() -> tuple[dict[str, Any], dict[str, Any]]:
    """The plant with PV as a submeter of the main meter, and with PV as a top-level
    generation meter: the consumption is the same 90,000 kWh in both."""
    gen = compute_report(with_pv_top_level(plant_inputs()), None, Request("hf", FROM, TO), AS_OF)
    return plant_report(), gen


def kpi(doc: dict[str, Any], kid: str) -> Any:
    return next(k["value"] for k in doc["kpis"] if k["id"] == kid)


def test_a_generation_meter_counts_in_no_consumption_tce_or_co2(
    reports: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sub, gen = reports
    for kid in ("consumption_electricity", "energy_tce", "carbon_tco2", "energy_per_unit"):
        assert kpi(gen, kid) == kpi(sub, kid), kid
    assert kpi(gen, "consumption_electricity") == 90000.0
    inputs = next(k["inputs"] for k in gen["kpis"] if k["id"] == "carbon_tco2")
    assert "pv-roof" not in inputs
    pv = next(m for m in gen["meters"] if m["id"] == "pv-roof")
    assert (pv["role"], pv["top_level"], pv["quantity"]) == ("generation", True, 12000.0)
    assert (pv["tce"], pv["tco2"], pv["emission_factor"]) == (None, None, None)
    assert next(m for m in gen["meters"] if m["id"] == "em-main")["role"] == "consumption"


def test_the_ghg_report_and_the_renewable_share_read_it(
    reports: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    sub, gen = reports
    ghg = ghg_report(gen, [])
    assert "pv-roof" not in [s.id for s in ghg.sources]
    assert ghg.energy_tco2 == kpi(gen, "carbon_tco2")
    assert all("pv-roof" not in g.text_en for g in ghg.gaps)
    entries = GreenEntries(pv=PvEntry(meters=["pv-roof"], exported_kwh=2000))
    share = {r.id: r for r in indicators(gen, entries)}["renewable_electricity_share"]
    assert share.value == pytest.approx(10000 / 100000 * 100)
    # the same share as with the submeter: the meter's role, not its place, decides
    again = {r.id: r for r in indicators(sub, entries)}["renewable_electricity_share"]
    assert share.value == again.value


def test_the_digest_line_names_a_role_only_when_not_consumption() -> None:
    m = Meter("em-1", "", "", "p1", "electricity", "kWh", None, (1, "em"))
    inputs = Inputs({"id": "e"}, "discrete", SAT, SUN, dt.datetime(2026, 11, 23, tzinfo=dt.UTC),
                    [], [], [m, dataclasses.replace(m, id="pv-1", role="generation")])  # fmt: skip
    lines = [line for line in inputs.rows() if line.startswith('["meter"')]
    assert lines == [
        '["meter","em-1","p1","electricity","kWh",null,[1,"em"]]',  # as before roles
        '["meter","pv-1","p1","electricity","kWh",null,[1,"em"],"generation"]',
    ]


def test_the_registry_refuses_generation_of_another_carrier(tmp_path: Path) -> None:
    text = DEMO.read_text(encoding="utf-8").replace(
        "      carrier: gas\n", "      carrier: gas\n      role: generation\n", 1
    )
    bad = tmp_path / "registry.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError, match="role generation is for on-site electricity"):
        load_registry(bad)


def test_stored_read_back_and_rebuilt_offline_alike(db: str, tmp_path: Path) -> None:
    """The demo registry with a PV meter of role generation: the registry stores it, the
    report reads it (its meter row), the bundle's registry carries it and the offline
    verifier's recomputation gives the report's input digest and figures."""
    text = DEMO.read_text(encoding="utf-8").replace(
        "    meters:\n",
        "    meters:\n    - id: pv-roof\n      name: 屋顶光伏\n      name_en: Rooftop PV\n"
        "      carrier: electricity\n      unit: kWh\n      role: generation\n",
        1,
    )
    path = tmp_path / "registry.yaml"
    path.write_text(text, encoding="utf-8")
    as_of = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)
    with psycopg.connect(db) as conn:
        import_registry(conn, load_registry(path), {"gw-01": b"k" * 32})
        conn.commit()
        ent = str(load_registry(path).enterprises[0].id)
        roles = {m.id: m.role for m in fetch_inputs(conn, ent, SAT, SUN, as_of).meters}
    assert roles.pop("pv-roof") == "generation"
    assert set(roles.values()) == {"consumption"}
    zipped = tmp_path / "b.zip"
    code, out = run("report", "--enterprise", ent, "--from", str(SAT), "--to", str(SUN),
                    "--dsn", db, "--signing-key", str(tmp_path / "report.pem"),
                    "--out", str(tmp_path / "r.json"), "--as-of", as_of.isoformat(),
                    "--bundle", str(zipped))  # fmt: skip
    assert code == 0, out
    with zipfile.ZipFile(zipped) as z:
        files = {n: z.read(n) for n in z.namelist()}
    registry = json.loads(files["registry.json"])
    assert {m["id"]: m["role"] for m in registry["meters"]}["pv-roof"] == "generation"
    doc = json.loads(files["report.json"])
    assert next(m for m in doc["meters"] if m["id"] == "pv-roof")["role"] == "generation"
    found = check_kpis(files)
    assert found.failures == [], found.failures[:5]
    assert found.details["figures_differ"] == 0
    # the input rows rebuilt from the bundle are the server's, the generation meter's too
    assert found.details["digest"]["equal"], found.details["digest"]
