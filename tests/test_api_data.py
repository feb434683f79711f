"""The API's data views and the audited edits of declared attributes, per role, on a real
PostgreSQL with a stored plant."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest_server.api import create_app
from tests.kpi_harness import utc
from tests.test_api_auth import two_enterprises_with_accounts

T0 = utc(2026, 11, 15, 16).timestamp()


@pytest.fixture
def api(db: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, dict[str, str]], str]]:
    tokens = two_enterprises_with_accounts(db, 41)
    headers = {n: {"Authorization": f"Bearer {t}"} for n, t in tokens.items()}
    with TestClient(create_app(db, signing_key=tmp_path / "k.pem")) as c:
        yield c, headers, db


def test_enterprises_and_their_registry(api: Any) -> None:
    c, h, _ = api
    assert [e["id"] for e in c.get("/api/v1/enterprises", headers=h["root"]).json()] == [
        "hf",
        "zz",
    ]
    assert [e["id"] for e in c.get("/api/v1/enterprises", headers=h["hf-user"]).json()] == ["hf"]
    hf = c.get("/api/v1/enterprises/hf", headers=h["auditor"]).json()
    assert hf["sites"][0]["grid_region"] == "anhui"
    assert hf["sites"][0]["calendar"]["shifts"][0]["start"] == "08:00"
    assert {p["id"]: p["key_process"] for p in hf["processes"]} == {
        "turning": True,
        "washing": False,
    }
    assert c.get("/api/v1/enterprises/hf", headers=h["zz-user"]).status_code == 403
    assert c.get("/api/v1/enterprises/nope", headers=h["root"]).status_code == 404
    # a NUL in a path: PostgreSQL text cannot hold it; a 422 that says so, not a 500
    # (schemathesis found it)
    r = c.get("/api/v1/enterprises/a%00b", headers=h["root"])
    assert r.status_code == 422
    assert "NUL" in r.json()["error"]["message"]


def test_equipment_live_state_and_timeline(api: Any) -> None:
    c, h, db = api
    eq = {
        e["id"]: e for e in c.get("/api/v1/enterprises/hf/equipment", headers=h["hf-user"]).json()
    }
    with psycopg.connect(db) as conn:
        last = conn.execute(
            "SELECT state, start FROM state_intervals WHERE device = 'cnc-01' "
            "ORDER BY start DESC LIMIT 1"
        ).fetchone()
        assert last is not None
        stored = conn.execute(
            'SELECT start, "end", state FROM state_intervals WHERE device = %s '
            "AND start >= %s AND start < %s ORDER BY start",
            ("cnc-01", utc(2026, 11, 15, 18, 0), utc(2026, 11, 15, 22, 0)),
        ).fetchall()
    assert eq["cnc-01"]["state"] == last[0]
    assert eq["cnc-01"]["key_process"] is True
    assert eq["lathe-3"]["state"] is None  # not networked
    params = {"start": "2026-11-15T18:00:00Z", "end": "2026-11-15T22:00:00Z"}
    tl = c.get("/api/v1/enterprises/hf/equipment/cnc-01/timeline", params=params,
               headers=h["auditor"]).json()  # fmt: skip
    ivs = tl["intervals"]
    assert ivs[0]["start"] == "2026-11-15T18:00:00Z"  # clipped to the window
    assert [(i["state"]) for i in ivs[1:]] == [
        s for _, _, s in stored if _ > utc(2026, 11, 15, 18)
    ][: len(ivs) - 1]
    for a, b in pairwise(ivs):
        assert a["end"] == b["start"]
    bad = c.get("/api/v1/enterprises/hf/equipment/cnc-01/timeline",
                params={"start": "2026-11-15T22:00:00Z", "end": "2026-11-15T18:00:00Z"},
                headers=h["auditor"])  # fmt: skip
    assert bad.status_code == 422
    assert "end" in bad.json()["error"]["message"]
    assert c.get("/api/v1/enterprises/hf/equipment/nope/timeline",
                 headers=h["root"]).status_code == 404  # fmt: skip


def test_declared_attributes_are_edited_with_an_audit_trail(api: Any) -> None:
    c, h, db = api
    url = "/api/v1/enterprises/hf/equipment/cnc-02"
    r = c.patch(url, json={"nc": False, "note": "retrofit not done yet"}, headers=h["hf-user"])
    assert r.status_code == 200, r.text
    assert r.json()["nc"] is False
    # a verifier reads but may not edit; another enterprise may not even read
    assert c.patch(url, json={"nc": True}, headers=h["auditor"]).status_code == 403
    assert c.patch(url, json={"nc": True}, headers=h["zz-user"]).status_code == 403
    assert c.patch(url, json={"colour": "red"}, headers=h["hf-user"]).status_code == 422
    r = c.patch(url, json={"process": "painting"}, headers=h["hf-user"])
    assert r.status_code == 422
    assert "painting" in r.json()["error"]["message"]
    assert c.patch(url, json={}, headers=h["hf-user"]).status_code == 422
    c.patch(url, json={"ideal_cycle_time_s": 45, "process": "washing"}, headers=h["root"])
    trail = c.get(url + "/audit", headers=h["auditor"]).json()
    assert [(t["account"], t["field"], t["old"], t["new"]) for t in trail] == [
        ("hf-user", "nc", True, False),
        ("root", "process", "turning", "washing"),
        ("root", "ideal_cycle_time_s", 50.0, 45.0),
    ]
    assert trail[0]["note"] == "retrofit not done yet"
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT nc, process_id, ideal_cycle_time_s FROM equipment WHERE id = 'cnc-02'"
        ).fetchone()
    assert row == (False, "washing", 45.0)
    # the edit shows in the KPIs at once: one NC machine less in key processes
    kpis = c.get("/api/v1/enterprises/hf/kpis", params={"from": "2026-11-16", "to": "2026-11-16"},
                 headers=h["auditor"]).json()  # fmt: skip
    k = {x["id"]: x for x in kpis["kpis"]}
    assert k["nc_rate_declared"]["inputs"] == ["cnc-01"]


def test_series_downsampled_from_samples_or_rollups(api: Any) -> None:
    c, h, db = api
    day = {"device": "em-main", "tag": "energy_kwh", "start": "2026-11-15T16:00:00Z",
           "end": "2026-11-16T16:00:00Z"}  # fmt: skip
    hourly = c.get("/api/v1/enterprises/hf/series", params={**day, "points": 24},
                   headers=h["hf-user"]).json()  # fmt: skip
    assert hourly["step_s"] == 3600
    assert hourly["role"] == "energy_kwh"
    with psycopg.connect(db) as conn:
        n = conn.execute(
            "SELECT count(*) FROM samples s JOIN series se USING (series_id) "
            "WHERE se.device = 'em-main' AND se.tag = 'energy_kwh' AND s.ts >= %s AND s.ts < %s",
            (utc(2026, 11, 15, 16), utc(2026, 11, 16, 16)),
        ).fetchone()
    assert n is not None
    assert sum(p["samples"] for p in hourly["points"]) == n[0]
    assert len(hourly["points"]) <= 24
    fine = c.get("/api/v1/enterprises/hf/series", params={**day, "points": 1000},
                 headers=h["hf-user"]).json()  # fmt: skip
    assert fine["step_s"] == pytest.approx(86.4)
    assert sum(p["samples"] for p in fine["points"]) == n[0]
    assert all(p["min"] <= p["avg"] <= p["max"] for p in fine["points"])
    r = c.get("/api/v1/enterprises/hf/series", params={**day, "tag": "nope"}, headers=h["root"])
    assert r.status_code == 404
    r = c.get("/api/v1/enterprises/hf/series", params={**day, "points": 1}, headers=h["root"])
    assert r.status_code == 422
    assert "points" in r.json()["error"]["message"]


def test_gateways_dead_letters_and_factors(api: Any) -> None:
    c, h, db = api
    gws = c.get("/api/v1/enterprises/hf/gateways", headers=h["auditor"]).json()
    assert [(g["id"], g["has_key"]) for g in gws] == [("gw-01", True)]
    assert "hmac_key" not in gws[0]
    with psycopg.connect(db) as conn:
        conn.execute(
            "INSERT INTO dead_letters (topic, gid, reason, payload, payload_bytes) "
            "SELECT 'fe/v1/hf/p1/gw-01/data', gid, 'bad signature', 'x', 1 FROM gateways "
            "WHERE id = 'gw-01'"
        )
    dl = c.get("/api/v1/enterprises/hf/dead-letters", headers=h["auditor"]).json()
    assert [(d["gateway"], d["reason"]) for d in dl] == [("gw-01", "bad signature")]
    assert "payload" not in dl[0]
    assert c.get("/api/v1/enterprises/hf/dead-letters", headers=h["zz-user"]).status_code == 403
    assert c.get("/api/v1/enterprises/zz/dead-letters", headers=h["zz-user"]).json() == []
    f = c.get("/api/v1/factors", headers=h["zz-user"]).json()
    assert f["energy"][0]["version"] == "gbt2589-2020.1"
    assert any(r["region"] == "anhui" for r in f["emission"][0]["rows"])
