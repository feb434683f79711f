"""Chinese everywhere in the Chinese console and in the report's Chinese slots (issue 18).

The console in zh walks every page as an enterprise and as a verifier (the demo plant of
tests/api/test_console.py: login, a refused login and a locked-out name, overview with
every card's evidence open, a period the API refuses, the live board, a machine, energy
with the factor tables, evidence with an issued report, its bundle and a verdict, data
quality) and collects every text a user sees: the text nodes and the tooltips,
placeholders and alt texts of the elements shown, plotly's axes included. In zh, no such
text may hold a word of three or more ASCII letters, except the units and abbreviations
the programmes use as they are (`ALLOWED`) and the enterprise's own names and ids
(registry ids, vendors and models, tag names, account names: `data_words`). `<code>`
holds literals (a command, a key id, a digest) and is not read.

The report's HTML prints Chinese with English under it (`<span class="en">`): every table
cell's text outside those spans is held to the same rule.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import httpx2 as httpx
import pytest

from tests.api.test_console import ENT, FRI, SAT, Console, browser, site

pytestmark = pytest.mark.slow
__all__ = ["browser", "site"]  # the browser tests' fixtures (chromium; the demo plant)

# a word: letters and digits from a letter on (tCO2, kgCO2, GB, T, ...)
WORD = re.compile(r"[A-Za-z][A-Za-z0-9₂]*")
ALLOWED = frozenset((
    "kWh", "MWh", "GWh", "kgce", "tce", "kcal", "tCO2", "tCO₂", "kgCO2", "CO2", "CO₂",
    "OEE", "MTBF", "MTTR", "APT", "PBT", "POT", "NC", "KPI", "PLC", "DCS", "MES", "ISO", "GB",
    "PDF", "XLSX", "JSON", "HTML", "CSV", "UTC", "SHA", "QR", "zip", "English",
))  # fmt: skip


# every text a user sees on the page: visible text nodes (SVG's too) and the tooltips,
# placeholders and alt texts of visible elements; not inside <code>, <script>, <style>
VISIBLE_TEXTS = """() => {
  const shown = (el) => el && el.checkVisibility({ visibilityProperty: true })
    && !el.closest('code, script, style');
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const text = n.nodeValue.trim();
    if (text && shown(n.parentElement)) out.push(text);
  }
  for (const el of document.body.querySelectorAll('[title], [placeholder], [alt]')) {
    if (!shown(el)) continue;
    for (const a of ['title', 'placeholder', 'alt']) {
      if (el.getAttribute(a)) out.push(el.getAttribute(a));
    }
  }
  return out;
}"""


def data_words(c: Console) -> set[str]:
    """The enterprise's own names and ids, as the API gives them: shown as they are."""
    eqs = c.api(f"/enterprises/{ENT}/equipment")
    doc = c.api(f"/enterprises/{ENT}/kpis", **{"from": FRI, "to": SAT})
    gws = c.api(f"/enterprises/{ENT}/gateways")
    values: list[Any] = [ENT, "ent", "verifier"]
    for e in eqs:
        values += [e.get(k) for k in ("id", "device", "gateway", "process", "site", "vendor",
                                      "model", "interface")]  # fmt: skip
    values += [m["id"] for m in doc["meters"]]
    values += [x for t in doc["quality"]["tags"] for x in (t["device"], t["tag"])]
    values += [x for g in gws for x in (g["id"], g["site"], *(g.get("agent") or {}).values())]
    # the meter register's nameplates and certificates and the declaration's signatory, as
    # the enterprise typed them into its registry
    register = c.api(f"/enterprises/{ENT}/meter-register", **{"from": FRI, "to": SAT})
    nameplate = ("serial", "model", "accuracy_class", "certificate", "issued_by")
    values += [m.get(k) for m in register["meters"] for k in nameplate]
    declared = c.api(f"/enterprises/{ENT}/declaration")
    values += [declared.get("signatory"), declared.get("position")]
    return {w for v in values if isinstance(v, str) for w in re.split(r"[^\w-]+", v) if w}


