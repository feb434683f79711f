"""Who may do what through the API: every endpoint, every role, on a real PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from ingest_server.api.app import create_app
from ingest_server.repo.accounts import (
    AccountError,
    add_account,
    authenticate,
    login,
    new_token,
    revoke_token,
    set_password,
)
from ingest_server.repo.registry import Registry, import_registry
from tests.harness.kpi import plant_samples, prepare_kpi, store_samples, utc

T0 = utc(2026, 11, 15, 16).timestamp()
DAY = {"from": "2026-11-16", "to": "2026-11-16"}
ENTRY = {**DAY, "output": 10}


def other_enterprise() -> Registry:
    return Registry.model_validate(
        {
            "enterprises": [
                {
                    "id": "zz",
                    "name": "别家企业",
                    "processes": [{"id": "p", "name": "工序", "key": True}],
                    "sites": [{"id": "s", "name": "厂", "equipment": []}],
                }
            ]
        }
    )


ACCOUNTS = {
    "root": ("admin", []),
    "hf-user": ("enterprise", ["hf"]),
    "zz-user": ("enterprise", ["zz"]),
    "auditor": ("verifier", ["hf"]),
}


def two_enterprises_with_accounts(db: str, seed: int) -> dict[str, str]:
    """The KPI plant `hf` with a day of data, an empty enterprise `zz`, and an account of
    each kind (ACCOUNTS); returns a token per account."""
    prepare_kpi(db)
    store_samples(db, plant_samples(seed, T0, T0 + 86400), seed)
    with psycopg.connect(db, autocommit=True) as conn:
        import_registry(conn, other_enterprise(), {})
        for name, (role, enterprises) in ACCOUNTS.items():
            add_account(conn, name, role, enterprises)
        return {name: new_token(conn, name) for name in ACCOUNTS}


@pytest.fixture
def api(db: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    tokens = two_enterprises_with_accounts(db, 31)
    with TestClient(create_app(db, signing_key=tmp_path / "k.pem")) as c:
        yield c, tokens, db


def as_(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_no_valid_token_no_access(api: Any) -> None:
    c, tokens, db = api
    for headers in ({}, as_("fe_1_wrong"), as_("nonsense"), {"Authorization": "Basic eDp5"}):
        r = c.get("/api/v1/keys", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthenticated"
        assert r.headers["www-authenticate"] == "Bearer"
    assert c.get("/api/v1/keys", headers=as_(tokens["hf-user"])).status_code == 200
    # revoked, or its account disabled: refused from then on
    tid = int(tokens["hf-user"].split("_")[1])
    with psycopg.connect(db, autocommit=True) as conn:
        revoke_token(conn, tid)
        with pytest.raises(AccountError, match="no active token"):
            revoke_token(conn, tid)
    assert c.get("/api/v1/keys", headers=as_(tokens["hf-user"])).status_code == 401
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE accounts SET disabled_at = now() WHERE name = 'auditor'")
    assert c.get("/api/v1/keys", headers=as_(tokens["auditor"])).status_code == 401


def test_an_enterprise_sees_and_writes_only_its_own(api: Any) -> None:
    c, tokens, db = api
    hf, zz = as_(tokens["hf-user"]), as_(tokens["zz-user"])
    assert c.get("/api/v1/enterprises/hf/report", params=DAY, headers=hf).status_code == 200
    for method, url, body in (
        ("GET", "/api/v1/enterprises/hf/report", None),
        ("GET", "/api/v1/enterprises/hf/production", None),
        ("POST", "/api/v1/enterprises/hf/production", ENTRY),
    ):
        r = c.request(method, url, params=DAY if method == "GET" else None, json=body, headers=zz)
        assert r.status_code == 403, (method, url)
        assert r.json()["error"]["code"] == "forbidden"
        assert "zz-user" in r.json()["error"]["message"]
    doc = c.get("/api/v1/enterprises/hf/report", params=DAY, headers=hf).json()
    assert c.post("/api/v1/reports/verify", json=doc, headers=zz).status_code == 403
    assert c.post("/api/v1/enterprises/hf/production", json=ENTRY, headers=hf).status_code == 201
    with psycopg.connect(db) as conn:
        rows = conn.execute("SELECT enterprise_id, entered_by FROM production_entries").fetchall()
    assert rows == [("hf", "hf-user")]  # zz's attempt wrote nothing


def test_a_verifier_reads_and_verifies_but_writes_nothing(api: Any) -> None:
    c, tokens, db = api
    v = as_(tokens["auditor"])
    doc = c.get("/api/v1/enterprises/hf/report", params=DAY, headers=v).json()
    assert c.post("/api/v1/reports/verify", json=doc, headers=v).json()["ok"] is True
    assert c.get("/api/v1/enterprises/hf/production", headers=v).status_code == 200
    r = c.post("/api/v1/enterprises/hf/production", json=ENTRY, headers=v)
    assert r.status_code == 403
    assert c.get("/api/v1/enterprises/zz/report", params=DAY, headers=v).status_code == 403
    # the admin may do both, anywhere
    root = as_(tokens["root"])
    assert c.get("/api/v1/enterprises/zz/production", headers=root).status_code == 200
    assert c.post("/api/v1/enterprises/zz/production", json=ENTRY, headers=root).status_code == 201
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM production_entries").fetchone() == (1,)


def test_tokens_are_hashed_at_rest_and_never_logged(
    api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    c, tokens, db = api
    caplog.set_level(logging.DEBUG)
    for t in tokens.values():
        c.get("/api/v1/keys", headers=as_(t))
    c.get("/api/v1/keys", headers=as_(tokens["root"] + "x"))
    with psycopg.connect(db) as conn:
        stored = [bytes(r[0]) for r in conn.execute("SELECT token_hash FROM api_tokens")]
        used = conn.execute(
            "SELECT count(*) FROM api_tokens WHERE last_used_at IS NOT NULL"
        ).fetchone()
    secrets = [t.split("_", 2)[2] for t in tokens.values()]
    assert len(stored) == 4
    assert all(len(h) == 32 for h in stored)
    assert not any(s.encode() in h for s in secrets for h in stored)
    assert used == (4,)
    for t in tokens.values():
        assert t not in caplog.text
        assert t.split("_", 2)[2] not in caplog.text


def test_accounts_refuse_what_makes_no_sense(db: str) -> None:
    prepare_kpi(db)
    with psycopg.connect(db, autocommit=True) as conn:
        with pytest.raises(AccountError, match="use one of"):
            add_account(conn, "x", "owner", ["hf"])
        with pytest.raises(AccountError, match="needs at least one"):
            add_account(conn, "x", "verifier", [])
        with pytest.raises(AccountError, match="no enterprise"):
            add_account(conn, "x", "enterprise", ["nope"])
        with pytest.raises(AccountError, match="sees every enterprise"):
            add_account(conn, "x", "admin", ["hf"])
        add_account(conn, "x", "enterprise", ["hf"])
        with pytest.raises(AccountError, match="exists already"):
            add_account(conn, "x", "enterprise", ["hf"])
        with pytest.raises(AccountError, match="no active account"):
            new_token(conn, "ghost")


def test_accounts_cli(db: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from ingest_server.cli.main import main  # noqa: PLC0415

    prepare_kpi(db)
    assert main(["accounts", "add", "--dsn", db, "amy", "--role", "verifier",
                 "--enterprise", "hf"]) == 0  # fmt: skip
    assert main(["accounts", "add", "--dsn", db, "bob", "--role", "verifier"]) == 2
    assert "needs at least one --enterprise" in capsys.readouterr().err
    assert main(["accounts", "token", "--dsn", db, "amy", "--label", "laptop"]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("fe_")
    assert "shown once" in out.err
    with psycopg.connect(db) as conn:
        p = authenticate(conn, token)
    assert p is not None
    assert (p.name, p.role, p.enterprises) == ("amy", "verifier", frozenset({"hf"}))
    assert main(["accounts", "list", "--dsn", db]) == 0
    listing = capsys.readouterr().out
    assert "amy" in listing
    assert token not in listing
    pw = tmp_path / "pw"
    pw.write_text("a long enough secret\n")
    pw.chmod(0o600)
    assert main(["accounts", "password", "--dsn", db, "amy", "--password-file", str(pw)]) == 0
    with psycopg.connect(db) as conn:
        assert login(conn, "amy", "a long enough secret") is not None
    assert main(["accounts", "revoke", "--dsn", db, token.split("_")[1]]) == 0
    assert main(["accounts", "revoke", "--dsn", db, token.split("_")[1]]) == 2


def test_console_login_issues_an_expiring_token(api: Any) -> None:
    c, _, db = api
    with psycopg.connect(db, autocommit=True) as conn:
        set_password(conn, "auditor", "correct horse battery")
        with pytest.raises(AccountError, match="at least"):
            set_password(conn, "auditor", "short")
        stored = conn.execute(
            "SELECT password_hash FROM accounts WHERE name = 'auditor'"
        ).fetchone()
    assert stored is not None
    assert "correct horse" not in stored[0]
    assert stored[0].startswith("scrypt$")
    for name, pw in (("auditor", "wrong password!"), ("nobody", "correct horse battery"),
                     ("root", "correct horse battery")):  # fmt: skip
        r = c.post("/api/v1/login", json={"name": name, "password": pw})
        assert r.status_code == 401, name
        assert r.json()["error"]["message"] == "wrong name or password"
    r = c.post("/api/v1/login", json={"name": "auditor", "password": "correct horse battery"})
    assert r.status_code == 200
    body = r.json()
    assert (body["role"], body["enterprises"]) == ("verifier", ["hf"])
    assert c.get("/api/v1/keys", headers=as_(body["token"])).status_code == 200
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE api_tokens SET expires_at = now() - interval '1 s' "
                     "WHERE label = 'login'")  # fmt: skip
    assert c.get("/api/v1/keys", headers=as_(body["token"])).status_code == 401


def test_issued_reports_are_kept_listed_downloaded_and_verified(api: Any) -> None:
    c, tokens, db = api
    hf, v, zz = as_(tokens["hf-user"]), as_(tokens["auditor"]), as_(tokens["zz-user"])
    assert c.post("/api/v1/enterprises/hf/reports", json=DAY, headers=v).status_code == 403
    r = c.post("/api/v1/enterprises/hf/reports", json=DAY, headers=hf)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    listed = c.get("/api/v1/enterprises/hf/reports", headers=v).json()
    assert [(x["id"], x["created_by"]) for x in listed] == [(rid, "hf-user")]
    doc = c.get(f"/api/v1/reports/{rid}", headers=v).json()
    assert doc["report_id"] == rid
    assert doc["signature"]["key_id"] == listed[0]["key_id"]
    verdict = c.post(f"/api/v1/reports/{rid}/verify", headers=v).json()
    assert verdict["ok"] is True
    assert c.get(f"/api/v1/reports/{rid}", headers=zz).status_code == 404
    assert (
        c.get("/api/v1/reports/00000000-0000-0000-0000-000000000000", headers=v).status_code == 404
    )
    x = c.get(f"/api/v1/reports/{rid}", params={"format": "xlsx"}, headers=v)
    assert x.content[:2] == b"PK"
    # kept as issued: a later change of the data does not change the stored document
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE state_intervals SET state = 'RUNNING' WHERE state = 'DOWN'")
    again = c.post(f"/api/v1/reports/{rid}/verify", headers=v).json()
    assert again["ok"] is False
    assert again["digest_ok"] is False
    assert c.get(f"/api/v1/reports/{rid}", headers=v).json() == doc


# A valid request for every route under /enterprises/{enterprise}: query and body.
VALID: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/report"): {"params": DAY},
    ("GET", "/kpis"): {"params": DAY},
    ("GET", "/trend"): {"params": DAY},
    ("GET", "/series"): {"params": {"device": "em-main", "tag": "energy_kwh"}},
    ("POST", "/production"): {"json": ENTRY},
    ("POST", "/reports"): {"json": DAY},
    ("PATCH", "/equipment/{eid}"): {"json": {"nc": False}},
    ("PUT", "/equipment/{eid}/stops/reason"): {
        "json": {"start": "2026-11-16T00:00:00Z", "reason": None}
    },
    ("GET", "/meter-register"): {"params": DAY},
    ("GET", "/green"): {"params": DAY},
    ("PUT", "/green"): {"json": {**DAY, "note": "nothing entered yet"}},
}
WRITES = {("POST", "/production"), ("POST", "/reports"), ("PATCH", "/equipment/{eid}"),
          ("PUT", "/equipment/{eid}/stops/reason"), ("PUT", "/green")}  # fmt: skip


def test_every_enterprise_route_enforces_the_roles(api: Any) -> None:
    """Each route of an enterprise, from the app's own OpenAPI schema (a new route is
    covered the day it is added): another enterprise's account gets 403 and a verifier
    403 on writes, while the enterprise's own account is served."""
    c, tokens, db = api
    prefix = "/api/v1/enterprises/{enterprise}"
    routes = [
        (method.upper(), path.removeprefix(prefix))
        for path, ops in c.get("/openapi.json").json()["paths"].items()
        if path.startswith(prefix)
        for method in sorted(ops)
    ]
    assert len(routes) >= 17, routes
    with psycopg.connect(db) as conn:
        before = conn.execute(
            "SELECT (SELECT count(*) FROM production_entries), (SELECT count(*) FROM reports), "
            "(SELECT count(*) FROM equipment_audit)"
        ).fetchone()
    for method, path in routes:
        url = "/api/v1/enterprises/hf" + path.replace("{eid}", "cnc-01")
        kw = VALID.get((method, path), {})
        other = c.request(method, url, headers=as_(tokens["zz-user"]), **kw)
        assert other.status_code == 403, (method, path, other.text)
        verifier = c.request(method, url, headers=as_(tokens["auditor"]), **kw)
        if (method, path) in WRITES:
            assert verifier.status_code == 403, (method, path, verifier.text)
        else:
            assert verifier.status_code == 200, (method, path, verifier.text)
        assert c.request(method, url, **kw).status_code == 401, (method, path)
    with psycopg.connect(db) as conn:
        after = conn.execute(
            "SELECT (SELECT count(*) FROM production_entries), (SELECT count(*) FROM reports), "
            "(SELECT count(*) FROM equipment_audit)"
        ).fetchone()
    assert after == before  # nothing written by a refused request
    for method, path in sorted(WRITES):
        url = "/api/v1/enterprises/hf" + path.replace("{eid}", "cnc-01")
        r = c.request(method, url, headers=as_(tokens["hf-user"]), **VALID[(method, path)])
        assert r.status_code in {200, 201}, (method, path, r.text)
