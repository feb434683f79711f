"""Evidence bundles kept with the reports the API issues, listed and downloaded (issue 17:
"the console lists bundles with the reports; a verifier role downloads them").

The plant is test_bundle's (a real PostgreSQL, two v2 gateways whose batches are sealed as
a gateway seals them, v1 samples, an audited edit, a production entry, the day anchored by
a real RFC 3161 TSA). A report is issued through the API on uvicorn; the enterprise's
verifier downloads its bundle over HTTP, and the offline verifier (evidence/offline/)
checks those bytes against a trust file from `ingest-server trust export`, with no
database. Another enterprise's verifier and an unknown id get the same 404, no token a
401. The console, in a real browser, shows the download link with size and hash and the
line telling a verifier how to check it, in Chinese and in English.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.evidence.offline import check_bundle
from ingest_server.repo import report_bundles, reports
from ingest_server.repo.accounts import add_account, new_token, set_password
from tests.api.test_console import PASSWORD, Console, browser
from tests.evidence import test_bundle
from tests.evidence.test_ledger import DAY, World, run
from tests.harness.apiserver import serving_api
from tests.harness.ingest import ENT
from tests.harness.tsa import Tsa

OTHER = "other-co"
__all__ = ["browser"]  # the browser tests' fixture (Debian's chromium, headless)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory, pg_server: Any) -> Iterator[dict[str, Any]]:
    """test_bundle's plant (its CLI report stores a bundle too), the API serving it, the
    accounts, and one report issued through the API."""
    tmp = tmp_path_factory.mktemp("bundles")
    tsa = Tsa(tmp / "tsa", "A").start()
    with pg_server.database() as db:
        world = World(db)
        try:
            cli = test_bundle._make(world, tsa, tmp)
            world.conn.execute("INSERT INTO enterprises (id, name) VALUES (%s, '别家')", (OTHER,))
            tokens = {}
            for name, role, ents in (("ent", "enterprise", [ENT]), ("verifier", "verifier", [ENT]),
                                     ("other-verifier", "verifier", [OTHER])):  # fmt: skip
                add_account(world.conn, name, role, ents)
                set_password(world.conn, name, PASSWORD)
                tokens[name] = {"Authorization": f"Bearer {new_token(world.conn, name)}"}
            key = tmp / "api-key.pem"
            with serving_api(db, key) as url:
                started = time.perf_counter()
                r = httpx.post(f"{url}/api/v1/enterprises/{ENT}/reports", headers=tokens["ent"],
                               json={"from": str(DAY), "to": str(DAY)}, timeout=120)  # fmt: skip
                took = time.perf_counter() - started
                assert r.status_code == 201, r.text
                trust = tmp / "trust.json"  # after the API registered its key
                code, out = run("trust", "export", "--enterprise", ENT, "--out", str(trust),
                                "--dsn", db, "--tsa-cert", str(tsa.cert_file))  # fmt: skip
                assert code == 0, out
                yield {"url": url, "db": db, "conn": world.conn, "tokens": tokens,
                       "issued": r.json(), "issue_s": took, "trust": json.loads(trust.read_text()),
                       "cli_report": json.loads(cli["report"]), "tmp": tmp}  # fmt: skip
        finally:
            world.conn.close()
            tsa.stop()


def get(plant: dict[str, Any], path: str, who: str | None) -> httpx.Response:
    headers = plant["tokens"][who] if who else {}
    return httpx.get(f"{plant['url']}/api/v1{path}", headers=headers, timeout=60)


def test_an_issued_report_keeps_its_bundle_and_lists_it(plant: dict[str, Any]) -> None:
    issued = plant["issued"]
    b = issued["bundle"]
    assert b["present"] is True, b
    assert b["bytes"] > 0
    assert len(b["sha256"]) == 64
    assert b["samples"] > 0
    print(f"issue with bundle: {plant['issue_s']:.2f} s, {b['bytes']} bytes, "
          f"{b['samples']} samples")  # fmt: skip
    for who in ("ent", "verifier"):
        listed = {r["id"]: r for r in get(plant, f"/enterprises/{ENT}/reports", who).json()}
        assert listed[issued["id"]]["bundle"] == b
    # what the database holds is what the answer said
    kept = report_bundles.stored(plant["conn"], issued["id"])
    assert kept is not None
    assert (kept.sha256, kept.bytes, kept.samples) == (b["sha256"], b["bytes"], b["samples"])
    # the CLI's report (test_bundle's `report --bundle`) was stored with its bundle too
    cli = report_bundles.stored(plant["conn"], plant["cli_report"]["report_id"])
    assert cli is not None
    assert cli.sha256 is not None, cli.error


def test_the_verifier_downloads_a_bundle_that_checks_offline(plant: dict[str, Any]) -> None:
    issued = plant["issued"]
    r = get(plant, f"/reports/{issued['id']}/bundle", "verifier")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["cache-control"] == "no-store"
    assert f'filename="bundle-{issued["id"]}.zip"' in r.headers["content-disposition"]
    assert hashlib.sha256(r.content).hexdigest() == r.headers["x-content-sha256"]
    assert r.headers["x-content-sha256"] == issued["bundle"]["sha256"]
    assert len(r.content) == issued["bundle"]["bytes"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert set(z.namelist()) == test_bundle.MEMBERS
        manifest = json.loads(z.read("manifest.json"))
        report = json.loads(z.read("report.json"))
    assert manifest["report"]["report_id"] == issued["id"]
    assert report["report_id"] == issued["id"]
    assert (
        manifest["counts"]["samples"] + manifest["counts"]["aside"] == issued["bundle"]["samples"]
    )
    # the report in the bundle is the one stored, as issued
    assert report == get(plant, f"/reports/{issued['id']}", "verifier").json()

    path = plant["tmp"] / "downloaded.zip"
    path.write_bytes(r.content)
    v = check_bundle(path, plant["trust"])
    status = {c.name: c.status for c in v.checks}
    kpis = status.pop("kpis")
    assert status == {"manifest": "ok", "report_signature": "ok", "batches": "ok",
                      "chain": "ok", "anchors": "ok"}, v.text  # fmt: skip
    assert kpis in {"ok", "not_checked"}, [r.text_en for r in v.check("kpis").reasons]


def test_bundles_are_refused_as_reports_are(plant: dict[str, Any]) -> None:
    issued = plant["issued"]["id"]
    other = get(plant, f"/reports/{issued}/bundle", "other-verifier")
    unknown = get(plant, f"/reports/{uuid.uuid4()}/bundle", "other-verifier")
    garbage = get(plant, "/reports/not-a-uuid/bundle", "other-verifier")
    assert other.status_code == unknown.status_code == garbage.status_code == 404
    # the same answer, whether the report is someone else's or does not exist
    assert other.json()["error"]["code"] == unknown.json()["error"]["code"] == "not_found"
    assert other.json()["error"]["message"].replace(issued, "ID") == unknown.json()["error"][
        "message"
    ].replace(unknown.url.path.split("/")[-2], "ID")
    assert get(plant, f"/reports/{issued}/bundle", None).status_code == 401
    assert get(plant, f"/enterprises/{ENT}/reports", "other-verifier").status_code == 403


def test_a_report_whose_bundle_failed_is_issued_and_says_why(plant: dict[str, Any]) -> None:
    """A bundle that cannot be built rolls back alone (its savepoint): the report commits
    and the list says why; a report stored before bundles were kept says so."""
    conn: psycopg.Connection = plant["conn"]
    doc = {**plant["cli_report"], "report_id": str(uuid.uuid4())}
    older = {**plant["cli_report"], "report_id": str(uuid.uuid4())}

    def fails(path: Path) -> int:
        path.write_bytes(b"half a zip")
        conn.execute("SELECT 1 / 0")  # a database error inside the bundle's savepoint
        return 0

    with conn.transaction():
        reports.store_report(conn, doc, created_by="test")
        kept = report_bundles.keep(conn, report_id=doc["report_id"], build=fails)
    reports.store_report(conn, older, created_by="test")
    assert kept is not None
    assert kept.sha256 is None
    assert kept.error is not None
    assert "DivisionByZero" in kept.error
    listed = {r["id"]: r for r in get(plant, f"/enterprises/{ENT}/reports", "verifier").json()}
    assert listed[doc["report_id"]]["bundle"]["present"] is False
    assert "division by zero" in listed[doc["report_id"]]["bundle"]["error"]
    assert listed[older["report_id"]]["bundle"] == {
        "present": False, "bytes": None, "sha256": None, "samples": None,
        "error": "issued without its evidence bundle (before bundles were kept with reports, or by "
                 "`report --no-bundle`)", "error_code": "not_kept",
    }  # fmt: skip
    assert listed[doc["report_id"]]["bundle"]["error_code"] == "build_failed"
    for rid in (doc["report_id"], older["report_id"]):
        r = get(plant, f"/reports/{rid}/bundle", "verifier")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "bundle_unavailable"
        # another enterprise's account learns nothing more than for an unknown id
        r = get(plant, f"/reports/{rid}/bundle", "other-verifier")
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.slow
def test_the_console_shows_the_bundle_in_both_languages(
    plant: dict[str, Any], browser: Any
) -> None:
    issued = plant["issued"]
    site = {"url": plant["url"], "headers": plant["tokens"]["verifier"],
            "shots": plant["tmp"] / "shots"}  # fmt: skip
    c = Console(browser, site)
    c.login("verifier")
    c.goto("evidence")
    link = c.page.locator(f"[data-bundle='{issued['id']}']")
    assert link.count() == 1
    short = issued["bundle"]["sha256"][:16]
    assert "证据包" in link.inner_text()
    cell = c.page.locator(f"[data-bundle-cell='{issued['id']}']").inner_text()
    assert short in cell
    hint = c.page.locator("[data-testid=bundle-hint]").inner_text()
    assert "ingest-server verify FILE --trust trust.json" in hint
    assert "现场" in hint  # the trust file of the enrolment visit
    with c.page.expect_download() as got:
        link.click()
    saved = plant["tmp"] / "from-console.zip"
    got.value.save_as(saved)
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == issued["bundle"]["sha256"]
    c.switch_language("main[data-ready] [data-testid=bundle-hint]")
    link = c.page.locator(f"[data-bundle='{issued['id']}']")
    assert "Evidence bundle" in link.inner_text()
    hint = c.page.locator("[data-testid=bundle-hint]").inner_text()
    assert "ingest-server verify FILE --trust trust.json" in hint
    assert "enrolment visit" in hint
    assert "never one downloaded from this server" in hint
    c.switch_language()
    c.close()
