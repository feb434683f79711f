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

from ingest_server.api.app import create_app
from tests.api.test_auth import two_enterprises_with_accounts
from tests.harness.kpi import utc

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
    # where the data came from: this plant's gateway speaks v1, so none of it is signed
    origin = kpis["attestation"]
    assert origin["samples"] > 0, origin
    assert origin["attested"] == 0, origin
    assert {g["contract"] for g in origin["gateways"]} == {1}


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
        # no gateway row: an unregistered gateway on hf's topics is hf's, others' are not
        for topic in ("fe/v1/hf/p2/gw-new/data", "fe/v1/zz/p1/gw-01/data", "fe/v1/hfx/p1/g/data",
                      "junk/hf/p1/gw-01/data"):  # fmt: skip
            conn.execute(
                "INSERT INTO dead_letters (topic, reason, payload, payload_bytes, code) "
                "VALUES (%s, 'no such gateway', 'x', 1, 'unknown_gateway')",
                (topic,),
            )
    dl = c.get("/api/v1/enterprises/hf/dead-letters", headers=h["auditor"]).json()
    assert [(d["site"], d["gateway"], d["reason"]) for d in dl] == [
        ("p2", "gw-new", "no such gateway"), ("p1", "gw-01", "bad signature")]  # fmt: skip
    assert "payload" not in dl[0]
    assert c.get("/api/v1/enterprises/hf/dead-letters", headers=h["zz-user"]).status_code == 403
    zz = c.get("/api/v1/enterprises/zz/dead-letters", headers=h["zz-user"]).json()
    assert [d["topic"] for d in zz] == ["fe/v1/zz/p1/gw-01/data"]
    f = c.get("/api/v1/factors", headers=h["zz-user"]).json()
    assert f["energy"][0]["version"] == "gbt2589-2020.1"
    assert any(r["region"] == "anhui" for r in f["emission"][0]["rows"])


DAY = {"start": "2026-11-15T16:00:00Z", "end": "2026-11-16T16:00:00Z"}  # 11-16 in Hefei


def _deltas(db: str, device: str, role: str, a: Any, b: Any) -> float:
    with psycopg.connect(db) as conn:
        row = conn.execute(
            "SELECT coalesce(sum(d.delta), 0) FROM counter_deltas d JOIN series se "
            "USING (series_id) WHERE se.device = %s AND se.role = %s AND d.ts >= %s "
            "AND d.ts < %s",
            (device, role, a, b),
        ).fetchone()
    assert row is not None
    return float(row[0])


def test_energy_per_meter_per_hour_and_day(api: Any) -> None:
    c, h, db = api
    url = "/api/v1/enterprises/hf/energy"
    hourly = c.get(url, params={**DAY, "bucket": "hour"}, headers=h["auditor"]).json()
    meters = {m["id"]: m for m in hourly["meters"]}
    assert set(meters) == {"em-main", "em-sub"}
    assert meters["em-main"]["top_level"] is True
    assert meters["em-sub"]["parent"] == "em-main"
    assert meters["em-main"]["unit"] == "kWh"
    a, b = utc(2026, 11, 15, 16), utc(2026, 11, 16, 16)
    for mid, m in meters.items():
        assert m["measured"] is True
        assert 20 <= len(m["points"]) <= 24
        total = sum(p["quantity"] for p in m["points"])
        assert total == pytest.approx(_deltas(db, mid, "energy_kwh", a, b), rel=1e-9)
        assert total > 0
    # per local day: the same sum in one point at 00:00 Hefei time
    daily = c.get(url, params={**DAY, "bucket": "day"}, headers=h["hf-user"]).json()
    main = next(m for m in daily["meters"] if m["id"] == "em-main")
    assert [p["t"] for p in main["points"]] == ["2026-11-15T16:00:00Z"]
    assert main["points"][0]["quantity"] == pytest.approx(
        sum(p["quantity"] for p in meters["em-main"]["points"])
    )
    assert c.get(url, params=DAY, headers=h["zz-user"]).status_code == 403
    r = c.get(url, params={**DAY, "bucket": "week"}, headers=h["root"])
    assert r.status_code == 422
    assert "bucket" in r.json()["error"]["message"]
    long = {"start": "2026-01-01T00:00:00Z", "end": "2026-11-16T00:00:00Z"}
    assert c.get(url, params=long, headers=h["root"]).status_code == 422  # 319 days by hour
    assert c.get(url, params={**long, "bucket": "day"}, headers=h["root"]).status_code == 200