def foreign(texts: list[str], own: set[str]) -> list[str]:
    """The texts holding a word that is neither Chinese's nor allowed (an id of the
    enterprise's, a unit), each once."""
    out = []
    for text in texts:
        rest = " ".join(w for w in re.split(r"[^\w-]+", text) if w not in own)
        words = WORD.findall(rest)
        if any(len(re.sub(r"[^A-Za-z]", "", w)) >= 3 and w not in ALLOWED for w in words):
            out.append(text)
    return list(dict.fromkeys(out))


class Walk:
    """The zh console's offending texts, by page."""

    def __init__(self, c: Console) -> None:
        self.c, self.own = c, data_words(c)
        self.found: dict[str, list[str]] = {}

    def look(self, where: str) -> None:
        page = self.c.page
        # every <details> open, every KPI card's evidence shown
        page.evaluate("document.querySelectorAll('details').forEach((d) => { d.open = true; })")
        page.evaluate("document.querySelectorAll('.details').forEach((d) => { d.hidden = false; })")
        bad = foreign(page.evaluate(VISIBLE_TEXTS), self.own)
        if bad:
            self.found[where] = bad

    def report(self) -> str:
        n = sum(len(v) for v in self.found.values())
        return f"{n} text(s) not in Chinese: " + "; ".join(
            f"{where}: {bad!r}" for where, bad in self.found.items()
        )


