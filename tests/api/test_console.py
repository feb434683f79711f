"""The web console in a real browser: Debian's headless chromium driven by Playwright,
against the API on uvicorn with a real PostgreSQL holding two working days of the demo
plant (factory-sim history -> edge-agent backfill -> Mosquitto -> the ingestion server).

An enterprise account logs in, sees KPI cards whose values are the API's, switches to
English and back, opens the live board and a machine's timeline (one bar per state
interval of the API's), the energy and data-quality pages, issues a signed report and
verifies it, seeing the report id, digest and QR code its printed copy carries; a verifier
cannot issue one but verifies it and sees claimed vs recomputed.
Nothing is loaded from anywhere but the server, and the page logs no error.

Screenshots of each page go to the test's temporary directory, and to the directory in
FE_SCREENSHOTS when it is set (`FE_SCREENSHOTS=docs/screenshots pytest
tests/api/test_console.py` refreshes the README's).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.db.schema import migrate
from ingest_server.repo.accounts import add_account, set_password
from simulators.scenario import default_scenario_path, load_scenario
from tests.evidence.test_qr import expected_text, segno_matrix, svg_matrix
from tests.harness.apiserver import serving_api
from tests.harness.backfill import load_history
from tests.harness.broker import start_broker
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FE_CHROMIUM", "/usr/bin/chromium")
SCENARIO = load_scenario(default_scenario_path())
ENT = SCENARIO.enterprise.id
FRI, SAT = dt.date(2026, 11, 20), dt.date(2026, 11, 21)
START = dt.datetime(2026, 11, 19, 16, tzinfo=dt.UTC).timestamp()  # Fri 00:00 in Hefei
END = START + 2 * 86400
PASSWORD = "console-test-password"
CARDS = ("nc_rate_declared", "nc_rate_measured", "networking_rate", "oee", "availability",
         "effectiveness", "quality_ratio", "energy_tce", "energy_per_unit",
         "energy_per_value_added", "water_per_unit", "carbon_tco2")  # fmt: skip


def need_chromium() -> None:
    """The browser tests' browser; failing, not skipping, when it is missing."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")


@contextlib.contextmanager
def served(
    db: str, work: Path, enterprise: dict[str, list[str]], verifier: dict[str, list[str]]
) -> Iterator[tuple[str, dict[str, str]]]:
    """The API on uvicorn over `db`, with enterprise and verifier accounts (name ->
    enterprises) that log in with PASSWORD: its URL, and the first enterprise account's
    headers."""
    with psycopg.connect(db, autocommit=True) as conn:
        for role, accounts in (("enterprise", enterprise), ("verifier", verifier)):
            for name, ents in accounts.items():
                add_account(conn, name, role, ents)
                set_password(conn, name, PASSWORD)
    with serving_api(db, work / "key.pem") as url:
        first = next(iter(enterprise))
        token = httpx.post(f"{url}/api/v1/login", json={"name": first, "password": PASSWORD})
        yield url, {"Authorization": f"Bearer {token.json()['token']}"}


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    need_chromium()
    work = tmp_path_factory.mktemp("console")
    with pg_server.database() as db:
        migrate(db)
        broker = start_broker(work / "broker")
        try:
            # in a thread of its own: Playwright's sync API keeps a loop running in this one
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                history = load_history(db, broker, work, SCENARIO, START, END, 300.0)
                pool.submit(asyncio.run, history).result()
        finally:
            broker.stop()
        with served(db, work, {"ent": [ENT]}, {"verifier": [ENT]}) as (url, headers):
            for day, output, value in ((FRI, 1200, 35.0), (SAT, 1100, 32.0)):
                r = httpx.post(
                    f"{url}/api/v1/enterprises/{ENT}/production", headers=headers,
                    json={"from": str(day), "to": str(day), "output": output,
                          "value_added_10k_cny": value},
                )  # fmt: skip
                assert r.status_code == 201, r.text
            yield {"url": url, "headers": headers, "shots": work / "shots"}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )  # fmt: skip
        try:
            yield b
        finally:
            b.close()


