"""The green-factory page (console/static/green.js) in a real browser (chromium, as
tests/api/test_console.py) and its API (api/routes/green.py), over the hand-made hour of
tests/api/test_downtime.py.

The API refuses a leading value worse than the baseline with a 422 naming the indicator
and stores nothing; it reads the body as YAML too (the CLI's file), a text that is not
YAML refused naming its line in English and Chinese.

The page, for both roles in both languages (each run on a period of its own): an operator
fills the form (a measured indicator's baseline, leading value and reference, an
indicator no meter measures, the PV section, a process emission), is told which field is
not a number before anything is sent, sees a refusal's field marked, saves, and finds the
values on the sheet, in the GHG summary and on the trail; then pastes the file as YAML in
the advanced box. A verifier reads the sheet, the summary and the trail, and has no form.
In Chinese no English word is shown (the rule of tests/api/test_console_i18n.py).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.repo.registry import import_registry
from ingest_server.repo.registry_model import Registry
from tests.api.test_console import Console, browser
from tests.api.test_console_downtime import served_plant
from tests.api.test_console_i18n import VISIBLE_TEXTS, foreign
from tests.harness.ingest import GW, KEY
from tests.harness.pg import PgServer
from tests.ingest.test_registry_downtime import REASONS, with_reasons

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's browser (chromium), shared with test_console.py

DAY = dt.date(2026, 11, 16)  # the day with the plant's data
WASTE = {
    "id": "solid_waste_reuse", "group": "resource_efficiency", "name": "一般工业固废综合利用率",
    "name_en": "Industrial solid waste reused", "unit": "%", "direction": "higher",
    "value": 92.5, "evidence": "固废台账 2026-11", "baseline": 80, "leading": 95,
}  # fmt: skip
WELDING = {"source": "CO2 焊接保护气", "gas": "CO2", "activity": 1.2, "unit": "t", "factor": 1.0,
           "factor_source": "购入量即排放量"}  # fmt: skip
# each run of the page on a period of its own: the entries of one do not show in another
PERIODS = {
    ("enterprise", "zh"): DAY, ("enterprise", "en"): DAY + dt.timedelta(days=1),
    ("verifier", "zh"): DAY + dt.timedelta(days=2), ("verifier", "en"): DAY + dt.timedelta(days=3),
}  # fmt: skip
API_DAY = DAY + dt.timedelta(days=4)  # the API tests' period
YAML_DAY = DAY + dt.timedelta(days=5)


# as test_downtime's plant has them, and a PV meter of role generation (it has no data)
TOOLING = {"id": "tooling", "name": "刀具", "name_en": "Tooling", "category": "unplanned"}
PV_METER = {"id": "pv-roof", "name": "屋顶光伏", "name_en": "Rooftop PV", "carrier": "electricity",
            "unit": "kWh", "role": "generation"}  # fmt: skip


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("console-green")
    with served_plant(pg_server, work) as (db, url, tokens):
        # a rooftop PV meter declared a generation meter: the form offers it
        doc = with_reasons([*REASONS, TOOLING]).model_dump(mode="json")
        doc["enterprises"][0]["sites"][0]["meters"].append(PV_METER)
        with psycopg.connect(db, autocommit=True) as conn:
            import_registry(conn, Registry.model_validate(doc), {GW: KEY})
        # the week's output: the per-unit figures have their denominator
        week = {"from": str(DAY), "to": str(DAY + dt.timedelta(days=6)), "output": 7000}
        r = httpx.post(f"{url}/api/v1/enterprises/hf/production", json=week, headers=tokens["op"])
        assert r.status_code == 201, r.text
        yield {"url": url, "headers": tokens["op"], "tokens": tokens, "shots": work / "shots"}


def green_url(site: dict[str, Any]) -> str:
    return f"{site['url']}/api/v1/enterprises/hf/green"


def shown(site: dict[str, Any], day: dt.date) -> dict[str, Any]:
    r = httpx.get(
        green_url(site), params={"from": str(day), "to": str(day)}, headers=site["headers"]
    )
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_the_api_refuses_a_leading_value_worse_than_the_baseline(site: dict[str, Any]) -> None:
    body = {"from": str(API_DAY), "to": str(API_DAY), "indicators": [{**WASTE, "leading": 70}]}
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
    seen = httpx.get(green_url(site), params={"from": str(API_DAY), "to": str(API_DAY)},
                     headers=auditor).json()  # fmt: skip
    assert seen["history"] == []
    assert seen["current"] is None


GOOD_YAML = f"""\
# the file of `ingest-server green set`, with the period and a note
from: {YAML_DAY}
to: {YAML_DAY}
note: 月度填报
indicators:
- id: energy_per_unit
  baseline: 0.5
  leading: 0.3
  reference: 表A.1
