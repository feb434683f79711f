"""The KPI cards against their programme targets, in a real browser (chromium, as
tests/api/test_console.py): the test plant of tests/harness/kpi.py with every key-process
machine declared NC and no samples yet, so its declared NC rate (100 %) meets the
built-in targets and its measured one (0 %) does not; each shown with how far, the
programme, and its source in the tooltip and the card's evidence, in Chinese and English, to the
enterprise and to a verifier.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from ingest_server.db.schema import migrate
from ingest_server.reference.targets import target_table
from ingest_server.repo.registry import Registry, import_registry
from tests.api.test_console import Console, browser, served
from tests.harness.ingest import GW, KEY
from tests.harness.kpi import kpi_registry
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the browser tests' fixture (Debian's chromium, headless)

DAY = dt.date(2026, 11, 16)


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("console-targets")
    reg = kpi_registry().model_dump(exclude_unset=True)
    for eq in reg["enterprises"][0]["sites"][0]["equipment"]:
        if eq["process"] == "turning":
            eq["nc"] = True  # lathe-3 too: every key-process machine declared NC
    with pg_server.database() as db:
        migrate(db)
        with psycopg.connect(db, autocommit=True) as conn:
            import_registry(conn, Registry.model_validate(reg), {GW: KEY})
        with served(db, work, {"ent": ["hf"]}, {"verifier": ["hf"]}) as (url, headers):
            yield {"url": url, "headers": headers, "shots": work / "shots"}


@pytest.mark.parametrize("who", ["ent", "verifier"])
def test_cards_show_each_figure_against_its_targets(
    browser: Any, site: dict[str, Any], who: str
) -> None:
    c = Console(browser, site)
    c.login(who)
    c.period(DAY, DAY)
    doc = c.api("/enterprises/hf/kpis", **{"from": DAY, "to": DAY})
    values = {k["id"]: k["value"] for k in doc["kpis"]}
    assert (values["nc_rate_declared"], values["nc_rate_measured"]) == (100.0, 0.0)
    results = doc["targets"]["results"]
    assert doc["targets"]["version"] == target_table().version
    by_kpi = {
        kid: [r for r in results if r["kpi"] == kid]
        for kid in ("nc_rate_declared", "nc_rate_measured")
    }
    assert [r["status"] for r in by_kpi["nc_rate_declared"]] == ["met", "met"]
    assert [r["status"] for r in by_kpi["nc_rate_measured"]] == ["not_met", "not_met"]

    declared = c.page.locator("[data-kpi=nc_rate_declared] [data-testid=target]")
    measured = c.page.locator("[data-kpi=nc_rate_measured] [data-testid=target]")
    assert declared.count() == measured.count() == 2
    first = measured.first
    assert first.get_attribute("data-status") == "not_met"
    assert first.inner_text() == (
        "✗ 未达到 > 75 % (期限 2027-12-31) · -75 个百分点 · "
        "推动工业领域设备更新实施方案 (2027年目标)"
    )
    assert declared.first.inner_text().startswith("✓ 达到 > 75 % (期限 2027-12-31) · +25 个百分点")
    assert "2024-03-27" in (first.get_attribute("title") or "")  # the source, in the tooltip
    c.page.click("[data-kpi=nc_rate_measured] [data-testid=show-evidence]")
    source = c.page.locator("[data-kpi=nc_rate_measured] [data-testid=target-source]").first
    assert "《推动工业领域设备更新实施方案》" in source.inner_text()
    # a card without a target shows none
    assert c.page.locator("[data-kpi=oee] [data-testid=target]").count() == 0
    if who == "ent":
        c.shot("overview-targets")

    c.switch_language()
    assert measured.first.inner_text() == (
        "✗ not met > 75 % (by 2027-12-31) · -75 pp · Industrial equipment renewal plan "
        "(2027 target)"
    )
    assert declared.nth(1).inner_text() == (
        "✓ met ≥ 68 % (by 2025-12-31) · +32 pp · 14th Five-Year IT-industry integration plan "
        "(2025 target)"
    )
    assert "Anhui's implementation plan" in (measured.first.get_attribute("title") or "")
    if who == "ent":
        c.shot("overview-targets-en")
    c.switch_language()
    c.close()


def test_the_target_tables_with_their_sources(site: dict[str, Any]) -> None:
    r = httpx.get(f"{site['url']}/api/v1/targets", headers=site["headers"])
    assert r.status_code == 200, r.text
    [table] = r.json()
    assert table == target_table().as_json()
    assert httpx.get(f"{site['url']}/api/v1/targets").status_code == 401
