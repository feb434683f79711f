"""Programme targets: the built-in table's rows and sources, each comparison on both
sides of its threshold and at it, the reasons a figure is not comparable, the report's
block re-evaluated (verify), and both renderings of it."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import re
from typing import Any

import pytest
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.canonical import canonical
from ingest_server.evidence.render_targets import SHEET, targets_html, targets_sheet
from ingest_server.evidence.targets import evaluate, evaluate_one, targets_block, targets_problems
from ingest_server.kpi.energy import INTENSITIES
from ingest_server.kpi.labels import KPI_LABELS
from ingest_server.kpi.results import Kpi
from ingest_server.reference.targets import (
    DEFAULT_TARGETS,
    TARGET_TABLES,
    TargetDef,
    TargetTable,
    target_table,
    targets_from_json,
)


def target(comparison: str, threshold: float, unit: str = "%", **kw: Any) -> TargetDef:
    return TargetDef.model_validate({
        "kpi": "nc_rate_measured", "comparison": comparison, "threshold": threshold,
        "unit": unit, "programme": "智能工厂 基础级", "programme_en": "Smart factory, basic",
        "source": "安徽省 ... 第3条", **kw,
    })  # fmt: skip


def entry(value: object, unit: str | None = "%", kid: str = "nc_rate_measured") -> dict[str, Any]:
    return {
        "id": kid,
        "name": "关键工序数控化率(实测)",
        "name_en": "NC",
        "value": value,
        "unit": unit,
    }


# -- the comparisons, exhaustively -------------------------------------------------------


@pytest.mark.parametrize(
    ("comparison", "value", "met"),
    [
        (">=", 75.1, True), (">=", 75.0, True), (">=", 74.9, False),
        (">", 75.1, True), (">", 75.0, False), (">", 74.9, False),
        ("<=", 75.1, False), ("<=", 75.0, True), ("<=", 74.9, True),
        ("<", 75.1, False), ("<", 75.0, False), ("<", 74.9, True),
        (">=", 75, True), (">", 75, False),  # an int figure (a count's percent) compares alike
    ],
)  # fmt: skip
def test_each_comparison_below_at_and_above_the_threshold(
    comparison: str, value: float, met: bool
) -> None:
    r = evaluate_one(target(comparison, 75.0), entry(value), "entered")
    assert r.status == ("met" if met else "not_met")
    assert r.holds is met
    assert r.difference == pytest.approx(value - 75.0)
    assert r.difference_unit == "pp"  # a KPI in % differs in percentage points
    assert r.reason is None


def test_the_figure_as_computed_not_as_printed() -> None:
    # 74.96 prints as "75.0%", and does not exceed 75
    r = evaluate_one(target(">=", 75.0), entry(74.96), "built_in")
    assert (r.status, round(r.difference or 0, 2)) == ("not_met", -0.04)


def test_a_difference_in_the_kpis_own_unit() -> None:
    t = target("<=", 180.0, "kgce/件", kpi="energy_per_unit")
    r = evaluate_one(t, entry(200.5, "kgce/件", "energy_per_unit"), "entered")
    assert (r.status, r.difference, r.difference_unit) == ("not_met", 20.5, "kgce/件")


@pytest.mark.parametrize(
    ("value", "unit", "reason"),
    [
        (None, "%", "no_figure"),  # the KPI has no value (no data, no denominator)
        ("80", "%", "no_figure"),  # a tampered entry's string is no figure
        (True, "%", "no_figure"),  # nor is a bool
        (80.0, "ratio", "unit_mismatch"),
        (80.0, None, "unit_mismatch"),
        (None, "ratio", "unit_mismatch"),  # the unit decides first: it says which
    ],
)
def test_not_comparable_and_why(value: object, unit: str | None, reason: str) -> None:
    r = evaluate_one(target(">=", 75.0), entry(value, unit), "entered")
    assert (r.status, r.reason, r.holds, r.difference) == ("not_comparable", reason, None, None)
    assert (r.unit, r.target.unit) == (unit, "%")  # both units, to say which differ


def test_a_kpi_the_report_lacks() -> None:
    [r] = evaluate([entry(80.0, kid="oee")], TargetTable("t", "t", (target(">=", 75.0),)))
    assert (r.status, r.reason, r.value, r.name) == ("not_comparable", "no_kpi", None, None)


def test_a_regions_target_is_for_reference_only() -> None:
    t = target("<=", -14.0, scope="region", kpi="energy_per_value_added_change")
    for value, holds in ((-20.0, True), (-14.0, True), (-3.5, False)):
        r = evaluate_one(t, entry(value, kid="energy_per_value_added_change"), "built_in")
        assert (r.status, r.holds) == ("reference", holds)
        assert r.difference == pytest.approx(value + 14.0)


def test_kpi_models_and_entries_alike_built_in_rows_first() -> None:
    table = TargetTable("t", "t", (target(">", 75.0),))
    own = target(">=", 60.0, programme="企业自选 等级")
    k = Kpi.of("nc_rate_measured", value=80.0, numerator=4, denominator=5, threshold=0.8)
    from_model = evaluate([k], table, [own])
    from_entry = evaluate([k.dump()], table, [own])
    assert from_model == from_entry
    assert [(r.origin, r.status) for r in from_model] == [("built_in", "met"), ("entered", "met")]


# -- the built-in table ------------------------------------------------------------------


def test_the_built_in_table_cites_each_row() -> None:
    assert DEFAULT_TARGETS in TARGET_TABLES
    for version, table in TARGET_TABLES.items():
        assert table.version == version
        for row in table.rows:
            # a KPI of the labels table, or a change of an intensity vs the baseline
            base = row.kpi.removesuffix("_change")
            assert row.kpi in KPI_LABELS or (row.kpi.endswith("_change") and base in INTENSITIES)
            assert row.unit == "%", row  # all built-in rows are rates or changes in %
            assert all((row.programme, row.programme_en, row.source, row.note, row.note_en))
            # issuer and title (《》) and a date in every source
            assert "《" in row.source, row.source
            assert re.search(r"20\d\d-\d\d", row.source), row.source
            assert row.by is not None
            # a province's five-year reduction never gives a verdict on an enterprise
            assert (row.scope == "region") == row.kpi.endswith("_change")
        # the table survives the report's JSON, as a verifier reads it back
        assert targets_from_json(json.loads(json.dumps(table.as_json()))) == table
    with pytest.raises(ValueError, match="no target table 'x'; known"):
        target_table("x")


def test_an_enterprise_target_without_the_new_fields_reads_as_before() -> None:
    stored = {"kpi": "oee", "comparison": ">=", "threshold": 65, "unit": "%",
              "programme": "领航级", "source": "企业申报书 附表2"}  # fmt: skip
    t = TargetDef.model_validate(stored)
    assert (t.scope, t.note, t.by) == ("enterprise", "", None)
    with pytest.raises(ValueError, match="extra"):
        TargetDef.model_validate({**stored, "treshold": 1})


# -- the report's block, and verify ------------------------------------------------------


def report(value: float = 80.0) -> dict[str, Any]:
    kpis = [entry(value), entry(100.0, kid="nc_rate_declared"),
            entry(-9.5, kid="energy_per_value_added_change")]  # fmt: skip
    own = [target(">=", 90.0, "%", by=dt.date(2026, 12, 31))]
    doc = {"kpis": kpis, "targets": targets_block(kpis, entered=own)}
    # as a verifier reads a signed report: RFC 8785 writes 75.0 as 75
    out: dict[str, Any] = json.loads(canonical(doc))
    return out


def test_the_block_cites_the_table_and_the_enterprises_rows() -> None:
    doc = report()
    block = doc["targets"]
    assert block["version"] == DEFAULT_TARGETS
    assert len(block["rows"]) == len(target_table().rows)
    assert block["entered"][0]["by"] == "2026-12-31"
    got = [(r["kpi"], r["origin"], r["status"], r["reason"]) for r in block["results"]]
    assert got == [
        ("nc_rate_declared", "built_in", "met", None),
        ("nc_rate_measured", "built_in", "met", None),
        ("nc_rate_declared", "built_in", "met", None),
        ("nc_rate_measured", "built_in", "met", None),
        ("energy_per_value_added_change", "built_in", "reference", None),
        ("water_per_value_added_change", "built_in", "not_comparable", "no_kpi"),
        ("nc_rate_measured", "entered", "not_met", None),
    ]
    assert targets_problems(doc) == []
    assert targets_problems({"kpis": doc["kpis"]}) == []  # a report made before the block


def test_verify_finds_a_result_its_figures_contradict() -> None:
    doc = report(80.0)
    doc["targets"]["results"][6]["status"] = "met"
    doc["targets"]["results"][6]["difference"] = 0
    problems = targets_problems(doc)
    assert problems == [
        "targets: result 6 (nc_rate_measured >= 90.0 %): status 'met' in the report, "
        "'not_met' re-evaluated",
        "targets: result 6 (nc_rate_measured >= 90.0 %): difference 0 in the report, "
        "-10.0 re-evaluated",
    ]
    # a figure changed under its verdict: the block no longer agrees with it
    doc = report(80.0)
    doc["kpis"][0]["value"] = 60.0
    assert any("status 'met' in the report, 'not_met'" in p for p in targets_problems(doc))


def test_verify_finds_a_published_table_edited() -> None:
    doc = report()
    doc["targets"]["rows"][0]["threshold"] = 60
    problems = targets_problems(doc)
    assert (
        problems[0]
        == f"targets: the table {DEFAULT_TARGETS} in the report differs from the published one"
    )
    # the result still carries the row it was evaluated with
    assert problems[1:] == [
        "targets: result 0 (nc_rate_declared > 60.0 %): difference 25 in the report, "
        "40.0 re-evaluated",
        "targets: result 0 (nc_rate_declared > 60.0 %): the result's target has threshold "
        "75, the rows 60.0",
    ]


def test_verify_names_a_block_it_cannot_read() -> None:
    doc = report()
    broken = copy.deepcopy(doc)
    broken["targets"]["results"] = "met"
    assert targets_problems(broken) == [
        "targets: not an object with lists rows, entered and results"
    ]
    broken = copy.deepcopy(doc)
    broken["targets"]["entered"][0]["comparison"] = "=="
    [p] = targets_problems(broken)
    assert p.startswith("targets: entered[0] is no target (comparison: Input should be")
    broken = copy.deepcopy(doc)
    del broken["targets"]["rows"][2]["source"]
    assert targets_problems(broken) == ["targets: rows[2] is no target (source: Field required)"]
    broken = copy.deepcopy(doc)
    del broken["targets"]["results"][-1]
    assert targets_problems(broken) == ["targets: 6 results in the report, its rows give 7"]


# -- the renderings ----------------------------------------------------------------------


def test_the_html_section() -> None:
    doc = report(80.0)
    doc["targets"]["entered"][0]["programme"] = "<script>x</script>"
    doc["targets"]["results"][6]["target"]["programme"] = "<script>x</script>"
    page = targets_html(doc)
    assert page.startswith("<section")
    for text in (
        "目标对照", "Targets", DEFAULT_TARGETS, "未达到", "not met", "-10.0 个百分点",
        "参考 (区域目标, 不判定)", "报告中无此指标", "≥ 90 % (2026-12-31)",
        "&gt; 75 % (2027-12-31)", "推动工业领域设备更新实施方案", "2024-03-27", "&lt;script&gt;",
    ):  # fmt: skip
        assert text in page
    assert "<script>" not in page
    assert targets_html({"kpis": []}) == ""


def test_the_sheet() -> None:
    doc = report(80.0)
    doc["targets"]["results"][6]["target"]["programme"] = "=HYPERLINK(1)"
    wb = Workbook()
    assert targets_sheet(wb, {"kpis": []}) is None
    targets_sheet(wb, doc)
    out = io.BytesIO()
    wb.save(out)
    ws = load_workbook(io.BytesIO(out.getvalue()))[SHEET]
    assert ws.cell(1, 2).value == DEFAULT_TARGETS
    heads = [c.value for c in ws[3]]
    rows = [
        dict(zip(heads, (c.value for c in row), strict=True)) for row in ws.iter_rows(min_row=4)
    ]
    assert len(rows) == 7
    assert rows[0]["期限 By"] == dt.datetime(2027, 12, 31)  # a date cell
    assert rows[6]["结论 Result"] == "未达到 (-10.0 个百分点) / not met (-10.0 pp)"
    assert rows[6]["差值 Difference"] == pytest.approx(-10.0)
    # a figure and threshold in % as the workbook writes a KPI in %: fractions, as percents
    assert (rows[6]["数值 Value"], rows[6]["阈值 Threshold"]) == (0.8, 0.9)
    col = heads.index("数值 Value") + 1
    assert ws.cell(10, col).number_format == "0.0%"
    assert ws.cell(10, heads.index("差值 Difference") + 1).number_format == '0.0" pp"'
    assert rows[6]["规划 Programme"] == "=HYPERLINK(1)"  # text, not a formula
    assert ws.cell(10, heads.index("规划 Programme") + 1).data_type == "s"
