"""GET /api/v1/reports/{id}/pdf: an issued report's printed page as a PDF, for whoever may
read it as HTML (its enterprise, its verifier), the same 404 for another enterprise's
report and an unknown id; without a browser a 503 naming how to install one, in Chinese
and English, never a server error."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.api.routes import reports as report_routes
from ingest_server.evidence.render_pdf import BROWSER_ENV
from ingest_server.repo import reports
from ingest_server.repo.accounts import add_account, new_token
from tests.harness.kpi_example import example_report

pytestmark = pytest.mark.slow
OTHER = "other-co"


@pytest.fixture
def api(db: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], str]]:
    doc = example_report()
    ent = doc["enterprise"]["id"]
    with psycopg.connect(db, autocommit=True) as conn:
        for eid in (ent, OTHER):
            conn.execute("INSERT INTO enterprises (id, name) VALUES (%s, %s)", (eid, eid))
        reports.store_report(conn, doc, created_by="test")
        tokens = {}
        for name, role, ents in (("ent", "enterprise", [ent]), ("verifier", "verifier", [ent]),
                                 ("other", "verifier", [OTHER])):  # fmt: skip
            add_account(conn, name, role, ents)
            tokens[name] = {"Authorization": f"Bearer {new_token(conn, name)}"}
    with TestClient(create_app(db, signing_key=tmp_path / "k.pem")) as c:
        yield c, tokens, doc["report_id"]


def test_the_pdf_for_those_who_may_read_the_report(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    c, tokens, rid = api
    monkeypatch.setattr(report_routes, "PRINTED", report_routes._Printed())  # none printed yet
    printed: list[str] = []
    real = report_routes.render_pdf

    def counted(doc: dict[str, Any]) -> bytes:
        printed.append(doc["report_id"])
        return real(doc)

    monkeypatch.setattr(report_routes, "render_pdf", counted)
    # no browser on the server: 503, saying how to install one
    monkeypatch.setenv(BROWSER_ENV, "/nonexistent/chromium")
    r = c.get(f"/api/v1/reports/{rid}/pdf", headers=tokens["ent"])
    assert r.status_code == 503
    error = r.json()["error"]
    assert error["code"] == "pdf_unavailable"
    assert "无法生成 PDF" in error["message"]
    assert f"{BROWSER_ENV}=/nonexistent/chromium is not an executable browser" in error["message"]
    monkeypatch.delenv(BROWSER_ENV)
    # the verifier, who may read the report but not issue one (a browser run: ~3 s each)
    r = c.get(f"/api/v1/reports/{rid}/pdf", headers=tokens["verifier"])
    assert r.status_code == 200, r.text
    # printed once: the enterprise's download is the same file
    again = c.get(f"/api/v1/reports/{rid}/pdf", headers=tokens["ent"])
    assert again.status_code == 200, again.text
    assert again.content == r.content
    assert printed == [rid, rid]  # the refused print, then the one kept
    assert r.headers["content-type"] == "application/pdf"
    name = 'filename="report-hf-precision-2026-11-01-2026-11-30.pdf"'
    assert name in r.headers["content-disposition"]
    assert r.content.startswith(b"%PDF-")
    unknown = c.get(f"/api/v1/reports/{uuid.uuid4()}/pdf", headers=tokens["other"])
    others = c.get(f"/api/v1/reports/{rid}/pdf", headers=tokens["other"])
    assert unknown.status_code == others.status_code == 404
    assert others.json()["error"]["code"] == "not_found"
    assert c.get(f"/api/v1/reports/{rid}/pdf").status_code == 401