- id: solid_waste_reuse
  group: resource_efficiency
  name: 一般工业固废综合利用率
  unit: "%"
  direction: higher
  value: 92.5
  baseline: 80
  leading: 95
process_emissions:
- source: CO2 焊接保护气
  activity: 1.2
  unit: t
  factor: 1.0
  factor_source: 购入量即排放量
"""


def put_yaml(site: dict[str, Any], text: str, headers: dict[str, str] | None = None,
             kind: str = "application/yaml") -> httpx.Response:  # fmt: skip
    head = {**(headers or site["headers"]), "Content-Type": kind}
    return httpx.put(green_url(site), content=text.encode(), headers=head)


def test_the_api_reads_a_yaml_body(site: dict[str, Any]) -> None:
    # not YAML: the line named, in both languages; nothing stored
    bad = GOOD_YAML.replace("  leading: 0.3\n", "  leading: 0.3\n reference: [\n")
    r = put_yaml(site, bad)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"].startswith("body: line 9, column 2: not valid YAML: "), error
    assert error["message_zh"].startswith("请求体: 第 9 行第 2 列不是有效的 YAML"), error
    # an alias: refused before it is expanded
    r = put_yaml(site, GOOD_YAML.replace("unit: t", "unit: &u t\n  evidence: *u"))
    assert r.status_code == 422, r.text
    assert "line 22: an alias (*u) is not accepted" in r.json()["error"]["message"]
    assert "别名" in r.json()["error"]["message_zh"]
    # not UTF-8
    head = {**site["headers"], "Content-Type": "application/yaml"}
    r = httpx.put(green_url(site), content="note: 填报".encode("gbk"), headers=head)
    assert r.status_code == 422, r.text
    assert "UTF-8" in r.json()["error"]["message_zh"]
    # YAML that the model refuses: the same 422 as JSON's, naming the field
    r = put_yaml(site, GOOD_YAML.replace("  baseline: 0.5", "  basline: 0.5"))
    assert r.status_code == 422, r.text
    assert "indicators.0.basline: Extra inputs are not permitted" in r.json()["error"]["message"]
    assert "indicators.0.basline: 不允许此项 (未知字段)" in r.json()["error"]["message_zh"]
    r = put_yaml(site, GOOD_YAML.replace("leading: 95", "leading: 70"))
    assert r.status_code == 422, r.text
    assert "indicator solid_waste_reuse: the leading value 70" in r.json()["error"]["message"]
    assert "指标 solid_waste_reuse: 引领值 70 比基准值" in r.json()["error"]["message_zh"]
    # .inf and .nan are YAML's numbers, and no figure: named (JSON's Infinity as well)
    r = put_yaml(site, GOOD_YAML.replace("activity: 1.2", "activity: .inf"))
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert "process_emissions.0.activity: inf is not a finite number" in message
    assert "process_emissions.0.activity: inf 不是有限的数字" in r.json()["error"]["message_zh"]
    as_json = '{"from": "%s", "to": "%s", "indicators": [{"id": "x", "baseline": NaN}]}'
    r = httpx.put(green_url(site), content=as_json % (YAML_DAY, YAML_DAY), headers={
        **site["headers"], "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 422, r.text
    assert "indicators.0.baseline: nan is not a finite number" in r.json()["error"]["message"]
    assert shown(site, YAML_DAY)["history"] == []
    # a verifier may not, whatever the body
    assert put_yaml(site, GOOD_YAML, site["tokens"]["auditor"]).status_code == 403
    # good YAML (an unquoted date is a date, as in the CLI's file), as text/yaml as well
    r = put_yaml(site, GOOD_YAML)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["current"]["note"] == "月度填报"
    rows = {row["id"]: row for row in doc["green"]["rows"]}
    assert (rows["energy_per_unit"]["baseline"], rows["energy_per_unit"]["leading"]) == (0.5, 0.3)
    assert rows["energy_per_unit"]["reference"] == "表A.1"
    assert rows["solid_waste_reuse"]["value"] == 92.5
    assert doc["current"]["process"][0]["activity"] == 1.2
    r = put_yaml(site, GOOD_YAML.replace("note: 月度填报", "note: 更正"), kind="text/yaml")
    assert r.status_code == 200, r.text
    assert [h["note"] for h in shown(site, YAML_DAY)["history"]] == ["月度填报", "更正"]
    # the schema states both bodies
    schema = httpx.get(f"{site['url']}/openapi.json").json()
    content = schema["paths"]["/api/v1/enterprises/{enterprise}/green"]["put"]["requestBody"][
        "content"
    ]
    assert {"application/json", "application/yaml", "text/yaml"} <= set(content)


# -- the page ---------------------------------------------------------------------------


def open_page(browser: Any, site: dict[str, Any], who: str, lang: str, day: dt.date) -> Console:
    c = Console(browser, site)
    c.login(who)
    if lang == "en":
        c.switch_language("html[lang=en] main[data-ready]")
    c.period(day, day)
    c.goto("green")
    return c


def speaks_chinese(c: Console, own: set[str]) -> None:
    """Every text the page shows, its <details> open, holds no English word."""
    c.page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
    bad = foreign(c.page.evaluate(VISIBLE_TEXTS), own)
    assert bad == [], f"{len(bad)} text(s) not in Chinese: {bad}"


def refused(c: Console, status: int) -> None:
    """A refusal the test asked for: the response and the console's line of it."""
    gone = [e for e in c.errors if re.search(rf"\b{status}\b", e)]
    assert len(gone) == 2, c.errors
    c.errors = [e for e in c.errors if e not in gone]


