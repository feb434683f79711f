"""The console's downtime reasons and losses in a real browser (chromium, as
tests/api/test_console.py), against the API on uvicorn over the hand-made hour of
tests/api/test_downtime.py: two machines whose every second is known, a catalogue of four
reasons, alarm texts on cnc-01.

The fixture gives cnc-01's IDLE stop a reason through the API, and gives another to its
first DOWN stop before late data move that stop's start (the reason is then "interval
changed"). An operator in Chinese clears the changed one, attaches a reason to a stop (the
select offers only those that apply to DOWN), sees it in the table and on the trail, is
told what the API refused, sees the alarm texts on the timeline and the reason's bar in
the loss Pareto; an operator in English attaches a reason to the first stop and is told
what the API refused in English; a verifier reads the reasons and has no control, in
English and in Chinese. Screenshots: downtime.png and losses.png (FE_SCREENSHOTS as
test_console.py).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.db.schema import migrate
from ingest_server.repo.accounts import set_password
from tests.api.test_console import PASSWORD, Console, browser, need_chromium
from tests.api.test_downtime import T0, at, make_plant
from tests.harness.apiserver import serving_api
from tests.harness.ingest import batch, open_store, s, write
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's browser (chromium), shared with test_console.py

DAY = dt.date(2026, 11, 16)  # T0 is 09:00 of it in Hefei


def instant(offset: float) -> str:
    """T0 + offset as the API writes an instant (the key of a stop in the page)."""
    return at(offset).replace("+00:00", "Z")


DOWN_1, IDLE, DOWN_2 = instant(500), instant(1500), instant(2400)  # cnc-01's stops once late
# data came
MOVED = instant(600)  # where its first DOWN started before they came (now 500)


def attach(site: dict[str, Any], start: str, reason: str | None) -> None:
    r = httpx.put(
        f"{site['url']}/api/v1/enterprises/hf/equipment/cnc-01/stops/reason",
        json={"start": start, "reason": reason}, headers=site["headers"],
    )  # fmt: skip
    assert r.status_code == 200, r.text


@contextlib.contextmanager
def served_plant(
    pg_server: PgServer, work: Path
) -> Iterator[tuple[str, str, dict[str, dict[str, str]]]]:
    """test_downtime's plant behind a real API process, its operator (op) and verifier
    (auditor) able to log in to the console: (database, url, each account's headers)."""
    need_chromium()
    with pg_server.database() as db:
        migrate(db)
        _, tokens = make_plant(db, work)
        with psycopg.connect(db, autocommit=True) as conn:
            for name in ("op", "auditor"):
                set_password(conn, name, PASSWORD)
        with serving_api(db, work / "key.pem") as url:
            yield db, url, tokens


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("console-downtime")
    with served_plant(pg_server, work) as (db, url, tokens):
        site = {"url": url, "headers": tokens["op"], "shots": work / "shots"}
        attach(site, MOVED, "tooling")
        attach(site, IDLE, "no-material")
        store = open_store(db)
        try:  # the DOWN first heard at 500, not 600: the tooling reason is left behind
            write(store, ("data", batch(2, [s("cnc-01", "state", T0 + 500, "DOWN")], boot=2)))
        finally:
            store.conn.close()
        yield site


def open_machine(c: Console, eid: str) -> None:
    c.period(DAY, DAY)
    c.page.evaluate(f"location.hash = '#/equipment/{eid}'")
    c.page.wait_for_selector("main[data-page=equipment][data-ready] #stops")


def open_losses(c: Console) -> None:
    c.goto("losses")
    c.page.wait_for_selector("#causes")


def texts(c: Console, selector: str) -> list[str]:
    return [x.strip() for x in c.page.locator(selector).all_inner_texts()]


def test_an_operator_attaches_a_reason_in_chinese(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("op")
    open_machine(c, "cnc-01")
    page = c.page
    assert page.locator("#stops").get_attribute("data-count") == "3"
    assert texts(c, "[data-stop]") == ["2026-11-16 09:08", "2026-11-16 09:25", "2026-11-16 09:40"]
    assert texts(c, f"[data-stop-reason='{IDLE}']") == ["待料 · 物料"]

    # the reason whose interval moved: listed, and cleared
    assert texts(c, f"#dt-changed [data-changed='{MOVED}']") == ["刀具"]
    page.click(f"[data-changed-clear='{MOVED}']")
    page.wait_for_selector("#dt-changed", state="hidden")
    assert "已清除停机原因" in page.locator("[data-testid=downtime-saved]").inner_text()

    # only the reasons that apply to a DOWN interval are offered
    select = f"select[data-attach='{DOWN_2}']"
    assert page.locator(f"{select} option").evaluate_all("os => os.map((o) => o.value)") == [
        "", "breakdown", "cleaning", "tooling"]  # fmt: skip
    page.select_option(select, "breakdown")
    page.fill(f"[data-attach-note='{DOWN_2}']", "主轴轴承")
    page.click(f"[data-attach-save='{DOWN_2}']")
    page.wait_for_selector(f"[data-stop-reason='{DOWN_2}'][data-reason=breakdown]")
    row = page.locator("#stops tr", has=page.locator(f"[data-stop='{DOWN_2}']")).inner_text()
    assert "设备故障 · 非计划停机" in row
    assert "主轴轴承" in row
    assert "op · " in row
    trail = texts(c, "#dt-audit tbody tr")
    assert len(trail) == 4, trail
    assert "— → 刀具" in trail[0]
    assert "刀具 → —" in trail[2]
    assert "— → 设备故障 (主轴轴承)" in trail[3]

    # what the API refuses, it says: here a note longer than 2000 characters
    page.fill(f"[data-attach-note='{IDLE}']", "长" * 2001)
    page.click(f"[data-attach-save='{IDLE}']")
    error = page.wait_for_selector("#downtime-msg .error").inner_text()
    assert error.startswith("出错: note: 至多 2000 个字符"), error  # pydantic's limit, in Chinese
    assert "note: String should have at most 2000 characters" in error  # and as said

    # the alarm texts: on the timeline and listed under it
    assert texts(c, "#alarm-list [data-alarm=alarm_text]") == ["E101 主轴过载", "E205 润滑压力低"]
    shown = page.evaluate("[...document.getElementById('chart-timeline').data]"
                          ".filter((d) => d.name === '报警').flatMap((d) => d.text)")  # fmt: skip
    assert "E205 润滑压力低" in shown
    # a part counter with nothing counted in the window: said so, no chart of year 2000
    assert page.locator("[data-testid=no-parts-window]").inner_text() == "此时间窗内无产量计数"
    assert "2000年" not in page.locator("main").inner_text()
    c.shot("downtime")

    # the loss Pareto: unassigned 420 s (cnc-01) + 600 s (cnc-02), breakdown 300, no-material 300
    open_losses(c)
    assert [b.get_attribute("data-bar") for b in page.locator("#pareto-bars [data-bar]").all()] == [
        "", "breakdown", "no-material"]  # fmt: skip
    assert texts(c, "#pareto-bars [data-bar]") == ["未指定原因", "设备故障", "待料"]
    bars = page.evaluate(
        "(({ data }) => [data[0].x, data[2].y])(document.getElementById('chart-pareto'))"
    )
    assert bars[0] == ["未指定原因", "设备故障", "待料"]
    assert bars[1][-1] == pytest.approx(100)
    window = {"start": "2026-11-15T16:00:00Z", "end": "2026-11-16T16:00:00Z"}  # the page's day
    doc = httpx.get(f"{site['url']}/api/v1/enterprises/hf/losses", headers=site["headers"],
                    params=window).json()  # fmt: skip
    causes = [x.get_attribute("data-cause") for x in page.locator("#causes [data-cause]").all()]
    assert causes == [x["reason"] or "" for x in doc["by_cause"]]
    assert "breakdown" in causes
    c.shot("losses")
    # per machine: cnc-02 has only an unassigned IDLE stop; the washing process has no loss
    page.click("[data-scope=equipment]")
    page.wait_for_selector("main[data-page=losses][data-ready] [data-loss-group=equipment]")
    page.select_option("[data-loss-group=equipment]", "cnc-02")
    page.wait_for_selector("main[data-page=losses][data-ready] #pareto[data-group=cnc-02]")
    assert texts(c, "#pareto-bars [data-bar]") == ["未指定原因"]
    page.select_option("select[data-field=proc]", "washing")  # the bar's filter
    page.wait_for_selector("main[data-page=losses][data-ready] #pareto[data-group='']")
    assert "无故障或空闲时间" in page.locator("#pareto").inner_text()
    # the one refusal asked for above, as the browser logs it
    refused = [e for e in c.errors if re.search(r"\b422\b", e)]
    assert len(refused) == 2, c.errors  # the response, and the console's line of it
    c.errors = [e for e in c.errors if e not in refused]
    c.close()


def test_an_operator_attaches_a_reason_in_english(browser: Any, site: dict[str, Any]) -> None:
    c = Console(browser, site)
    c.login("op")
    c.switch_language("html[lang=en] main[data-ready]")
    open_machine(c, "cnc-01")
    page = c.page
    assert texts(c, f"[data-stop-reason='{IDLE}']") == ["Waiting for material · material"]
    page.select_option(f"select[data-attach='{DOWN_1}']", "tooling")
    page.fill(f"[data-attach-note='{DOWN_1}']", "insert worn")
    page.click(f"[data-attach-save='{DOWN_1}']")
    page.wait_for_selector(f"[data-stop-reason='{DOWN_1}'][data-reason=tooling]")
    assert "Reason saved" in page.locator("[data-testid=downtime-saved]").inner_text()
    row = page.locator("#stops tr", has=page.locator(f"[data-stop='{DOWN_1}']")).inner_text()
    assert "Tooling · unplanned" in row
    assert "insert worn" in row
    assert "op · " in row
    assert "— → Tooling (insert worn)" in texts(c, "#dt-audit tbody tr")[-1]
    # the refusal in English: a reason that does not apply to an IDLE stop is not offered,
    # a note over 2000 characters is refused by the API
    idle = f"select[data-attach='{IDLE}'] option"
    assert "breakdown" not in page.locator(idle).evaluate_all("os => os.map((o) => o.value)")
    page.fill(f"[data-attach-note='{IDLE}']", "x" * 2001)
    page.click(f"[data-attach-save='{IDLE}']")
    error = page.wait_for_selector("#downtime-msg .error").inner_text()
    assert error == "Error: note: String should have at most 2000 characters"
    assert "Alarms" in page.locator("#alarms h2").inner_text()
    open_losses(c)
    assert "Tooling" in texts(c, "#pareto-bars [data-bar]")
    assert "MTBF (h)" in page.locator("#causes").inner_text()
    refused = [e for e in c.errors if re.search(r"\b422\b", e)]
    assert len(refused) == 2, c.errors
    c.errors = [e for e in c.errors if e not in refused]
    c.close()


@pytest.mark.parametrize(("lang", "words"), [
    ("en", {"idle": "Waiting for material · material", "unassigned": "Unassigned",
            "mtbf": "MTBF (h)", "alarms": "Alarms", "no_parts": "no part counted in this window"}),
    ("zh", {"idle": "待料 · 物料", "unassigned": "未指定原因", "mtbf": "MTBF (小时)",
            "alarms": "报警", "no_parts": "此时间窗内无产量计数"}),
])  # fmt: skip
def test_a_verifier_reads_the_reasons(
    browser: Any, site: dict[str, Any], lang: str, words: dict[str, str]
) -> None:
    c = Console(browser, site)
    c.login("auditor")
    if lang == "en":
        c.switch_language("html[lang=en] main[data-ready]")
    open_machine(c, "cnc-01")
    page = c.page
    assert texts(c, f"[data-stop-reason='{IDLE}']") == [words["idle"]]
    assert page.locator("#downtime select, [data-attach-save], [data-attach-clear]").count() == 0
    assert page.locator("[data-changed-clear]").count() == 0
    assert int(page.locator("#dt-audit").get_attribute("data-count") or 0) >= 1
    assert words["alarms"] in page.locator("#alarms h2").inner_text()
    assert "E205 润滑压力低" in texts(c, "#alarm-list [data-alarm=alarm_text]")
    assert words["no_parts"] == page.locator("[data-testid=no-parts-window]").inner_text()
    open_losses(c)
    assert words["unassigned"] in texts(c, "#pareto-bars [data-bar]")
    assert words["mtbf"] in page.locator("#causes").inner_text()
    c.close()