def test_equipment_counters(api: Any) -> None:
    c, h, db = api
    url = "/api/v1/enterprises/hf/equipment/cnc-01/counters"
    r = c.get(url, params=DAY, headers=h["auditor"]).json()
    assert {t["role"] for t in r["tags"]} == {
        "machine_state", "part_count_total", "part_count_good", "device_status"
    }  # fmt: skip
    counters = {x["role"]: x for x in r["counters"]}
    assert set(counters) == {"part_count_total", "part_count_good"}
    a, b = utc(2026, 11, 15, 16), utc(2026, 11, 16, 16)
    for role, x in counters.items():
        made = sum(p["quantity"] for p in x["points"])
        assert made == _deltas(db, "cnc-01", role, a, b)
        assert made > 0
    assert r["power"] == []  # neither it nor its meter (em-sub) has a power tag
    assert c.get(url, params=DAY, headers=h["zz-user"]).status_code == 403
    assert c.get(url.replace("cnc-01", "nope"), headers=h["root"]).status_code == 404


def test_kpis_with_baseline_and_data_quality_and_trend(api: Any) -> None:
    c, h, _ = api
    url = "/api/v1/enterprises/hf/kpis"
    day = {"from": "2026-11-16", "to": "2026-11-16"}
    entry = {**day, "output": 400, "value_added_10k_cny": 12.5}
    assert c.post("/api/v1/enterprises/hf/production", json=entry,
                  headers=h["hf-user"]).status_code == 201  # fmt: skip
    doc = c.get(url, params={**day, "baseline_from": "2026-11-16", "baseline_to": "2026-11-16"},
                headers=h["auditor"]).json()  # fmt: skip
    k = {x["id"]: x for x in doc["kpis"]}
    assert doc["baseline"]["from"] == "2026-11-16"
    # the same day as its own baseline: no change
    assert k["energy_per_unit"]["value"] > 0
    assert k["energy_per_unit_change"]["value"] == 0
    assert k["energy_per_value_added_change"]["value"] == 0
    assert {t["device"] for t in doc["quality"]["tags"]} >= {"gw-01/cnc-01", "gw-01/em-main"}
    assert set(doc["quality"]) == {"tags", "gaps", "counter_anomalies"}
    r = c.get(url, params={**day, "baseline_from": "2026-11-16"}, headers=h["auditor"])
    assert r.status_code == 422
    assert "baseline" in r.json()["error"]["message"]

    trend = c.get("/api/v1/enterprises/hf/trend",
                  params={"from": "2026-11-15", "to": "2026-11-17",
                          "kpi": ["energy_per_unit", "oee"]},
                  headers=h["hf-user"]).json()  # fmt: skip
    assert [p["from"] for p in trend["points"]] == ["2026-11-15", "2026-11-16", "2026-11-17"]
    assert set(trend["kpis"]) == {"energy_per_unit", "oee"}
    mid = trend["points"][1]["kpis"]
    assert mid == {"energy_per_unit": k["energy_per_unit"]["value"], "oee": k["oee"]["value"]}
    assert trend["points"][0]["kpis"]["energy_per_unit"] is None  # no output entered
    weeks = c.get("/api/v1/enterprises/hf/trend",
                  params={"from": "2026-11-01", "to": "2026-11-30", "step": "week"},
                  headers=h["hf-user"]).json()  # fmt: skip
    # 11-01 is a Sunday: weeks cut at Mondays, the ends clipped to the period
    assert [(p["from"], p["to"]) for p in weeks["points"]] == [
        ("2026-11-01", "2026-11-01"), ("2026-11-02", "2026-11-08"), ("2026-11-09", "2026-11-15"),
        ("2026-11-16", "2026-11-22"), ("2026-11-23", "2026-11-29"), ("2026-11-30", "2026-11-30"),
    ]  # fmt: skip
    months = c.get("/api/v1/enterprises/hf/trend",
                   params={"from": "2026-01-15", "to": "2026-03-02", "step": "month",
                           "kpi": "energy_tce"}, headers=h["hf-user"]).json()  # fmt: skip
    assert [(p["from"], p["to"]) for p in months["points"]] == [
        ("2026-01-15", "2026-01-31"), ("2026-02-01", "2026-02-28"), ("2026-03-01", "2026-03-02"),
    ]  # fmt: skip
    r = c.get("/api/v1/enterprises/hf/trend", params={"from": "2026-01-01", "to": "2026-12-31"},
              headers=h["hf-user"])  # fmt: skip
    assert r.status_code == 422
    assert "step" in r.json()["error"]["message"]
    assert c.get("/api/v1/enterprises/hf/trend", params=day,
                 headers=h["zz-user"]).status_code == 403  # fmt: skip


def test_logout_revokes_the_token(api: Any) -> None:
    c, h, _ = api
    assert c.get("/api/v1/keys", headers=h["hf-user"]).status_code == 200
    assert c.post("/api/v1/logout", headers=h["hf-user"]).status_code == 204
    assert c.get("/api/v1/keys", headers=h["hf-user"]).status_code == 401
    assert c.post("/api/v1/logout", headers=h["hf-user"]).status_code == 401
    assert c.get("/api/v1/keys", headers=h["auditor"]).status_code == 200  # others stay