def row(page: Any, indicator: str) -> Any:
    return page.locator(f"#gf-indicators tr[data-gf-row={indicator}]")


def fill_form(page: Any) -> None:
    """A measured indicator, an indicator no meter measures, the PV section and a process
    emission, as an energy manager types them."""
    energy = row(page, "energy_per_unit")
    energy.locator("[data-gf=baseline]").fill("0.5")
    # 0.3 in full-width digits, as a Chinese input method may type it
    energy.locator("[data-gf=leading]").fill("\uff10.\uff13")
    energy.locator("[data-gf=reference]").fill("机械行业绿色工厂评价要求 表A.1")
    page.click("#gf-add-indicator")
    new, more = (
        page.locator("#gf-more tr[data-origin=entered]").last,
        page.locator("#gf-more tr.gf-more").last,
    )
    more.locator("[data-gf=id]").fill(WASTE["id"])
    more.locator("[data-gf=name]").fill(WASTE["name"])
    more.locator("[data-gf=name_en]").fill(WASTE["name_en"])
    more.locator("[data-gf=unit]").fill("%")
    more.locator("[data-gf=group]").select_option("resource_efficiency")
    more.locator("[data-gf=direction]").select_option("higher")
    more.locator("[data-gf=evidence]").fill(WASTE["evidence"])
    new.locator("[data-gf=value]").fill("92.5")
    new.locator("[data-gf=baseline]").fill("80")
    new.locator("[data-gf=leading]").fill("95")
    pv = page.locator("#gf-pv")
    pv.locator("[data-gf=generation_kwh]").fill("1200")
    pv.locator("[data-gf=exported_kwh]").fill("200")
    # no renewable power bought: the plant's hour measured no grid electricity to hold it
    pv.locator("[data-gf=evidence]").fill("逆变器读数 2026-11")
    page.click("#gf-add-process")
    p = page.locator("#gf-process-rows tr[data-gf-process]").last
    for key in ("source", "unit", "factor_source"):
        p.locator(f"[data-gf={key}]").fill(WELDING[key])
    p.locator("[data-gf=gas]").select_option("CO2")
    p.locator("[data-gf=activity]").fill("1.2")
    p.locator("[data-gf=factor]").fill("1")
    page.click("#gf-add-process")  # one too many: removed, not sent
    page.locator("#gf-process-rows tr[data-gf-process]").last.locator("button").click()


def waste_row_shown(page: Any, waste: dict[str, Any], english: bool) -> None:
    """The entered indicator's row names it, and where it stands, in the page's language."""
    assert (
        page.locator("[data-indicator=solid_waste_reuse]").inner_text()
        == (WASTE["name_en" if english else "name"])
    )
    assert (
        page.locator("[data-position=solid_waste_reuse]").inner_text()
        == (waste["position_name_en" if english else "position_name"])
    )


# what the page says, by language (the words of i18n.js)
WORDS = {
    "zh": {"not_number": "“{name} · 基准值”不是数字\uff1a{typed}",
           "invalid": "出错: indicators: 指标 energy_per_unit: 引领值 0.5 比基准值 0.3 差",
           "total": "合计", "read_only": "只读账号", "saved": "已保存"},
    "en": {"not_number": "{name} · Baseline is not a number: {typed}",
           "invalid": "Error: indicators: indicator energy_per_unit: the leading value 0.5",
           "total": "Total",
           "read_only": "read-only account", "saved": "Saved"},
}  # fmt: skip


