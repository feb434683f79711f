"""The offline verifier's `kpis` check (evidence/offline/kpis.py): every KPI recomputed
from a real bundle alone, and the trail, entries and factors it stands on.

The plant is test_bundle's (two v2 gateways, a day anchored by a real RFC 3161 TSA, an
attribute edit, a production entry), plus what its KPIs need to be more than zeros: a
machine state and a part counter (with a reset) written by the ingest path's Store, and
the hourly rollups of the v2 samples (test_ledger's World stores those rows directly, as
the ingest writer's COPY would, without the rollups the writer keeps). Each test then
tampers with a copy of the zip as test_offline does, fixing the manifest as an attacker
would, and the check must fail naming the figure, row, entry or edit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest_server.evidence.offline import check_bundle
from tests.evidence.test_bundle import _make
from tests.evidence.test_ledger import World
from tests.evidence.test_offline import failed, parquet, zipped
from tests.harness.ingest import batch, birth, open_store, s, write
from tests.harness.tsa import Tsa

Made = dict[str, Any]

CNC = {
    "id": "cnc-01", "protocol": "opcua", "metadata": {"nc": True},
    "tags": [{"t": "mstate", "role": "machine_state"},
             {"t": "parts", "role": "part_count_total", "unit": "pcs"}],
}  # fmt: skip


class _World(World):
    """test_ledger's World, whose report sees the rollups of its v2 samples and a counter
    and a machine state stored by the ingest path."""

    def __init__(self, db: str) -> None:
        super().__init__(db)
        noon = self.noon.timestamp()
        with open_store(db) as store:
            states = [s("cnc-01", "mstate", noon - 3600 + 600 * i,
                        "RUNNING" if i % 3 else "IDLE") for i in range(13)]  # fmt: skip
            # parts: 3 a poll, reset to 0 after an hour (the counter restarted)
            counts = [100 + 3 * i if i < 12 else 3 * (i - 12) for i in range(25)]
            parts = [s("cnc-01", "parts", noon - 3600 + 300 * i, float(n))
                     for i, n in enumerate(counts)]  # fmt: skip
            write(store, ("birth", birth([CNC], boot=8)),
                  ("data", batch(1, states + parts, boot=8)))  # fmt: skip


def bundle_of(world_of: Callable[[str], _World], tmp: Path, pg_server: Any) -> Iterator[Made]:
    """A bundle made (test_bundle.py `_make`) from the plant `world_of` builds in a database
    of its own, with a TSA of its own: the module fixtures' one body."""
    tsa = Tsa(tmp / "tsa", "A").start()
    with pg_server.database() as db:
        world = world_of(db)
        try:
            yield _make(world, tsa, tmp)
        finally:
            world.conn.close()
            tsa.stop()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[Made]:
    yield from bundle_of(_World, tmp_path_factory.mktemp("offline_kpi"), pg_server)


def _report(made: Made) -> dict[str, Any]:
    return json.loads(made["files"]["report.json"])  # type: ignore[no-any-return]


def test_a_clean_bundle_recomputes_every_kpi_and_passes(made: Made, tmp_path: Path) -> None:
    v = check_bundle(zipped(tmp_path, made["files"]), made["trust"])
    c = v.check("kpis")
    assert c.status == "ok", [r.text_en for r in c.reasons]
    report = _report(made)
    # the plant's KPIs are more than zeros: a counter, a state, an entry, an edit
    kpis = {k["id"]: k["value"] for k in report["kpis"]}
    assert kpis["utilisation"] > 0  # no shift calendar: no planned time, so no availability
    (cnc,) = report["equipment"]
    assert cnc["parts"]["produced"] > 0
    assert report["quality"]["counter_anomalies"][0]["flag"] == "reset"
    assert c.details["figures_differ"] == 0
    assert c.details["figures_compared"] >= len(report["kpis"])
    # the edit trail, shown, and signed by the report
    (edit,) = c.details["edits"]
    assert (edit["equipment"], edit["field"], edit["old"], edit["new"], edit["account"]) == (
        "cnc-01", "nc", True, False, "editor-7")  # fmt: skip
    assert report["registry_audit"]["entries"] == 1
    assert [e["id"] for e in report["registry_audit"]["edits"]] == [edit["id"]]
    assert v.verdict == "pass", [(x.name, x.status, [r.text_en for r in x.reasons])
                                 for x in v.checks]  # fmt: skip


