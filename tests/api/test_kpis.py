"""The evidence API on a real PostgreSQL (FastAPI's TestClient, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.repo.accounts import add_account, new_token
from tests.evidence.test_canonical import browser_reserialised
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()


@pytest.fixture
def client(db: str, tmp_path: Path) -> Iterator[TestClient]:
    prepare_kpi(db)
    store_samples(db, plant_samples(21, T0, T0 + 86400), 21)
    with psycopg.connect(db, autocommit=True) as conn:
        add_account(conn, "root", "admin", [])
        token = new_token(conn, "root")
    app = create_app(db, signing_key=tmp_path / "k.pem")
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def test_report_in_three_formats_and_verify(client: TestClient, db: str) -> None:
    r = client.post(
        "/api/v1/enterprises/hf/production",
        json={"from": "2026-11-16", "to": "2026-11-16", "output": 500, "value_added_10k_cny": 9},
    )
    assert r.status_code == 201, r.text
    entries = client.get("/api/v1/enterprises/hf/production").json()
    assert [e["output"] for e in entries] == [500]

    r = client.get(
        "/api/v1/enterprises/hf/report", params={"from": "2026-11-16", "to": "2026-11-16"}
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    kpis = {k["id"]: k for k in doc["kpis"]}
    assert kpis["energy_per_unit"]["denominator"] == 500
    assert doc["signature"]["key_id"] in {k["key_id"] for k in client.get("/api/v1/keys").json()}

    v = client.post("/api/v1/reports/verify", json=doc).json()
    assert v["ok"] is True, v
    assert v["reasons"] == []
    assert len(v["checks"]) == len(doc["kpis"])
    # the file's exact bytes, and the file as a browser re-serialises it (75.0 -> 75,
    # keys reordered, indented): both verify, the signature being over RFC 8785 JSON
    headers = {"Content-Type": "application/json"}
    v = client.post("/api/v1/reports/verify", content=r.content, headers=headers).json()
    assert v["ok"] is True, v
    posted = browser_reserialised(doc)
    assert posted != r.content
    v = client.post("/api/v1/reports/verify", content=posted, headers=headers).json()
    assert v["ok"] is True, v
    doc["kpis"][0]["value"] = 1.0
    v = client.post("/api/v1/reports/verify", json=doc).json()
    assert v["ok"] is False
    assert v["signature"].startswith("INVALID")
    assert v["reasons"][0]["code"] == "signature_invalid"
    bad = client.post("/api/v1/reports/verify", content=b'{"format": NaN}', headers=headers)
    assert bad.status_code == 422
    assert "NaN, which is not JSON" in bad.json()["error"]["message"]

    html = client.get(
        "/api/v1/enterprises/hf/report",
        params={"from": "2026-11-16", "to": "2026-11-16", "format": "html"},
    )
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "测试企业" in html.text
    xlsx = client.get(
        "/api/v1/enterprises/hf/report",
        params={"from": "2026-11-16", "to": "2026-11-16", "format": "xlsx"},
    )
    assert xlsx.status_code == 200
    assert xlsx.content[:2] == b"PK"  # a zip container


def test_errors_name_the_field_and_the_fix(client: TestClient) -> None:
    r = client.get("/api/v1/enterprises/hf/report", params={"from": "2026-11-16", "to": "soon"})
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "invalid_parameter"
    assert "to" in body["message"]
    assert body["message_zh"] == "to: 应为日期 (YYYY-MM-DD)", body
    r = client.get(
        "/api/v1/enterprises/hf/report",
        params={"from": "2026-11-16", "to": "2026-11-17", "coverage_threshold": 3},
    )
    assert r.status_code == 422
    assert "coverage_threshold" in r.json()["error"]["message"]
    # the same in Chinese, for the console: the field as sent, the limit from pydantic's
    assert r.json()["error"]["message_zh"] == "coverage_threshold: 应小于或等于 1.0"
    r = client.get(
        "/api/v1/enterprises/zz/report", params={"from": "2026-11-16", "to": "2026-11-17"}
    )
    assert r.status_code == 404
    assert "registry import" in r.json()["error"]["message"]
    r = client.get(
        "/api/v1/enterprises/hf/report", params={"from": "2026-11-17", "to": "2026-11-16"}
    )
    assert r.status_code == 422
    assert "before it starts" in r.json()["error"]["message"]
    r = client.post(
        "/api/v1/enterprises/hf/production", json={"from": "2026-11-16", "to": "2026-11-16"}
    )
    assert r.status_code == 422
    r = client.post("/api/v1/reports/verify", json={"format": "factory-evidence.report"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_report"
    r = client.post("/api/v1/reports/verify", json={"hello": 1})
    assert r.status_code == 200
    assert r.json()["ok"] is False
    assert "not a factory-evidence.report" in r.json()["signature"]


def test_production_for_an_unknown_enterprise_is_404(client: TestClient, db: str) -> None:
    r = client.post(
        "/api/v1/enterprises/nobody/production",
        json={"from": "2026-11-16", "to": "2026-11-16", "output": 1},
    )
    assert r.status_code == 404
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM production_entries").fetchone() == (0,)
