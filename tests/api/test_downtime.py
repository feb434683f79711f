"""Downtime reasons through the API on a real PostgreSQL (FastAPI's TestClient): the
catalogue, attaching with its trail and roles, the loss Pareto and MTBF/MTTR by cause over
a plant whose every second is known, a reason that outlives re-derivation, alarm texts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from edge_agent.contract.sample import Sample
from ingest_server.api.app import create_app
from ingest_server.db.schema import migrate
from ingest_server.repo.accounts import add_account, new_token
from ingest_server.repo.registry import import_registry
from tests.harness.ingest import GW, KEY, batch, birth, open_store, s, write
from tests.harness.kpi import prepare_kpi, utc
from tests.ingest.test_registry_downtime import REASONS, with_reasons

T0 = utc(2026, 11, 16, 1).timestamp()
WINDOW = {"start": "2026-11-16T01:00:00Z", "end": "2026-11-16T02:00:00Z"}
BIRTH = [
    {"id": "cnc-01", "protocol": "opcua", "metadata": {}, "tags": [
        {"t": "state", "role": "machine_state"}, {"t": "alarm_text", "role": "alarm"},
        {"t": "alarm", "role": "alarm"}]},
    {"id": "cnc-02", "protocol": "opcua", "metadata": {}, "tags": [
        {"t": "state", "role": "machine_state"}]},
]  # fmt: skip


def states(device: str, changes: list[tuple[float, str]]) -> list[Sample]:
    return [s(device, "state", T0 + t, v) for t, v in changes]


# every second of [T0, T0 + 3600) known; the last interval ends after the window
# cnc-01: RUNNING 0-600, DOWN 600-900, RUNNING 900-1500, IDLE 1500-1800, RUNNING 1800-2400,
#         DOWN 2400-2700, RUNNING 2700-4000;  cnc-02: RUNNING 0-300, IDLE 300-900, RUNNING
PLANT = [
    *states("cnc-01", [(0, "RUNNING"), (600, "DOWN"), (900, "RUNNING"), (1500, "IDLE"),
                       (1800, "RUNNING"), (2400, "DOWN"), (2700, "RUNNING"), (3300, "RUNNING"),
                       (4000, "OFF")]),
    *states("cnc-02", [(0, "RUNNING"), (300, "IDLE"), (900, "RUNNING"), (1700, "RUNNING"),
                       (2500, "RUNNING"), (3300, "RUNNING"), (4000, "OFF")]),
    *[s("cnc-01", "alarm_text", T0 + t, v) for t, v in [
        (0, ""), (600, "E101 主轴过载"), (900, ""), (1800, ""), (2400, "E205 润滑压力低"),
        (2700, ""), (3300, "")]],
    *[s("cnc-01", "alarm", T0 + t, v) for t, v in [(0, 0.0), (600, 1.0), (900, 0.0),
                                                   (1800, 0.0), (3300, 0.0)]],
]  # fmt: skip


def at(offset: float) -> str:
    return dt.datetime.fromtimestamp(T0 + offset, dt.UTC).isoformat()


def make_plant(db: str, tmp: Path) -> tuple[TestClient, dict[str, dict[str, str]]]:
    prepare_kpi(db)
    with psycopg.connect(db, autocommit=True) as conn:
        tooling = {"id": "tooling", "name": "刀具", "name_en": "Tooling", "category": "unplanned"}
        import_registry(conn, with_reasons([*REASONS, tooling]), {GW: KEY})
        tokens = {}
        for name, role, ents in (("root", "admin", []), ("op", "enterprise", ["hf"]),
                                 ("auditor", "verifier", ["hf"])):  # fmt: skip
            add_account(conn, name, role, ents)
            tokens[name] = {"Authorization": f"Bearer {new_token(conn, name)}"}
    store = open_store(db)
    try:
        write(store, ("birth", birth(BIRTH, boot=2)))
        write(store, ("data", batch(1, PLANT, boot=2)))
    finally:
        store.conn.close()
    return TestClient(create_app(db, signing_key=tmp / "k.pem")), tokens


@pytest.fixture(scope="module")
def plant(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, dict[str, str]]]]:
    with pg_server.database() as db:
        migrate(db)
        client, tokens = make_plant(db, tmp_path_factory.mktemp("downtime"))
        with client:
            yield client, tokens


def put(client: TestClient, headers: dict[str, str], eid: str, **body: Any) -> httpx.Response:
    return client.put(f"/api/v1/enterprises/hf/equipment/{eid}/stops/reason", json=body,
                      headers=headers)  # fmt: skip


def error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    message: str = r.json()["error"]["message"]
    return message


def test_the_catalogue_and_who_may_attach(
    plant: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, tokens = plant
    r = client.get("/api/v1/enterprises/hf/downtime-reasons", headers=tokens["auditor"])
    assert r.status_code == 200, r.text
    assert [(x["id"], x["applies_to"], x["active"]) for x in r.json()] == [
        ("breakdown", "DOWN", True), ("cleaning", "both", True), ("no-material", "IDLE", True),
        ("tooling", "both", True),
    ]  # fmt: skip
    assert r.json()[0]["name"] == "设备故障"
    assert r.json()[0]["name_en"] == "Breakdown"
    # a verifier reads and may not attach
    stops = client.get("/api/v1/enterprises/hf/equipment/cnc-01/stops", params=WINDOW,
                       headers=tokens["auditor"])  # fmt: skip
    assert stops.status_code == 200, stops.text
    message = error(put(client, tokens["auditor"], "cnc-01", start=at(600), reason="tooling"),
                    403)  # fmt: skip
    assert "may not attach downtime reasons to enterprise 'hf'" in message
    assert client.get("/api/v1/enterprises/hf/downtime-reasons").status_code == 401


def test_bad_input_names_the_field(plant: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, tokens = plant
    op = tokens["op"]
    message = error(put(client, op, "cnc-01", start=at(600), reason="gremlins"), 422)
    assert message.startswith("reason: 'gremlins' is not in the enterprise's catalogue")
    assert "breakdown, cleaning, tooling" in message  # those a DOWN interval takes
    message = error(put(client, op, "cnc-01", start=at(600), reason="no-material"), 422)
    assert "applies to IDLE intervals and this one is DOWN" in message
    message = error(put(client, op, "cnc-01", start=at(601), reason="breakdown"), 422)
    assert message.startswith("start: cnc-01 has no state interval starting at")
    message = error(put(client, op, "cnc-01", start=at(0), reason="breakdown"), 422)
    assert "has a RUNNING interval starting at" in message
    # nothing to clear: no change, and no row on the trail (the trail test counts them)
    cleared = put(client, op, "cnc-01", start=at(601))
    assert (cleared.status_code, cleared.json()) == (200, None)
    message = error(put(client, op, "cnc-01", start="2026-11-16T01:10:00", reason="x"), 422)
    assert message.startswith("start: ")
    assert "no time zone" in message
    assert "no equipment 'nope'" in error(put(client, op, "nope", start=at(600), reason="x"), 404)
    losses = "/api/v1/enterprises/hf/losses"
    message = error(client.get(losses, params={**WINDOW, "site": "zz"}, headers=op), 422)
    assert message == "site: hf has no site 'zz'; give one of p1"
    message = error(client.get(losses, params={**WINDOW, "process": "zz"}, headers=op), 422)
    assert message == "process: hf has no process 'zz'; give one of turning, washing"


def test_attach_change_clear_with_the_trail_and_the_losses(
    plant: tuple[TestClient, dict[str, dict[str, str]]],
) -> None:
    client, tokens = plant
    op = tokens["op"]
    base = "/api/v1/enterprises/hf"
    stops = client.get(f"{base}/equipment/cnc-01/stops", params=WINDOW, headers=op).json()
    assert [(x["state"], x["start"], x["end"], x["reason"]) for x in stops["stops"]] == [
        ("DOWN", "2026-11-16T01:10:00Z", "2026-11-16T01:15:00Z", None),
        ("IDLE", "2026-11-16T01:25:00Z", "2026-11-16T01:30:00Z", None),
        ("DOWN", "2026-11-16T01:40:00Z", "2026-11-16T01:45:00Z", None),
    ]
    assert stops["changed"] == []

    r = put(client, op, "cnc-01", start=stops["stops"][0]["start"], reason="tooling", note="")
    assert r.status_code == 200, r.text
    assert (r.json()["reason"], r.json()["state"], r.json()["account"]) == ("tooling", "DOWN", "op")
    # changed, with a note; the same again changes nothing
    for _ in range(2):
        r = put(client, op, "cnc-01", start=at(600), reason="breakdown", note="主轴轴承 bearing")
        assert r.json()["reason"] == "breakdown"
    assert put(client, op, "cnc-01", start=at(1500), reason="no-material").status_code == 200
    assert put(client, op, "cnc-02", start=at(300), reason="no-material").status_code == 200
    r = put(client, tokens["root"], "cnc-01", start=at(2400), reason="cleaning")
    assert r.status_code == 200
    r = put(client, op, "cnc-01", start=at(2400), reason=None)  # cleared
    assert r.status_code == 200
    assert r.json() is None

    trail = client.get(f"{base}/downtime-audit", params={"equipment": "cnc-01"},
                       headers=tokens["auditor"]).json()  # fmt: skip
    assert [(x["start"][11:16], x["account"], x["old"], x["new"]) for x in trail] == [
        ("01:10", "op", None, {"reason": "tooling", "note": ""}),
        ("01:10", "op", {"reason": "tooling", "note": ""},
         {"reason": "breakdown", "note": "主轴轴承 bearing"}),
        ("01:25", "op", None, {"reason": "no-material", "note": ""}),
        ("01:40", "root", None, {"reason": "cleaning", "note": ""}),
        ("01:40", "op", {"reason": "cleaning", "note": ""}, None),
    ]  # fmt: skip
    everyone = client.get(f"{base}/downtime-audit", headers=op).json()
    assert len(everyone) == 6
    assert {x["equipment"] for x in everyone} == {"cnc-01", "cnc-02"}

    stops = client.get(f"{base}/equipment/cnc-01/stops", params=WINDOW, headers=op).json()
    assert [(x["reason"], x["note"]) for x in stops["stops"]] == [
        ("breakdown", "主轴轴承 bearing"), ("no-material", ""), (None, None)]  # fmt: skip

    # by hand: idle no-material 300 (cnc-01) + 600 (cnc-02); DOWN breakdown 300, none 300;
    # running 2700 (cnc-01) + 3000 (cnc-02)
    r = client.get(f"{base}/losses", params=WINDOW, headers=tokens["auditor"])
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["running_s"] == 5700
    (total,) = doc["total"]
    assert total["loss_s"] == 1500
    assert [(b["reason"], b["down_s"], b["idle_s"], b["stops"], b["share"], b["cumulative_share"])
            for b in total["bars"]] == [
        ("no-material", 0, 900, 2, 0.6, 0.6),
        ("breakdown", 300, 0, 1, 0.2, 0.8),
        (None, 300, 0, 1, 0.2, 1.0),
    ]  # fmt: skip
    assert [(p["group"], p["loss_s"]) for p in doc["by_process"]] == [("turning", 1500)]
    assert [(p["group"], p["loss_s"]) for p in doc["by_equipment"]] == [
        ("cnc-01", 900), ("cnc-02", 600)]  # fmt: skip
    assert [(c["reason"], c["events"], c["down_s"], c["mtbf_s"], c["mttr_s"])
            for c in doc["by_cause"]] == [
        ("breakdown", 1, 300, 5700, 300), (None, 1, 300, 5700, 300)]  # fmt: skip
    assert {x["id"] for x in doc["reasons"]} >= {"breakdown", "no-material"}

    one = client.get(f"{base}/losses", params={**WINDOW, "equipment": "cnc-02"}, headers=op)
    assert (one.json()["running_s"], one.json()["by_cause"]) == (3000, [])
    assert [b["reason"] for b in one.json()["total"][0]["bars"]] == ["no-material"]
    washing = client.get(f"{base}/losses", params={**WINDOW, "process": "washing"}, headers=op)
    assert (washing.json()["total"], washing.json()["running_s"]) == ([], 0)


def test_alarm_texts_of_a_window(plant: tuple[TestClient, dict[str, dict[str, str]]]) -> None:
    client, tokens = plant
    url = "/api/v1/enterprises/hf/equipment/cnc-01/alarms"
    r = client.get(url, params=WINDOW, headers=tokens["auditor"])
    assert r.status_code == 200, r.text
    assert [(a["tag"], a["start"][11:19], a["end"][11:19], a["text"], a["value"])
            for a in r.json()["alarms"]] == [
        ("alarm", "01:10:00", "01:15:00", None, 1.0),
        ("alarm_text", "01:10:00", "01:15:00", "E101 主轴过载", None),
        ("alarm_text", "01:40:00", "01:45:00", "E205 润滑压力低", None),
    ]  # fmt: skip
    # an alarm raised before the window counts from its start
    late = client.get(url, params={"start": at(700), "end": at(3600)}, headers=tokens["op"])
    assert [(a["tag"], a["start"][11:19]) for a in late.json()["alarms"]][:2] == [
        ("alarm", "01:11:40"), ("alarm_text", "01:11:40")]  # fmt: skip
    none = client.get("/api/v1/enterprises/hf/equipment/cnc-02/alarms", params=WINDOW,
                      headers=tokens["op"])  # fmt: skip
    assert none.json()["alarms"] == []


def test_a_reason_outlives_re_derivation(db: str, tmp_path: Path) -> None:
    """Late samples re-derive the intervals: a reason whose interval only ended earlier
    stays; one whose interval now starts elsewhere is listed as changed, counted nowhere."""
    client, tokens = make_plant(db, tmp_path)
    op = tokens["op"]
    with client:
        assert put(client, op, "cnc-01", start=at(600), reason="breakdown").status_code == 200
        assert put(client, op, "cnc-01", start=at(2400), reason="tooling").status_code == 200
        store = open_store(db)
        try:  # DOWN heard from 500 (not 600); IDLE from 2650 (DOWN ends there, not 2700)
            late = [s("cnc-01", "state", T0 + 500, "DOWN"), s("cnc-01", "state", T0 + 2650, "IDLE")]
            write(store, ("data", batch(2, late, boot=2)))
        finally:
            store.conn.close()
        stops = client.get("/api/v1/enterprises/hf/equipment/cnc-01/stops", params=WINDOW,
                           headers=op).json()  # fmt: skip
        assert [(x["state"], x["start"][11:16], x["end"][11:16], x["reason"])
                for x in stops["stops"]] == [
            ("DOWN", "01:08", "01:15", None),
            ("IDLE", "01:25", "01:30", None),
            ("DOWN", "01:40", "01:44", "tooling"),
            ("IDLE", "01:44", "01:45", None),
        ]  # fmt: skip
        assert [(c["start"][11:16], c["reason"]) for c in stops["changed"]] == [
            ("01:10", "breakdown")]  # fmt: skip
        causes = client.get("/api/v1/enterprises/hf/losses", params=WINDOW, headers=op).json()
        assert [(c["reason"], c["down_s"]) for c in causes["by_cause"]] == [
            (None, 400), ("tooling", 250)]  # fmt: skip
        # attached again to the interval as it now stands, the old one cleared
        assert put(client, op, "cnc-01", start=at(500), reason="breakdown").status_code == 200
        assert put(client, op, "cnc-01", start=at(600), reason=None).status_code == 200
        stops = client.get("/api/v1/enterprises/hf/equipment/cnc-01/stops", params=WINDOW,
                           headers=op).json()  # fmt: skip
        assert stops["changed"] == []
        assert [x["reason"] for x in stops["stops"]] == ["breakdown", None, "tooling", None]
        trail = client.get("/api/v1/enterprises/hf/downtime-audit", headers=op).json()
        assert [(x["start"][11:16], x["state"], x["new"]) for x in trail][-1] == (
            "01:10", "DOWN", None)  # fmt: skip