def test_a_counter_reading_changed_fails_the_figures_it_moves(made: Made, tmp_path: Path) -> None:
    series = pq.read_table(pa.BufferReader(made["files"]["series.parquet"])).to_pylist()
    (parts,) = [r["series_id"] for r in series if r["tag"] == "parts"]
    table = pq.read_table(pa.BufferReader(made["files"]["samples.parquet"]))
    values = table["value"].to_pylist()
    sids = table["series_id"].to_pylist()
    # the counter's last reading before the reset, raised by 50 parts
    i = max(k for k, (sid, x) in enumerate(zip(sids, values, strict=True))
            if sid == parts and x is not None and x >= 100)  # fmt: skip
    values[i] += 50.0
    table = table.set_column(table.schema.get_field_index("value"), "value",
                             pa.array(values, pa.float64()))  # fmt: skip
    files = {**made["files"], "samples.parquet": parquet(table)}
    v = check_bundle(zipped(tmp_path, files, fix=("samples.parquet",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any(r.startswith("equipment cnc-01 parts.produced: the report claims") for r in reasons)
    diff = {d["item"]: d for d in v.check("kpis").details["differences"]}
    produced = diff["equipment cnc-01 parts.produced"]
    assert produced["recomputed"] == produced["claimed"] + 50
    assert v.verdict == "fail"


def test_a_factor_row_changed_fails_naming_the_table_and_row(made: Made, tmp_path: Path) -> None:
    factors = json.loads(made["files"]["factors.json"])
    row = factors["energy"]["rows"][0]
    row["coefficient" if "coefficient" in row else "value"] = 0.2
    files = {**made["files"], "factors.json": json.dumps(factors).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("factors.json",)), made["trust"])
    reasons = failed(v, "kpis")
    version = factors["energy"]["version"]
    where = f"factors.json's energy table {version}, rows[0] ({row['carrier']}/{row['unit']})"
    assert any(r.startswith(where) and "the report's signed table" in r for r in reasons)
    assert any(r.startswith(where) and "the published table" in r for r in reasons)


def test_a_production_entry_added_after_issue_fails_naming_it(made: Made, tmp_path: Path) -> None:
    entries = json.loads(made["files"]["production.json"])
    entries.append({**entries[0], "id": 99, "output": 500.0, "entered_by": "clerk-9",
                    "entered_at": "2099-01-01T00:00:00+00:00"})  # fmt: skip
    files = {**made["files"], "production.json": json.dumps(entries).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("production.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any(r.startswith("production entry 99 (entered by clerk-9 at 2099-01-01T00:00:00")
               and "after the report read its inputs" in r for r in reasons)  # fmt: skip


def test_an_entry_added_with_an_earlier_date_is_not_the_reports(made: Made, tmp_path: Path) -> None:
    entries = json.loads(made["files"]["production.json"])
    entries.append({**entries[0], "id": 98, "entered_by": "clerk-9",
                    "entered_at": "2026-03-10T08:00:00+00:00"})  # fmt: skip
    files = {**made["files"], "production.json": json.dumps(entries).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("production.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any(r.startswith("production entry 98 (entered by clerk-9") and "not among the "
               "report's inputs" in r for r in reasons)  # fmt: skip


def test_an_attribute_edit_removed_from_the_trail_fails_naming_it(
    made: Made, tmp_path: Path
) -> None:
    files = {**made["files"], "equipment_audit.json": b"[]\n"}
    v = check_bundle(zipped(tmp_path, files, fix=("equipment_audit.json",)), made["trust"])
    reasons = failed(v, "kpis")
    (edit,) = _report(made)["registry_audit"]["edits"]
    assert any(r.startswith(f"edit {edit['id']}: equipment cnc-01 nc True -> False by editor-7")
               and "removed from the trail" in r for r in reasons)  # fmt: skip
    assert any("equipment_audit.json holds 0 edit(s)" in r for r in reasons)
    assert v.check("kpis").details["edits"] == []


def test_an_edit_whose_value_was_changed_fails(made: Made, tmp_path: Path) -> None:
    trail = json.loads(made["files"]["equipment_audit.json"])
    trail[0]["new"] = True  # the edit "never" took nc away
    files = {**made["files"], "equipment_audit.json": json.dumps(trail).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("equipment_audit.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any("differs from the edit the report signed" in r for r in reasons)


def test_unknown_factor_version_names_it(made: Made, tmp_path: Path) -> None:
    factors = json.loads(made["files"]["factors.json"])
    factors["emission"]["version"] = "cn-1999.9"
    files = {**made["files"], "factors.json": json.dumps(factors).encode()}
    v = check_bundle(zipped(tmp_path, files, fix=("factors.json",)), made["trust"])
    reasons = failed(v, "kpis")
    assert any("the emission table cn-1999.9 is not a published version" in r for r in reasons)
