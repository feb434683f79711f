"""The report's meter register and declaration (docs/kpi.md#meter-register): each meter's
certificate in a state at the period's end with its warning, the enterprise's declaration
dated the day of issue, both signed with the report, rendered as a page section and a
sheet, and left out of figure comparison: a report made before them still verifies.
Against the demo registry (one meter's certificate expired, one missing) on a real
PostgreSQL.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import Workbook, load_workbook  # type: ignore[import-untyped,unused-ignore]

from ingest_server.evidence.canonical import sign
from ingest_server.evidence.declared import (
    DECLARATION_TEXT,
    calibration_state,
    register_problems,
)
from ingest_server.evidence.markup import Ctx
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_register import (
    SHEET_TITLE,
    declaration_html,
    meter_register_html,
    write_meter_register,
)
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import Request, make_report
from ingest_server.evidence.verify import verify
from ingest_server.repo.registry import import_registry, load_registry
from simulators.scenario import default_scenario_path

DEMO = default_scenario_path().with_name("demo-registry.yaml")
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)
CTX = Ctx(None, "UTC", None)


def cert(calibrated_on: str, valid_until: str) -> dict[str, str]:
    return {"certificate": "C-9", "calibrated_on": calibrated_on, "valid_until": valid_until}


@pytest.mark.parametrize(
    ("cal", "state", "said"),
    [
        (None, "missing", "no calibration certificate registered"),
        (cert("2026-01-01", "2026-11-30"), "valid", None),
        (cert("2026-01-01", "2026-11-22"), "valid", None),  # valid through the last day
        (cert("2026-01-01", "2026-11-21"), "expires_in_period", "valid until 2026-11-21"),
        (cert("2026-01-01", "2026-11-20"), "expired", "expired on 2026-11-20"),
        (cert("2026-11-23", "2027-11-22"), "missing", "issued on 2026-11-23, after the period"),
    ],
)  # fmt: skip
def test_a_certificates_state_at_the_periods_end(
    cal: dict[str, str] | None, state: str, said: str | None
) -> None:
    got, zh, en = calibration_state(cal, SAT, SUN)
    assert got == state
    if said is None:
        assert (zh, en) == (None, None)
    else:
        assert said in str(en)
        assert zh


@pytest.fixture(scope="module")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def report(db: str, key: Ed25519PrivateKey) -> tuple[str, dict[str, Any]]:
    with psycopg.connect(db) as conn:
        import_registry(conn, load_registry(DEMO), {"gw-01": b"k" * 32})
        as_of = dt.datetime(2026, 11, 23, 16, 30, tzinfo=dt.UTC)  # Tue 00:30 in Hefei
        return db, make_report(conn, Request("hf-precision", SAT, SUN), key=key, as_of=as_of)


def test_the_report_states_each_meters_certificate_and_the_declaration(
    report: tuple[str, dict[str, Any]], key: Ed25519PrivateKey
) -> None:
    db, doc = report
    block = doc["meter_register"]
    states = {m["id"]: m["status"] for m in block["meters"]}
    assert states.pop("wm-main") == "expired"
    assert states.pop("gm-main") == "missing"
    assert set(states.values()) == {"valid"}
    assert block["summary"] == {"valid": 7, "expires_in_period": 0, "expired": 1, "missing": 1}
    assert block["as_of"] == "2026-11-22"
    assert "GB 17167" in block["basis"]
    # the edition cited is the one whose text was checked, and the one replacing it is named
    assert "GB 17167-2025" in block["basis"]
    assert "2026-02-01" in block["basis_en"]
    main = next(m for m in block["meters"] if m["id"] == "em-main")
    assert (main["serial"], main["accuracy_class"], main["valid_until"]) == (
        "HF000001", "0.5S", "2027-03-09")  # fmt: skip
    assert main["warning"] is None
    water = next(m for m in block["meters"] if m["id"] == "wm-main")
    assert "2026-05-19" in water["warning"]
    assert "expired on 2026-05-19" in water["warning_en"]

    declaration = doc["declaration"]
    assert (declaration["signatory"], declaration["default"]) == ("王建国", True)
    assert declaration["date"] == "2026-11-24"  # the day of issue in Hefei, not in UTC
    assert declaration["text"] == DECLARATION_TEXT[0].format(software="factory-evidence")

    assert register_problems(doc) == []
    forged = copy.deepcopy(doc)
    ids = [m["id"] for m in doc["meter_register"]["meters"]]
    assert ids == sorted(ids)  # by site, then id
    forged["meter_register"]["meters"][ids.index("wm-main")]["status"] = "valid"
    assert any("wm-main: stated 'valid'" in p for p in register_problems(forged))
    assert any("the summary" in p for p in register_problems(forged))

    with psycopg.connect(db) as conn:
        assert verify(doc, conn=conn).ok
        older = copy.deepcopy(doc)  # a report made before the blocks
        for block_name in ("meter_register", "declaration", "signature"):
            older.pop(block_name)
        sign(older, key)
        assert verify(older, conn=conn).ok
    assert register_problems(older) == []
    assert meter_register_html(older, CTX) == declaration_html(older) == ""
    assert "<html" in render_html(older)


def test_the_printed_report_and_workbook_show_register_declaration_and_targets(
    report: tuple[str, dict[str, Any]],
) -> None:
    """The three blocks a report made now carries reach both renderings: the register and
    the declaration (this module's), and the targets (evidence/render_targets.py), whose
    verdicts page one also shows beside each headline figure."""
    _, doc = report
    measured = next(r for r in doc["targets"]["results"] if r["kpi"] == "nc_rate_measured")
    page = render_html(doc)
    one = page[page.index('<div class="page-one">') : page.index('<section class="keep">')]
    assert "目标" in one  # a column, as a figure has a target
    assert "Target" in one
    zh, en = {"met": ("达到", "met"), "not_met": ("未达到", "not met")}[measured["status"]]
    far = measured["difference"]
    assert f"&gt; 75 % (2027-12-31) {zh} ({far:+.1f} 个百分点)" in one
    assert f'<span class="en">{en} ({far:+.1f} pp)</span>' in one
    rest = page[len(one) :]
    for text in ("计量器具一览表", "wm-main", "盖章处", "王建国", "目标对照", "2024-03-27"):
        assert text in rest, text
    out = io.BytesIO()
    render_xlsx(doc, out)
    sheets = load_workbook(io.BytesIO(out.getvalue())).sheetnames
    assert {"计量器具 Meter register", "目标 Targets"} <= set(sheets)
    assert sheets[-1] == "签名 Signature"


def test_the_register_and_the_declaration_render(report: tuple[str, dict[str, Any]]) -> None:
    _, doc = report
    page = meter_register_html(doc, CTX)
    assert page.count("<tr") == 10  # a head and nine meters
    assert page.count('class="low') == 2 * 11  # two rows not valid, every cell highlighted
    assert "已过期" in page
    assert "expired on 2026-05-19" in page
    assert "HF000009" in page
    declaration = declaration_html(doc)
    assert "王建国" in declaration
    assert "盖章处" in declaration
    assert 'class="seal"' in declaration
    assert "2026-11-24" in declaration
    wb = Workbook()
    assert write_meter_register(wb.create_sheet(SHEET_TITLE), doc)
    out = io.BytesIO()
    wb.save(out)
    ws = load_workbook(io.BytesIO(out.getvalue()))[SHEET_TITLE]
    heads = [c.value for c in ws[6]]
    rows = [dict(zip(heads, (c.value for c in row), strict=True)) for row in ws.iter_rows(7)]
    assert [r["计量表 Meter"] for r in rows][-2:] == ["gm-main", "wm-main"]
    assert rows[-1]["状态 Status"] == "expired"
    assert rows[-1]["有效期至 Valid until"] == dt.datetime(2026, 5, 19)  # a date cell
    assert rows[-2]["证书编号 Certificate"] is None
    assert ws.cell(row=7 + 8, column=1).fill.fgColor.rgb.endswith("FDE2E2")
    assert not ws.cell(row=7, column=1).fill.fgColor.rgb.endswith("FDE2E2")
