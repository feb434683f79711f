"""Every date and time parameter of the API, found in the app's own OpenAPI schema (a
new route is covered the day it is added): values at the ends of the calendar, a period
that ends before it starts, a period longer than the route allows, each a 422 naming the
parameter, never a 500. And every API answer says `Cache-Control: no-store`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.repo.accounts import add_account, new_token, set_password
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()
# a valid value for each parameter of a route with dates; a new route whose parameter is
# not here fails the test, naming it
DATES = {
    "from": "2026-11-16",
    "to": "2026-11-16",
    "baseline_from": "2026-11-15",
    "baseline_to": "2026-11-15",
    "start": "2026-11-15T16:00:00Z",
    "end": "2026-11-15T17:00:00Z",
}
OTHERS = {"enterprise": "hf", "eid": "cnc-01", "device": "em-main", "tag": "energy_kwh"}
BODY_OTHERS = {"output": 100.0}
# the extremes: the calendar's first and last days, and its first instant in a zone ahead
# of UTC (whose conversion to UTC overflowed)
EXTREME = {
    "date": ["0001-01-01", "9999-12-31", "1969-12-31", "3000-01-01"],
    "date-time": [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "1969-12-31T23:59:59Z",
    ],
}
PAIRS = [("from", "to"), ("baseline_from", "baseline_to"), ("start", "end")]
# an entry of figures, not a computation: any period in range
UNLIMITED = {("POST", "/api/v1/enterprises/{enterprise}/production")}
# for each pair, a first value after the second (the other dates as in DATES)
BACKWARDS = {
    "from": ("2026-11-17", "2026-11-16"),
    "baseline_from": ("2026-11-15", "2026-11-14"),
    "start": ("2026-11-15T17:00:00Z", "2026-11-15T16:00:00Z"),
}


@pytest.fixture(scope="module")
def client(
    pg_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    from ingest_server.db.schema import migrate  # noqa: PLC0415

    with pg_server.database() as db:
        migrate(db)
        prepare_kpi(db)
        store_samples(db, plant_samples(61, T0, T0 + 3600), 61)
        with psycopg.connect(db, autocommit=True) as conn:
            add_account(conn, "root", "admin", [])
            set_password(conn, "root", "a long enough secret")
            token = new_token(conn, "root")
        key = Path(tmp_path_factory.mktemp("dates")) / "k.pem"
        with TestClient(create_app(db, signing_key=key)) as c:
            yield c, {"Authorization": f"Bearer {token}"}


def _date_format(schema: dict[str, Any]) -> str | None:
    for s in [schema, *schema.get("anyOf", [])]:
        if s.get("format") in EXTREME:
            return str(s["format"])
    return None


def _body(
    op: dict[str, Any], components: dict[str, Any], dates: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """The date fields of an operation's JSON body (into `dates`) and its other values."""
    content = op.get("requestBody", {}).get("content", {}).get("application/json", {})
    ref = content.get("schema", {}).get("$ref", "")
    if not ref:
        return {}
    props: dict[str, Any] = components[ref.rsplit("/", 1)[-1]].get("properties", {})
    for name, schema in props.items():
        fmt = _date_format(schema)
        if fmt:
            dates[name] = ("body", fmt)
    return {k: v for k, v in BODY_OTHERS.items() if k in props}


