"""The meter register and the declaration in the console, in a real browser (chromium, as
tests/api/test_console.py), against the API on uvicorn over the demo registry (one meter's
certificate expired, one missing: simulators/scenarios/demo-registry.yaml) and an
enterprise that entered no declaration (tests/api/test_auth.py `zz`). No samples: the
register and the declaration are declared, not measured.

The API answers what a report of the period carries; an enterprise in Chinese sees the
expired and missing meters highlighted with their warnings, the count by state and the
basis on the energy page, the declaration's signatory on the evidence page, and for `zz`
the warning that none is entered with how to enter it; a verifier in English reads the
same. Screenshot: meter-register.png (FE_SCREENSHOTS as test_console.py).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.db.schema import migrate
from ingest_server.repo.registry import import_registry, load_registry
from tests.api.test_auth import other_enterprise
from tests.api.test_console import Console, browser, need_chromium, served
from tests.harness.backfill import DEMO_REGISTRY
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's browser (chromium), shared with test_console.py

ENT = "hf-precision"
SAT, SUN = dt.date(2026, 11, 21), dt.date(2026, 11, 22)


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    work = tmp_path_factory.mktemp("console-register")
    with pg_server.database() as db:
        migrate(db)
        with psycopg.connect(db, autocommit=True) as conn:
            import_registry(conn, load_registry(DEMO_REGISTRY), {"gw-01": b"k" * 32})
            import_registry(conn, other_enterprise(), {})
        with served(db, work, {"ent": [ENT, "zz"]}, {"verifier": [ENT]}) as (url, headers):
            yield {"url": url, "headers": headers, "shots": work / "shots"}


def element_shot(c: Console, selector: str, name: str) -> None:
    """A screenshot of one element, where Console.shot puts a page's."""
    out = Path(c.site["shots"])
    out.mkdir(exist_ok=True)
    c.page.locator(selector).screenshot(path=str(out / f"{name}.png"))
    if os.environ.get("FE_SCREENSHOTS"):
        dest = Path(os.environ["FE_SCREENSHOTS"])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / f"{name}.png", dest / f"{name}.png")


def texts(c: Console, selector: str) -> list[str]:
    return [x.strip() for x in c.page.locator(selector).all_inner_texts()]


def test_the_api_answers_what_a_report_of_the_period_states(site: dict[str, Any]) -> None:
    def get(path: str, **params: str) -> httpx.Response:
        url = f"{site['url']}/api/v1/enterprises/{path}"
        return httpx.get(url, params=params, headers=site["headers"], timeout=60)

    period = {"from": str(SAT), "to": str(SUN)}
    register = get(f"{ENT}/meter-register", **period)
    assert register.status_code == 200, register.text
    report = get(f"{ENT}/report", **period)
    assert report.status_code == 200, report.text
    assert register.json() == report.json()["meter_register"]
    assert register.json()["summary"] == {"valid": 7, "expires_in_period": 0, "expired": 1,
                                           "missing": 1}  # fmt: skip
    mine = get(f"{ENT}/declaration").json()
    stated = report.json()["declaration"]
    assert {**mine, "date": None} == {**stated, "date": None}
    assert (mine["signatory"], mine["default"]) == ("王建国", True)
    none = get("zz/declaration").json()
    assert (none["signatory"], none["position"], none["default"]) == (None, None, True)
    assert get("zz/meter-register", **period).json()["meters"] == []
    refused = get(f"{ENT}/meter-register", **{"from": str(SUN), "to": str(SAT)})
    assert refused.status_code == 422, refused.text
    assert get("nowhere/declaration").status_code == 403


WORDS = {
    "zh": {"title": "计量器具一览表", "expired": "已过期", "missing": "无证书", "valid": "有效",
           "expired_on": "2026-05-19", "no_certificate": "未登记检定/校准证书",
           "counts": ["有效 7", "期内到期 0", "已过期 1", "无证书 1"], "basis": "GB 17167",
           "declaration": "承诺签署人: 王建国 · 总经理 General manager", "text": "默认承诺文本"},
    "en": {"title": "Meter register", "expired": "expired", "missing": "missing", "valid": "valid",
           "expired_on": "expired on 2026-05-19", "no_certificate": "no calibration certificate",
           "counts": ["valid 7", "expires in period 0", "expired 1", "missing 1"],
           "basis": "General principle",
           "declaration": "Declaration signed by: 王建国 · 总经理 General manager",
           "text": "default text"},
}  # fmt: skip


@pytest.mark.parametrize(("who", "lang"), [("ent", "zh"), ("ent", "en"), ("verifier", "zh"),
                                           ("verifier", "en")])  # fmt: skip
def test_the_register_and_declaration_in_the_console(
    browser: Any, site: dict[str, Any], who: str, lang: str
) -> None:
    words = WORDS[lang]
    c = Console(browser, site)
    c.login(who)
    if lang == "en":
        c.switch_language("html[lang=en] main[data-ready]")
    c.period(SAT, SUN)
    c.goto("energy")
    page = c.page
    page.wait_for_selector("#register #meter-register")
    assert words["title"] in page.locator("#register h2").inner_text()
    assert page.locator("#meter-register").get_attribute("data-count") == "9"
    assert texts(c, "[data-reg-state=wm-main]") == [words["expired"]]
    assert texts(c, "[data-reg-state=gm-main]") == [words["missing"]]
    assert texts(c, "[data-reg-state=em-main]") == [words["valid"]]
    assert words["expired_on"] in page.locator("[data-reg-warning=wm-main]").inner_text()
    assert words["no_certificate"] in page.locator("[data-reg-warning=gm-main]").inner_text()
    assert texts(c, "[data-reg-warning=em-main]") == [""]
    bad = page.locator("#meter-register tr.reg-row-bad [data-reg-meter]").all()
    assert sorted(str(x.get_attribute("data-reg-meter")) for x in bad) == ["gm-main", "wm-main"]
    assert texts(c, "[data-reg-count]") == words["counts"]
    assert words["basis"] in page.locator("[data-testid=reg-basis]").inner_text()
    # declared in the registry, not in the console: nobody edits it here
    controls = "#register button:not(.csv), #register input, #register select"
    assert page.locator(controls).count() == 0
    if (who, lang) == ("ent", "zh"):
        page.locator("#register").scroll_into_view_if_needed()
        element_shot(c, "#register", "meter-register")

    c.goto("evidence")
    line = page.wait_for_selector("#declaration").inner_text()
    assert words["declaration"] in line
    assert words["text"] in line
    assert page.locator("[data-testid=read-only]").count() == (who == "verifier")
    if who == "verifier":
        c.close()
        return

    # an enterprise that entered none: warned, and told how to enter it
    page.select_option("select[data-field=enterprise]", "zz")
    page.wait_for_selector("[data-testid=signatory]", state="detached")
    page.wait_for_selector("main[data-page=evidence][data-ready]")
    warning = page.wait_for_selector("#declaration[data-default=true]").inner_text()
    assert (lang == "zh") == ("未录入承诺" in warning)
    assert (lang == "en") == ("No declaration entered" in warning)
    assert "declaration:" in warning
    assert "ingest-server registry import" in warning
    assert page.locator("[data-testid=signatory]").count() == 0
    c.close()