def enterprise_run(c: Console, site: dict[str, Any], lang: str, day: dt.date) -> None:
    page, words, english = c.page, WORDS[lang], lang == "en"
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    assert page.locator("#green-trail").get_attribute("data-count") == "0"
    measured = {r["id"]: r for r in shown(site, day)["green"]["rows"]}
    energy_name = measured["energy_per_unit"]["name_en" if english else "name"]

    # not a number: named in the page's language, nothing sent
    row(page, "energy_per_unit").locator("[data-gf=baseline]").fill("0,5kg")
    page.click("#green-save")
    problem = page.wait_for_selector("#gf-problems").inner_text()
    assert problem == words["not_number"].format(name=energy_name, typed="0,5kg")
    assert "gf-bad" in (
        row(page, "energy_per_unit").locator("[data-gf=baseline]").get_attribute("class") or ""
    )
    assert puts == []

    # a leading value worse than the baseline: the API's refusal, the row marked
    row(page, "energy_per_unit").locator("[data-gf=baseline]").fill("0.3")
    row(page, "energy_per_unit").locator("[data-gf=leading]").fill("0.5")
    page.click("#green-save")
    error = page.wait_for_selector("#green-msg .error").inner_text()
    assert error.startswith(words["invalid"]), error  # the server's words, in the page's
    assert "indicator energy_per_unit: the leading value 0.5 is worse" in error  # + as said
    assert "gf-bad" in (row(page, "energy_per_unit").get_attribute("class") or "")
    assert len(puts) == 1
    refused(c, 422)

    # the PV meter offered, and given with a generation figure as well: refused, PV marked
    pv = page.locator("#gf-pv")
    assert PV_METER["name_en" if english else "name"] in pv.locator("label.gf-meter").inner_text()
    pv.locator("[data-gf-meter=pv-roof]").check()
    pv.locator("[data-gf=generation_kwh]").fill("1200")
    row(page, "energy_per_unit").locator("[data-gf=leading]").fill("")
    page.click("#green-save")
    page.wait_for_selector("#gf-pv.gf-bad")
    assert "pv: on-site generation: give the PV meters or generation_kwh, not both" in (
        page.locator("#green-msg .error").inner_text()
    )
    assert page.locator("#gf-indicators .gf-bad").count() == 0  # the marks of before cleared
    refused(c, 422)
    pv.locator("[data-gf-meter=pv-roof]").uncheck()

    fill_form(page)
    page.fill("#green-note", "首次填报")
    page.click("#green-save")
    page.wait_for_selector("[data-testid=green-saved]")
    assert words["saved"] in page.locator("[data-testid=green-saved]").inner_text()
    doc = shown(site, day)
    assert doc["green"]["error"] is None, doc["green"]["error"]
    rows = {r["id"]: r for r in doc["green"]["rows"]}
    # the sheet: the values entered, the figure placed between them as the API says
    assert page.locator("[data-baseline=energy_per_unit]").inner_text() == "0.5"
    assert page.locator("[data-leading=energy_per_unit]").inner_text() == "0.3"
    assert rows["energy_per_unit"]["reference"] == "机械行业绿色工厂评价要求 表A.1"
    assert page.locator("[data-value=solid_waste_reuse]").inner_text() == "92.5"
    assert page.locator("[data-baseline=solid_waste_reuse]").inner_text() == "80"
    waste = rows["solid_waste_reuse"]
    assert waste["position"] == "between"
    waste_row_shown(page, waste, english)
    groups = [g.split("\t")[0] for g in page.locator("#green-rows tbody tr").all_inner_texts()]
    order = [measured["energy_per_unit"]["group_name_en" if english else "group_name"],
             waste["group_name_en" if english else "group_name"]]  # fmt: skip
    assert groups == sorted(groups, key=order.index)  # the standard's order
    # the process emission in the GHG summary, the PV entry in force
    assert page.locator("[data-tco2e=process]").inner_text() == "1.2"
    assert words["total"] in page.locator("#ghg-categories").inner_text()
    pv = doc["current"]["entries"]["pv"]
    assert (pv["generation_kwh"], pv["exported_kwh"], pv["purchased_renewable_kwh"]) == (
        1200,
        200,
        0,
    )
    assert [p["source"] for p in doc["current"]["process"]] == [WELDING["source"]]
    # the trail grew; the form is prefilled with what is in force
    assert page.locator("#green-trail").get_attribute("data-count") == "1"
    trail = page.locator("#green-trail tbody tr").all_inner_texts()
    assert "op" in trail[0]
    assert "首次填报" in trail[0]
    assert row(page, "energy_per_unit").locator("[data-gf=reference]").input_value() == (
        "机械行业绿色工厂评价要求 表A.1"
    )
    assert page.locator("#gf-pv [data-gf=generation_kwh]").input_value() == "1200"
    assert page.locator("#gf-process-rows [data-gf=source]").input_value() == WELDING["source"]
    # the indicator added now sits in its group, as on the sheet
    placed = page.locator("#gf-indicators tr[data-gf-more=solid_waste_reuse] [data-gf=group]")
    assert placed.input_value() == "resource_efficiency"
    assert page.locator("#gf-more tbody tr").count() == 0
    c.shot("green-en" if english else "green")

    # the file pasted as YAML: first with a broken line (named), then as it should be
    page.click("#green-advanced summary")
    text = ("indicators:\n- id: energy_per_unit\n  baseline: 0.6\n  leading: 0.3\n"
            "  reference: 表A.2\n- id: solid_waste_reuse\n  group: resource_efficiency\n"
            f"  name: {WASTE['name']}\n  unit: '%'\n  direction: higher\n  value: 96\n"
            "  baseline: 80\n  leading: 95\n")  # fmt: skip
    page.fill("#green-text", text.replace("  leading: 0.3\n", "  leading: 0.3\n reference: [\n"))
    page.click("#green-save-text")
    error = page.wait_for_selector("#green-text-msg .error").inner_text()
    assert ("line 5" if english else "第 5 行") in error, error
    refused(c, 422)
    page.fill("#green-note", "更正")
    page.fill("#green-text", text)
    page.click("#green-save-text")
    page.wait_for_selector("#green-trail[data-count='2']")  # the page drawn again
    assert words["saved"] in page.locator("[data-testid=green-saved]").inner_text()
    assert page.locator("[data-baseline=energy_per_unit]").inner_text() == "0.6"
    assert page.locator("[data-position=solid_waste_reuse]").get_attribute("data-pos") == "leading"
    assert [h["note"] for h in shown(site, day)["history"]] == ["首次填报", "更正"]
    if not english:
        speaks_chinese(c, {"op", str(WASTE["id"]), PV_METER["id"]})