def dated_routes(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Each operation with date parameters: where they are (query or body), their format,
    and a valid request to vary."""
    components = spec.get("components", {}).get("schemas", {})
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            dates: dict[str, tuple[str, str]] = {}  # name -> (query | body, format)
            needed: list[tuple[str, str]] = []
            params: dict[str, Any] = {}
            url = path
            for p in op.get("parameters", []):
                fmt = _date_format(p["schema"])
                if fmt:
                    dates[p["name"]] = ("query", fmt)
                elif p["in"] == "path" or p.get("required"):
                    needed.append((p["in"], p["name"]))
            body = _body(op, components, dates)
            if not dates:
                continue
            for where, name in needed:
                assert name in OTHERS, f"{method} {path}: add a valid value for {name}"
                if where == "path":
                    url = url.replace("{" + name + "}", OTHERS[name])
                else:
                    params[name] = OTHERS[name]
            for name, (where, _) in dates.items():
                assert name in DATES, f"{method} {path}: add a valid value for {name}"
                (params if where == "query" else body)[name] = DATES[name]
            out.append({"method": method.upper(), "url": url, "path": path, "dates": dates,
                        "params": params, "body": body})  # fmt: skip
    return out


def call(c: TestClient, h: dict[str, str], route: dict[str, Any], **changes: str) -> Any:
    params, body = dict(route["params"]), dict(route["body"])
    for name, value in changes.items():
        (params if route["dates"][name][0] == "query" else body)[name] = value
    return c.request(route["method"], route["url"], params=params, json=body or None, headers=h)


def refused(r: Any, name: str, *words: str) -> None:
    assert r.status_code == 422, (r.status_code, r.text)
    message = r.json()["error"]["message"]
    assert message.startswith(f"{name}:") or f"; {name}:" in message, message
    for w in words:
        assert w in message, message


def test_every_date_parameter_refuses_the_ends_of_the_calendar(client: Any) -> None:
    c, h = client
    routes = dated_routes(c.get("/openapi.json").json())
    found = {(r["method"], r["path"], name) for r in routes for name in r["dates"]}
    # the report, KPIs, trend, timeline, series, counters, energy, reports, production
    assert len(routes) >= 9, sorted(found)
    assert ("GET", "/api/v1/enterprises/{enterprise}/equipment/{eid}/timeline", "end") in found
    for route in routes:
        ok = call(c, h, route)
        assert ok.status_code < 300, (route["path"], ok.text)
        for name, (_, fmt) in route["dates"].items():
            for value in EXTREME[fmt]:
                r = call(c, h, route, **{name: value})
                what = f"{route['method']} {route['path']} {name}={value}"
                assert r.status_code == 422, (what, r.status_code, r.text)
                # the parameter and the accepted range are named
                refused(r, name, "1970-01-01", "2999-12-31")


def test_periods_that_end_before_they_start_or_run_too_long(client: Any) -> None:
    c, h = client
    routes = dated_routes(c.get("/openapi.json").json())
    pairs = 0
    for route in routes:
        for first, second in PAIRS:
            if first in route["dates"] and second in route["dates"]:
                pairs += 1
                later, earlier = BACKWARDS[first]
                r = call(c, h, route, **{first: later, second: earlier})
                refused(r, second, first)
        if route["dates"].keys() >= {"start", "end"}:
            # at most 92 days by the hour (the default bucket), 400 by the day
            start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
            far = (start + dt.timedelta(days=401)).isoformat()
            refused(call(c, h, route, start=start.isoformat(), end=far), "end", "days")
        if route["dates"].keys() >= {"from", "to"}:
            # every date in range, but a thousand years of KPIs would take hours
            r = call(c, h, route, **{"from": "1970-01-01", "to": "2999-12-31"})
            if (route["method"], route["path"]) in UNLIMITED:
                assert r.status_code < 300, r.text
            elif "step" in r.text:
                refused(r, "step", "at most 62")  # the trend: its own limit comes first
            else:
                refused(r, "to", "at most 1827")
    assert pairs >= 11
    # the trend: at most 62 steps
    r = c.get("/api/v1/enterprises/hf/trend", params={"from": "2026-01-01", "to": "2026-12-31"},
              headers=h)  # fmt: skip
    refused(r, "step", "at most 62")


def test_a_start_alone_at_the_first_instant_is_a_period_not_an_overflow(client: Any) -> None:
    c, h = client
    for path in ("equipment/cnc-01/timeline", "energy", "equipment/cnc-01/counters"):
        r = c.get(f"/api/v1/enterprises/hf/{path}", params={"end": "1970-01-01T00:00:00Z"},
                  headers=h)  # fmt: skip
        refused(r, "end", "after start")
        r = c.get(f"/api/v1/enterprises/hf/{path}", params={"end": "1970-01-02T00:00:00Z"},
                  headers=h)  # fmt: skip
        assert r.status_code == 200, r.text


def test_api_answers_are_not_stored_by_browsers_or_proxies(client: Any) -> None:
    c, h = client
    login = c.post("/api/v1/login", json={"name": "root", "password": "a long enough secret"})
    assert login.status_code == 200
    assert login.headers["cache-control"] == "no-store"
    failed = c.post("/api/v1/login", json={"name": "root", "password": "wrong"})
    assert failed.status_code == 401
    assert failed.headers["cache-control"] == "no-store"
    data = c.get("/api/v1/enterprises/hf/energy", headers=h)
    assert data.status_code == 200
    assert data.headers["cache-control"] == "no-store"
    invalid = c.get("/api/v1/enterprises/hf/energy", params={"end": "x"}, headers=h)
    assert invalid.status_code == 422
    assert invalid.headers["cache-control"] == "no-store"
    # the console's page holds no data: revalidated, not forbidden to keep
    assert c.get("/console/").headers["cache-control"] == "no-cache"