class ZhCells(HTMLParser):
    """The text of every <td>/<th> outside `<span class="en">`."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[str] = []
        self._en = 0  # depth inside an English span
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._en:
            self._en += tag == "span"
        elif tag == "span" and ("class", "en") in attrs:
            self._en = 1
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._en:
            self._en -= tag == "span"
        elif tag in ("td", "th") and self._cell is not None:
            self.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None and not self._en:
            self._cell.append(data)


def test_every_page_speaks_chinese(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    w = Walk(c)
    page = c.page
    page.goto(site["url"] + "/")
    page.wait_for_selector("form.login")
    w.look("login")
    page.fill("input[name=name]", "ent")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    page.wait_for_selector("form.login .error")
    w.look("login refused")

    c.login("ent")
    c.period(SAT, SAT, str(FRI), str(FRI))
    w.look("overview")
    page.fill("input[data-field=to]", str(FRI))  # ends before it starts: the API refuses it
    page.click("[data-testid=apply]")
    page.wait_for_selector("main .error")
    w.look("overview, a period that ends before it starts")
    c.errors = [e for e in c.errors if not re.search(r"\b(401|422)\b", e)]
    c.period(FRI, SAT, "", "")
    c.goto("equipment")
    w.look("equipment board")
    page.click(".tile[data-equipment=cnc-01]")
    page.wait_for_selector("main[data-page=equipment][data-ready] #chart-timeline .point")
    w.look("machine cnc-01")
    c.goto("energy")
    w.look("energy")
    c.goto("evidence")
    page.click("[data-testid=generate]")
    issued = page.wait_for_selector("[data-testid=issued]").get_attribute("data-report")
    page.wait_for_selector(f"[data-bundle-cell='{issued}']")
    page.click(f"[data-verify='{issued}']")
    page.wait_for_selector("#verdict")
    w.look("evidence, a verdict")
    c.goto("quality")
    w.look("data quality")
    c.goto("losses")
    page.wait_for_selector("main[data-page=losses][data-ready] #causes")
    w.look("losses")
    c.goto("green")
    page.wait_for_selector("main[data-page=green][data-ready] #green-rows")
    w.look("green factory")
    page.click("[data-testid=logout]")
    page.wait_for_selector("form.login")
    c.close()

    v = Console(browser, site)
    v.login("verifier")
    v.goto("evidence")
    v.page.click(f"[data-verify='{issued}']")
    v.page.wait_for_selector("#verdict")
    w.c = v
    w.look("evidence, verifier")
    v.page.goto(site["url"] + "/console/#/equipment/cnc-02")
    v.page.wait_for_selector("main[data-page=equipment][data-ready] #attributes")
    w.look("machine cnc-02, verifier")
    v.goto("losses")
    v.page.wait_for_selector("main[data-page=losses][data-ready] #causes")
    w.look("losses, verifier")
    v.goto("green")
    v.page.wait_for_selector("main[data-page=green][data-ready] #green-rows")
    w.look("green factory, verifier")
    v.close()

    # a name locked out after five wrong passwords (another name: the others log in)
    lock = Console(browser, site)
    lock.page.goto(site["url"] + "/")
    for _ in range(6):
        lock.page.fill("input[name=name]", "nobody")
        lock.page.fill("input[name=password]", "wrong")
        lock.page.click("button[type=submit]")
        lock.page.wait_for_selector("form.login .error")
    w.c = lock
    w.look("login, locked out")
    lock.errors = [e for e in lock.errors if not re.search(r"\b(401|429)\b", e)]
    lock.close()
    assert w.found == {}, w.report()


CJK = re.compile(r"[\u3400-\u9fff]")
# a digest, a signature, a QR text: long runs of hex or base64, or a digest's short form
CODE = re.compile(r"[A-Za-z0-9+/=_:-]{16,}|(?:[0-9a-f]{4} ){3}[0-9a-f]{4}")


def test_the_reports_chinese_slots_are_chinese(site: dict[str, Any]) -> None:
    """The report's HTML: every cell's text outside `<span class="en">` holds Chinese, or
    only numbers, ids, units and dates (the brief's rule for the printed report)."""
    headers = site["headers"]
    made = httpx.post(f"{site['url']}/api/v1/enterprises/{ENT}/reports", headers=headers,
                      json={"from": str(FRI), "to": str(SAT)}, timeout=120)  # fmt: skip
    assert made.status_code == 201, made.text
    doc = made.json()
    r = httpx.get(f"{site['url']}/api/v1/reports/{doc['id']}", params={"format": "html"},
                  headers=headers)  # fmt: skip
    assert r.status_code == 200, r.text
    cells = ZhCells()
    cells.feed(r.text)
    assert len(cells.cells) > 100
    report = httpx.get(f"{site['url']}/api/v1/reports/{doc['id']}", headers=headers).json()
    own = {report["enterprise"].get("credit_code") or "", "sha256", "Asia", "Shanghai", "ent"}
    for m in (report.get("meter_register") or {}).get("meters", []):
        own |= {str(m.get(k)) for k in ("id", "serial", "model", "certificate") if m.get(k)}
    for e in report["equipment"]:
        own |= {
            str(e.get(k)) for k in ("id", "process", "interface", "vendor", "model") if e.get(k)
        }
    own |= {t[k] for t in report["quality"]["tags"] for k in ("device", "tag")}
    own |= {m["id"] for m in report["meters"]} | {s["id"] for s in report["sites"]}
    english = [c for c in cells.cells if not CJK.search(c)]
    bad = foreign([CODE.sub(" ", c) for c in english], own)
    assert bad == [], f"{len(bad)} report cell(s) not in Chinese: {bad}"


TICKS = "#chart-timeline .xtick, #chart-parts .xtick"


def test_dates_and_words_in_charts_follow_the_language(browser: Any, site: dict[str, Any]) -> None:
    """Plotly's date axes in zh-CN (months and weekdays in Chinese), in English in en."""
    c = Console(browser, site)
    c.login("ent")
    c.period(FRI, SAT)
    c.page.click("a[data-nav=equipment]")
    c.page.click(".tile[data-equipment=cnc-01]")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] #chart-parts .xtick")
    ticks = " ".join(c.page.locator(TICKS).all_text_contents())
    assert re.search(r"\d+月\d+日|\d+日", ticks), ticks
    assert not re.search(r"Nov|Mon|Tue|Wed|Thu|Fri|Sat|Sun", ticks), ticks
    c.switch_language("main[data-page=equipment][data-ready] #chart-parts .xtick")
    ticks = " ".join(c.page.locator(TICKS).all_text_contents())
    assert "月" not in ticks, ticks
    c.switch_language()
    c.close()
