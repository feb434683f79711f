"""The green-factory page (console/static/green.js) in a real browser (chromium, as
tests/api/test_console.py) and its API (api/routes/green.py), over the hand-made hour of
tests/api/test_downtime.py.

The API refuses a leading value worse than the baseline with a 422 naming the indicator
and stores nothing. An operator in Chinese enters an indicator no meter measures with its
value, baseline and leading value, and sees where it stands, the GHG summary and the
trail; a bad entry is refused with the API's detail shown. A verifier in English reads
the same sheet and has no form.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tests.api.test_console import Console, browser
from tests.api.test_console_downtime import served_plant
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's browser (chromium), shared with test_console.py

DAY = dt.date(2026, 11, 16)
WASTE = {
    "id": "solid_waste_reuse", "group": "resource_efficiency", "name": "一般工业固废综合利用率",
    "name_en": "Industrial solid waste reused", "unit": "%", "direction": "higher",
    "value": 92.5, "evidence": "固废台账 2026-11", "baseline": 80, "leading": 95,
}  # fmt: skip


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("console-green")
    with served_plant(pg_server, work) as (_, url, tokens):
        yield {"url": url, "headers": tokens["op"], "tokens": tokens, "shots": work / "shots"}


def green_url(site: dict[str, Any]) -> str:
    return f"{site['url']}/api/v1/enterprises/hf/green"


def test_the_api_refuses_a_leading_value_worse_than_the_baseline(site: dict[str, Any]) -> None:
    body = {"from": str(DAY), "to": str(DAY), "indicators": [{**WASTE, "leading": 70}]}
    r = httpx.put(green_url(site), json=body, headers=site["headers"])
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "indicators: indicator solid_waste_reuse: the leading value 70" in message
    r = httpx.put(green_url(site), json={**body, "indicators": [{"id": "x", "baseline": "a"}]},
                  headers=site["headers"])  # fmt: skip
    assert r.status_code == 422
    assert "indicators.0.baseline" in r.json()["error"]["message"]
    auditor = site["tokens"]["auditor"]
    assert httpx.put(green_url(site), json=body, headers=auditor).status_code == 403
    shown = httpx.get(green_url(site), params={"from": str(DAY), "to": str(DAY)},
                      headers=auditor).json()  # fmt: skip
    assert shown["history"] == []
    assert shown["current"] is None


def test_an_operator_enters_values_in_chinese(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("op")
    c.period(DAY, DAY)
    c.goto("green")
    page = c.page
    assert page.locator("#green-trail").inner_text() == "本期尚未填报"
    # a refusal: the API's detail shown
    page.fill("#green-json", json.dumps({"indicators": [{**WASTE, "leading": 70}]}))
    page.click("#green-save")
    error = page.wait_for_selector("#green-msg .error").inner_text()
    assert "请求参数无效" in error
    assert "solid_waste_reuse: the leading value 70" in error
    # the values entered: the figure placed between them
    page.fill("#green-json", json.dumps({"indicators": [WASTE]}))
    page.fill("#green-note", "首次填报")
    page.click("#green-save")
    page.wait_for_selector("[data-testid=green-saved]")
    assert (
        page.locator("[data-position=solid_waste_reuse]").inner_text() == "达到基准值, 未达引领值"
    )
    assert page.locator("[data-baseline=solid_waste_reuse]").inner_text() == "80"
    groups = [g.split("\t")[0] for g in page.locator("#green-rows tbody tr").all_inner_texts()]
    assert groups == sorted(groups, key=["能源低碳化", "资源高效化"].index)  # the standard's order
    assert "资源高效化" in groups
    assert "合计" in page.locator("#ghg-categories").inner_text()
    trail = page.locator("#green-trail tbody tr").all_inner_texts()
    assert len(trail) == 1
    assert "op" in trail[0]
    assert "首次填报" in trail[0]
    c.shot("green-op")
    refused = [e for e in c.errors if re.search(r"\b422\b", e)]
    assert len(refused) == 2, c.errors  # the response, and the console's line of it
    c.errors = [e for e in c.errors if e not in refused]
    c.close()


def test_a_verifier_reads_the_sheet_in_english(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("auditor")
    c.switch_language("html[lang=en] main[data-ready]")
    c.period(DAY, DAY)
    c.goto("green")
    page = c.page
    assert page.locator("[data-indicator=solid_waste_reuse]").inner_text() == (
        "Industrial solid waste reused"
    )
    assert page.locator("[data-position=solid_waste_reuse]").inner_text() == (
        "at the baseline value, short of the leading value"
    )
    assert page.locator("#green-form, #green-save, #green-json").count() == 0
    assert "Total" in page.locator("#ghg-categories").inner_text()
    c.close()