def verifier_run(c: Console, site: dict[str, Any], lang: str, day: dt.date) -> None:
    page, words, english = c.page, WORDS[lang], lang == "en"
    assert page.locator("#green-trail").get_attribute("data-count") == "1"
    doc = shown(site, day)
    waste = {r["id"]: r for r in doc["green"]["rows"]}["solid_waste_reuse"]
    waste_row_shown(page, waste, english)
    assert page.locator("[data-baseline=solid_waste_reuse]").inner_text() == "80"
    assert page.locator("[data-tco2e=process]").inner_text() == "1.2"
    assert words["total"] in page.locator("#ghg-categories").inner_text()
    assert words["read_only"] in page.locator("main").inner_text()
    assert "op" in page.locator("#green-trail tbody tr").inner_text()
    assert (
        page.locator("#green-form, #green-save, #green-text, #green-advanced, [data-gf]").count()
        == 0
    )
    if not english:
        speaks_chinese(c, {"op", "auditor", str(WASTE["id"])})


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("role", ["enterprise", "verifier"])
def test_the_green_page(browser: Any, site: dict[str, Any], role: str, lang: str) -> None:
    day = PERIODS[(role, lang)]
    if role == "verifier":  # what the enterprise entered for the verifier's period
        body = {"from": str(day), "to": str(day), "note": "填报", "indicators": [WASTE],
                "process_emissions": [WELDING]}  # fmt: skip
        r = httpx.put(green_url(site), json=body, headers=site["headers"])
        assert r.status_code == 200, r.text
    c = open_page(browser, site, "op" if role == "enterprise" else "auditor", lang, day)
    (enterprise_run if role == "enterprise" else verifier_run)(c, site, lang, day)
    c.close()


def test_the_body_is_the_file_json_kept(site: dict[str, Any]) -> None:
    """The JSON body is unchanged by the YAML route: an object, a date as a string."""
    day = DAY + dt.timedelta(days=6)
    body = {"from": str(day), "to": str(day), "indicators": [WASTE]}
    r = httpx.put(green_url(site), content=json.dumps(body), headers={
        **site["headers"], "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["current"]["entries"]["indicators"][0]["id"] == WASTE["id"]