class Console:
    """One browser context (a tab) on the console, watching what it loads and logs."""

    def __init__(self, browser: Any, site: dict[str, Any]) -> None:
        self.site, self.url = site, site["url"]
        self.context = browser.new_context(
            viewport={"width": 1360, "height": 900}, locale="zh-CN", timezone_id="Asia/Shanghai"
        )
        self.page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.foreign: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", self._request)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("response", self._response)
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def _request(self, req: Any) -> None:
        if not req.url.startswith((self.url, "data:", "blob:")):
            self.foreign.append(req.url)

    def _response(self, resp: Any) -> None:
        if resp.status >= 400 and not resp.url.endswith("/api/v1/login"):
            self.errors.append(f"{resp.status} {resp.url}")

    def login(self, name: str) -> None:
        self.page.goto(self.url + "/")
        self.page.fill("input[name=name]", name)
        self.page.fill("input[name=password]", PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_selector("main[data-ready]")

    def period(self, start: dt.date, end: dt.date, b_start: str = "", b_end: str = "") -> None:
        for field, value in (("from", start), ("to", end), ("bfrom", b_start), ("bto", b_end)):
            self.page.fill(f"input[data-field={field}]", str(value))
        self.page.click("[data-testid=apply]")
        self.page.wait_for_selector("main[data-ready]")

    def switch_language(self, ready: str = "main[data-ready]") -> None:
        """The header's zh/en switch, then wait for `ready` (the page drawn again)."""
        self.page.click("header [data-testid=lang]")
        self.page.wait_for_selector(ready)

    def goto(self, page: str) -> None:
        self.page.click(f"a[data-nav={page}]")
        self.page.wait_for_selector(f"main[data-page={page}][data-ready]")

    def shot(self, name: str) -> None:
        out = Path(self.site["shots"])
        out.mkdir(exist_ok=True)
        self.page.screenshot(path=str(out / f"{name}.png"), full_page=True)
        if os.environ.get("FE_SCREENSHOTS"):
            dest = Path(os.environ["FE_SCREENSHOTS"])
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(out / f"{name}.png", dest / f"{name}.png")

    def api(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.url}/api/v1{path}", params=params, headers=self.site["headers"])
        assert r.status_code == 200, r.text
        return r.json()

    def close(self) -> None:
        assert self.foreign == [], f"the console loaded from elsewhere: {self.foreign}"
        assert self.errors == [], f"the page logged errors: {self.errors}"
        self.context.close()


def test_enterprise_sees_the_apis_figures(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("ent")
    c.period(SAT, SAT, str(FRI), str(FRI))
    doc = c.api(f"/enterprises/{ENT}/kpis", **{"from": SAT, "to": SAT,
                "baseline_from": FRI, "baseline_to": FRI})  # fmt: skip
    api = {k["id"]: k for k in doc["kpis"]}
    shown = 0
    for kid in CARDS:
        card = c.page.locator(f"[data-kpi={kid}]")
        value = api[kid]["value"]
        assert card.count() == 1, kid
        if value is None:
            assert card.get_attribute("data-value") == ""
            continue
        assert float(card.get_attribute("data-value") or "nan") == value, kid
        assert card.locator(".name").inner_text() == api[kid]["name"]
        shown += 1
    assert shown >= 10, "most cards should carry a value on a working day"
    # the change vs the baseline day and the evidence behind a card
    change = api["energy_per_unit_change"]["value"]
    assert change is not None
    assert (
        f"{change:+.1f}"[:3]
        in c.page.locator("[data-kpi=energy_per_unit] [data-testid=change]").inner_text()
    )
    c.page.click("[data-kpi=oee] [data-testid=show-evidence]")
    assert api["oee"]["formula_zh"] in c.page.locator("[data-kpi=oee] .details").inner_text()
    c.shot("overview")

    # English and back
    c.switch_language()
    assert c.page.locator("a[data-nav=overview]").inner_text() == "Overview"
    assert (
        c.page.locator("[data-kpi=nc_rate_measured] .name").inner_text()
        == api["nc_rate_measured"]["name_en"]
    )
    c.shot("overview-en")
    c.switch_language()
    assert c.page.locator("a[data-nav=overview]").inner_text() == "总览"
    c.close()


def test_equipment_board_and_timeline(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("ent")
    c.period(SAT, SAT)
    c.goto("equipment")
    rows = c.api(f"/enterprises/{ENT}/equipment")
    assert c.page.locator(".tile").count() == len(rows)
    for r in rows:
        tile = c.page.locator(f".tile[data-equipment={r['id']}]")
        if r["device"] is None:
            expected = "NOT_NETWORKED"
        elif r["gateway_online"] is False:
            expected = "OFFLINE"
        else:
            expected = r["state"] or "none"
        assert tile.get_attribute("data-state") == expected, r["id"]
    c.shot("equipment")

    c.page.click(".tile[data-equipment=cnc-01]")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] #chart-timeline .point")
    # the day shown: the period's last day (Saturday in Hefei)
    end = dt.datetime(2026, 11, 21, 16, tzinfo=dt.UTC)
    tl = c.api(f"/enterprises/{ENT}/equipment/cnc-01/timeline",
               start=(end - dt.timedelta(days=1)).isoformat(), end=end.isoformat())  # fmt: skip
    assert len(tl["intervals"]) > 5
    assert c.page.locator("#chart-timeline .point").count() == len(tl["intervals"])
    assert c.page.locator("#chart-parts .point").count() > 0, "parts per hour"
    # cnc-01 has no power tag of its own: the power of em-turning, which measures it
    assert "em-turning" in c.page.locator("[data-testid=power-source]").inner_text()
    assert c.page.locator("#chart-power .scatterlayer .trace").count() == 1
    c.shot("equipment-timeline")

    # the enterprise corrects a declared attribute; the audit trail shows who and why
    before = next(r for r in rows if r["id"] == "cnc-01")["ideal_cycle_time_s"]
    c.page.fill("[data-attr=ideal_cycle_time_s]", str(before + 5))
    c.page.fill("[data-attr=note]", "measured on the new fixture")
    c.page.click("[data-testid=save-attributes]")
    c.page.wait_for_selector("#audit td:has-text('measured on the new fixture')")
    trail = c.api(f"/enterprises/{ENT}/equipment/cnc-01/audit")
    assert [(a["account"], a["field"], a["old"], a["new"], a["note"]) for a in trail] == [
        ("ent", "ideal_cycle_time_s", before, before + 5, "measured on the new fixture")
    ]
    c.page.wait_for_selector("main[data-ready] [data-attr=ideal_cycle_time_s]")
    c.page.fill("[data-attr=ideal_cycle_time_s]", str(before))
    c.page.fill("[data-attr=note]", "back")
    c.page.click("[data-testid=save-attributes]")
    c.page.wait_for_selector("#audit td:has-text('back')")
    assert c.page.locator("#audit tbody tr").count() == 2
    c.page.click("[data-span=week]")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] #chart-timeline .point")
    c.close()


def test_energy_and_data_quality(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("ent")
    c.period(FRI, SAT)
    c.goto("energy")
    doc = c.api(f"/enterprises/{ENT}/kpis", **{"from": FRI, "to": SAT})
    carriers = {m["carrier"] for m in doc["meters"]}
    for carrier in carriers:
        assert c.page.locator(f"[data-carrier={carrier}] .point").count() > 0, carrier
    assert c.page.locator("[data-intensity=energy_per_unit] .point").count() == 2, "one per day"
    # the factor tables behind tce and CO2, with their sources
    factors = c.api("/factors")
    rows = sum(len(tb["rows"]) for tb in factors["energy"] + factors["emission"])
    assert c.page.locator("#factors tbody tr").count() == rows
    c.page.click("#factors summary")
    assert "GB/T 2589-2020" in c.page.locator("#factors").inner_text()
    c.shot("energy")

    c.goto("quality")
    q = doc["quality"]
    assert c.page.locator("#tags tbody tr").count() == len(q["tags"])
    assert c.page.locator("#gaps tbody tr").count() == max(1, len(q["gaps"]))
    assert c.page.locator("#gateways tbody tr").count() == 1
    c.shot("quality")

    # output entered on the energy page, for a day with no data at all (the page still
    # draws, empty)
    c.period(dt.date(2026, 10, 1), dt.date(2026, 10, 1))
    c.goto("energy")
    assert c.page.locator("#production-list").get_attribute("data-count") == "0"
    c.page.fill("[data-prod=output]", "321")
    c.page.fill("[data-prod=value_added_10k_cny]", "6.5")
    c.page.fill("[data-prod=note]", "October check")
    c.page.click("[data-testid=add-production]")
    c.page.wait_for_selector("#production-list[data-count='1']")
    entries = c.api(f"/enterprises/{ENT}/production")
    assert [(e["period_from"], e["output"], e["value_added_10k_cny"], e["entered_by"])
            for e in entries if e["note"] == "October check"] == [
        ("2026-10-01", 321.0, 6.5, "ent")
    ]  # fmt: skip
    c.close()


def verify_file(page: Any, path: Path, reason: str | None = None) -> tuple[Any, str, str]:
    """Pick `path` in the evidence page's file field; (the verdict element, the signature
    line, the text of `reason`'s line when one is named)."""
    page.evaluate("document.getElementById('verify-out')?.replaceChildren()")
    page.set_input_files("[data-testid=verify-file]", str(path))
    verdict = page.wait_for_selector("#verdict")
    why = page.locator(f"#reasons li[data-reason={reason}]").inner_text() if reason else ""
    return verdict, page.locator("#signature").inner_text(), why


def paper_shown(page: Any, doc: dict[str, Any]) -> None:
    """The verdict shows the id, short digest and QR code of `doc`'s printed copy: the QR
    image's modules are those of the text computed here from the report."""
    text = expected_text(doc)
    digest = text.split(":")[2]
    assert page.locator("#paper-id").inner_text() == doc["report_id"]
    short = " ".join(digest[i : i + 4] for i in range(0, 16, 4))
    assert page.locator("#paper-digest").inner_text() == short
    img = page.locator("#paper img[data-testid=paper-qr]")
    media, _, data = (img.get_attribute("src") or "").partition(",")
    assert media == "data:image/svg+xml;charset=utf-8"
    assert svg_matrix(urllib.parse.unquote(data)) == segno_matrix(text)
    assert img.evaluate("i => i.complete && i.naturalWidth > 0")  # the browser drew it


def test_issue_and_verify_a_report(browser: Any, site: dict[str, Any], tmp_path: Path) -> None:
    c = Console(browser, site)
    c.login("ent")
    # the default period: the 14 days that ended at the site's last midnight (a report of
    # it is complete), the baseline the 14 days before
    today = dt.datetime.now(ZoneInfo(SCENARIO.site.timezone)).date()
    shown = {
        f: c.page.input_value(f"input[data-field={f}]") for f in ("from", "to", "bfrom", "bto")
    }
    day = dt.timedelta(days=1)
    assert shown == {"to": str(today - day), "from": str(today - 14 * day),
                     "bto": str(today - 15 * day), "bfrom": str(today - 28 * day)}  # fmt: skip
    c.goto("evidence")
    assert c.page.locator("[data-testid=period-open]").count() == 0
    c.period(SAT, today, "", "")  # a period that is not over: the page warns before issuing
    assert "之后到达的数据会改变数值" in c.page.locator("[data-testid=period-open]").inner_text()
    c.period(SAT, SAT, "", "")
    before = c.page.locator("#report-list").get_attribute("data-count")
    c.page.click("[data-testid=generate]")
    issued = c.page.wait_for_selector("[data-testid=issued]").get_attribute("data-report")
    assert "null" not in c.page.locator("#issue-msg").inner_text()
    listed = c.api(f"/enterprises/{ENT}/reports")
    assert issued in [r["id"] for r in listed]
    assert c.page.locator("#report-list").get_attribute("data-count") == str(int(before or 0) + 1)
    c.page.click(f"[data-verify='{issued}']")
    assert c.page.wait_for_selector("#verdict").get_attribute("data-ok") == "true"
    paper_shown(c.page, c.api(f"/reports/{issued}"))
    c.shot("evidence")
    c.page.click("[data-testid=logout]")
    c.page.wait_for_selector("form.login")
    c.close()

    # a verifier: no issuing, but verification with claimed vs recomputed
    v = Console(browser, site)
    v.login("verifier")
    v.goto("evidence")
    assert v.page.locator("[data-testid=generate]").count() == 0
    assert v.page.locator("[data-testid=read-only]").count() == 1
    v.page.click(f"[data-verify='{issued}']")
    verdict = v.page.wait_for_selector("#verdict")
    assert verdict.get_attribute("data-ok") == "true"
    checks = v.page.locator("#checks tbody tr")
    assert checks.count() > 10
    assert v.page.locator("#checks .bad").count() == 0
    v.shot("evidence-verifier")
    # a report file, as downloaded: its exact bytes go to the server, which verifies them
    r = httpx.get(f"{site['url']}/api/v1/reports/{issued}", headers=site["headers"])
    assert r.status_code == 200
    assert b".0," in r.content  # numbers a browser's JSON.stringify would write differently
    path = tmp_path / "report.json"
    path.write_bytes(r.content)
    verdict, signature, _ = verify_file(v.page, path)
    assert verdict.get_attribute("data-ok") == "true"
    assert "验证通过" in verdict.inner_text()
    paper_shown(v.page, r.json())  # the file's own mark, to hold against a paper copy
    assert signature.startswith("有效")  # not the server's English
    # a changed file: not verified, and the page says why, in its language
    path.write_bytes(r.content.replace(b'"value"', b'"value" ', 1).replace(b".0,", b".5,", 1))
    verdict, signature, why = verify_file(v.page, path, reason="signature_invalid")
    assert verdict.get_attribute("data-ok") == "false"
    assert "签名无效" in why
    assert signature.startswith("无效")
    # and in English, when the console is in English
    v.switch_language("main[data-ready] [data-testid=verify-file]")
    verdict, signature, why = verify_file(v.page, path, reason="signature_invalid")
    assert "invalid signature: the report was changed after it was signed" in why
    assert signature.startswith("invalid")
    v.switch_language()
    # the declared attributes are shown to a verifier, not editable
    v.page.goto(site["url"] + "/console/#/equipment/cnc-02")
    v.page.wait_for_selector("main[data-page=equipment][data-ready] #attributes")
    assert v.page.locator("[data-attr=nc]").is_disabled()
    assert v.page.locator("[data-testid=save-attributes]").count() == 0
    v.goto("energy")
    assert v.page.locator("#production-list").count() == 1
    assert v.page.locator("[data-testid=add-production]").count() == 0
    v.close()


@pytest.fixture(scope="module")
def issued(site: dict[str, Any]) -> str:
    """A report of Saturday against Friday, issued through the API: its id."""
    r = httpx.post(f"{site['url']}/api/v1/enterprises/{ENT}/reports", headers=site["headers"],
                   json={"from": str(SAT), "to": str(SAT), "baseline_from": str(FRI),
                         "baseline_to": str(FRI)}, timeout=120)  # fmt: skip
    assert r.status_code == 201, r.text
    report_id: str = r.json()["id"]
    return report_id


# what the attachment holds after its first page (the summary), each in both languages
SECTIONS = ("目标对照", "Targets", "计量器具一览表", "Meter register", "方法依据",
            "Methodology references", "绿色工厂评价指标", "温室气体排放报告",
            "Greenhouse-gas report", "承诺", "Declaration")  # fmt: skip


@pytest.mark.parametrize(("who", "lang"), [("ent", "zh"), ("ent", "en"), ("verifier", "zh"),
                                           ("verifier", "en")])  # fmt: skip
def test_the_report_as_an_attachment(
    browser: Any, site: dict[str, Any], issued: str, who: str, lang: str
) -> None:
    """The PDF and the HTML of an issued report, downloaded from the evidence page by the
    enterprise and by its verifier, in either language of the console: the summary on
    page one, then the targets, the meter register, the methodology, the green-factory and
    GHG packs and the declaration; every font embedded."""
    import pypdf  # noqa: PLC0415  (the test extra's; only these tests read PDFs)

    from tests.evidence.test_pdf import embedded, fonts  # noqa: PLC0415

    c = Console(browser, site)
    c.login(who)
    if lang == "en":
        c.switch_language()
    c.goto("evidence")
    row = c.page.locator("#report-list tr", has=c.page.locator(f"[data-verify='{issued}']"))
    button = row.locator("[data-download=pdf]")
    title = {"zh": "打印版报告", "en": "the printed report (PDF"}[lang]
    assert title in (button.get_attribute("title") or "")
    heads = c.page.locator("#report-list thead").inner_text()
    assert {"zh": "下载", "en": "Download"}[lang] in heads
    with c.page.expect_download() as info:
        row.locator("[data-download=html]").click()
    html = Path(info.value.path()).read_text(encoding="utf-8")
    assert [x for x in SECTIONS if x not in html] == []
    with c.page.expect_download(timeout=120_000) as info:
        button.click()
    pdf = Path(info.value.path())
    assert pdf.read_bytes().startswith(b"%PDF-")
    reader = pypdf.PdfReader(pdf)
    first = reader.pages[0].extract_text()
    assert "主要指标" in first
    assert "How to verify" in first
    assert issued[:8] in first.replace("\n", "")  # the id to look the report up by
    assert len(reader.pages) >= 2
    if (who, lang) == ("ent", "zh"):  # the same file for all four (printed once): read it once
        rest = "".join(page.extract_text() for page in reader.pages[1:])
        assert [x for x in SECTIONS if x not in rest] == []
    used = fonts(reader)
    assert [name for name, f in used.items() if not embedded(f)] == []
    c.close()


def test_wrong_password_is_refused_on_the_page(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.page.goto(site["url"] + "/")
    c.page.fill("input[name=name]", "ent")
    c.page.fill("input[name=password]", "not-the-password")
    c.page.click("button[type=submit]")
    assert c.page.wait_for_selector("form.login .error").inner_text() == "账号或密码错误"
    c.shot("login")
    c.errors = [e for e in c.errors if "401" not in e]  # the browser logs the refused request
    c.close()
