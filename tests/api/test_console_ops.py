"""What operations staff expect of the console, in a real browser (chromium, as
tests/api/test_console.py, on its two days of the demo plant): the site and process
filters narrow the tables and the KPI cards (the API's `site` and `process`); every table
with an id downloads as CSV with its rows; a KPI card lists the machines behind it; a
meter-only and a non-networked machine have pages that say so, with no empty timeline and
no parts chart; the legends of the amber coverage colour and of ★; the data-quality
page's unknown time per machine is the KPIs'; the intensity trends show their targets.
As an enterprise and as a verifier, in Chinese and in English.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.api.test_console import ENT, FRI, SAT, Console, browser, site

pytestmark = pytest.mark.slow
__all__ = ["browser", "site"]  # the browser tests' fixtures (chromium; the demo plant)

MON = SAT + dt.timedelta(days=2)  # no data came: the plant of the fixture ends on Saturday
DAYS = {"from": SAT, "to": SAT, "baseline_from": FRI, "baseline_to": FRI}
WORDS = {
    "zh": {"meter_only": "仅计量", "not_networked": "未联网", "offline": "离线",
           "star": "关键工序"},
    "en": {"meter_only": "metered only", "not_networked": "not networked", "offline": "offline",
           "star": "key-process"},
}  # fmt: skip


def get(at: dict[str, Any], path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{at['url']}/api/v1{path}", params=params, headers=at["headers"])


def kpis(at: dict[str, Any], **scope: str) -> dict[str, Any]:
    r = get(at, f"/enterprises/{ENT}/kpis", **DAYS, **scope)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_the_api_narrows_the_figures_to_a_site_or_a_process(site: dict[str, Any]) -> None:
    whole = kpis(site)
    turning = kpis(site, process="turning")
    machines = [e for e in whole["equipment"] if e["process"] == "turning"]
    assert [e["id"] for e in turning["equipment"]] == [e["id"] for e in machines]
    assert turning["meters"] == []
    by_id = {k["id"]: k for k in turning["kpis"]}
    assert "energy_tce" not in by_id
    assert "energy_tce" in turning["scope"]["unscoped"]
    # the same engine over fewer machines: the process's own row of the whole answer
    assert by_id["oee"]["value"] == whole["groups"]["process"]["turning"]["oee"]
    production = [e for e in machines if e["production"]]
    assert by_id["networking_rate"]["denominator"] == len(production)
    for r in turning["targets"]["results"]:  # held against the process's own figures
        assert r["kpi"] in by_id or r["status"] == "not_comparable", r
        assert r["kpi"] not in by_id or r["value"] == by_id[r["kpi"]]["value"], r
    # one site: the site's figures are the enterprise's
    plant = kpis(site, site=whole["sites"][0]["id"])
    assert [(k["id"], k["value"]) for k in plant["kpis"]] == [
        (k["id"], k["value"]) for k in whole["kpis"]
    ]
    assert len(plant["quality"]["gaps"]) == len(whole["quality"]["gaps"])
    r = get(site, f"/enterprises/{ENT}/trend", **{"from": FRI, "to": SAT}, process="turning",
            kpi=["oee", "energy_tce"])  # fmt: skip
    assert r.status_code == 200, r.text
    trend = r.json()
    assert [p["kpis"] for p in trend["points"]][1]["oee"] == by_id["oee"]["value"]
    assert "energy_tce" not in trend["points"][0]["kpis"]
    # a process or site the enterprise does not have: named, with the ones it has
    for scope, known in (("process", "turning"), ("site", whole["sites"][0]["id"])):
        r = get(site, f"/enterprises/{ENT}/kpis", **DAYS, **{scope: "nowhere"})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert "'nowhere'" in err["message"]
        assert known in err["message"]
        assert known in err["message_zh"]


def download_csv(c: Console, table: str) -> list[list[str]]:
    with c.page.expect_download() as info:
        c.page.click(f"[data-csv={table}]")
    data = Path(info.value.path()).read_bytes()
    assert data.startswith(b"\xef\xbb\xbf"), "UTF-8 with a BOM, for spreadsheet programs"
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.parametrize(("who", "lang"), [("ent", "zh"), ("ent", "en"), ("verifier", "zh"),
                                           ("verifier", "en")])  # fmt: skip
def test_operations_console(browser: Any, site: dict[str, Any], who: str, lang: str) -> None:
    words = WORDS[lang]
    shots = who == "ent" and lang == "zh"  # the README's, once
    c = Console(browser, site)
    c.login(who)
    if lang == "en":
        c.switch_language()
    c.period(SAT, SAT, str(FRI), str(FRI))
    whole = kpis(site)

    # a card leads to the machines behind it: those it counts, and the rest not counted
    c.page.click("[data-kpi=oee] [data-testid=show-machines]")
    oee = next(k for k in whole["kpis"] if k["id"] == "oee")
    counted = c.page.locator("#kpi-machine-list [data-counted=true]")
    assert sorted(counted.evaluate_all("els => els.map(e => e.dataset.machine)")) == sorted(
        oee["inputs"]
    )
    production = [e["id"] for e in whole["equipment"] if e["production"]]
    assert c.page.locator("#kpi-machine-list [data-machine]").count() == len(production)
    assert c.page.locator("[data-testid=legend-coverage] .swatch.warn").count() == 1
    if shots:
        c.shot("overview-machines")

    # the process filter narrows the cards and the tables
    c.page.select_option("select[data-field=proc]", "turning")
    c.page.wait_for_selector("main[data-page=overview][data-ready]")
    turning = kpis(site, process="turning")
    before = {k["id"]: k["value"] for k in whole["kpis"]}
    cards = c.page.locator("[data-kpi]")
    shown = dict(cards.evaluate_all("els => els.map(e => [e.dataset.kpi, e.dataset.value])"))
    now = {k["id"]: k["value"] for k in turning["kpis"] if k["id"] in shown}
    assert {k: float(v) if v else None for k, v in shown.items()} == now
    assert any(now[k] != before[k] for k in now), "the process's own figures"
    assert c.page.locator("[data-kpi=energy_tce]").count() == 0
    assert c.page.locator("[data-testid=unscoped]").count() == 1
    key = [e for e in turning["equipment"] if e["key_process"]]
    assert c.page.locator("#nc-equipment tbody tr").count() == len(key)
    # the table as CSV: a heading and its rows, as shown
    rows = download_csv(c, "nc-equipment")
    assert len(rows) == 1 + len(key)
    assert all(any(e["id"] in r or e["name"] in r or e["name_en"] in r for r in map(
        " ".join, rows[1:])) for e in key)  # fmt: skip
    c.goto("equipment")
    tiles = c.page.locator(".tile")
    assert tiles.count() == sum(e["process"] == "turning" for e in whole["equipment"])
    assert words["star"] in c.page.locator("[data-testid=legend-star]").inner_text()
    assert "★" in c.page.locator("[data-testid=legend-star]").inner_text()
    c.page.select_option("select[data-field=proc]", "")
    c.page.wait_for_selector("main[data-page=equipment][data-ready]")
    assert tiles.count() == len(whole["equipment"])

    # a meter-only machine: what it is, its meter's power, no timeline and no parts chart
    c.page.goto(f"{site['url']}/console/#/equipment/grd-02")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] [data-kind]")
    assert c.page.locator("[data-kind]").get_attribute("data-kind") == "meter_only"
    assert words["meter_only"] in c.page.locator("[data-kind]").inner_text()
    assert c.page.locator("#chart-timeline, #chart-parts").count() == 0
    assert c.page.locator("[data-testid=power-source]").get_attribute("data-shared") == "false"
    assert "em-grd-02" in c.page.locator("[data-testid=power-source]").inner_text()
    if shots:
        c.shot("equipment-meter-only")
    # a machine not networked: says so; its gateway is none, not "offline"; the power is
    # a shared line meter's, said so
    c.page.goto(f"{site['url']}/console/#/equipment/cnc-08")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] [data-kind]")
    assert c.page.locator("[data-kind]").get_attribute("data-kind") == "not_networked"
    assert words["not_networked"] in c.page.locator("[data-kind]").inner_text()
    assert c.page.locator("#chart-timeline, #chart-parts").count() == 0
    assert "2000" not in c.page.locator("main").inner_text()
    power = c.page.locator("[data-testid=power-source]")
    assert power.get_attribute("data-shared") == "true"
    assert "em-turning" in power.inner_text()
    gateway = c.page.locator("#attributes table").first.locator("tbody tr").nth(6).inner_text()
    assert words["offline"] not in gateway
    if shots:
        c.shot("equipment-not-networked")

    # data quality: each machine's unknown time is the KPIs', over Saturday and the Monday
    # after, when no data came (every machine with a state has its shifts unknown); the
    # coverage legend; the CSV's hours as numbers
    c.period(SAT, MON, str(FRI), str(FRI))
    c.goto("quality")
    r = get(site, f"/enterprises/{ENT}/kpis", **{**DAYS, "to": MON})
    assert r.status_code == 200, r.text
    both = r.json()["equipment"]
    shown = c.page.locator("#unknown-time [data-unknown-s]")
    assert shown.count() == sum(e["time"] is not None for e in both)
    unknown = {e["id"]: e["time"]["unknown_s"] for e in both if e["time"]}
    assert all(v >= 8 * 3600 for v in unknown.values()), unknown  # Monday's shifts at least
    values = shown.evaluate_all("els => els.map(e => Number(e.dataset.unknownS))")
    assert sorted(values) == sorted(unknown.values())
    assert c.page.locator("[data-testid=legend-coverage] .swatch.warn").count() == 1
    rows = download_csv(c, "unknown-time")
    assert len(rows) == 1 + len(both)
    hours = {float(row[1]) for row in rows[1:] if row[1][:1].isdigit()}  # plain numbers
    assert hours == {round(v / 3600, 2) for v in unknown.values()}
    c.period(SAT, SAT, str(FRI), str(FRI))

    # the intensity trends against their targets: the region's -14 % of energy per value
    # added, drawn at the baseline's value less 14 %
    c.goto("energy")
    trend = c.page.locator("[data-intensity=energy_per_value_added]")
    assert trend.get_attribute("data-targets") == "1"
    assert trend.locator(".scatterlayer .trace").count() == 3
    c.close()
