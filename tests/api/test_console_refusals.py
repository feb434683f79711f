"""Refused messages, failed time-stamps and the report routes' errors in the user's
language, in a real browser (chromium, as tests/api/test_console.py), against the API over
test_downtime's hand-made hour of plant (tests/api/test_console_downtime.py `served_plant`).

The fixture puts real dead letters into the plant the console serves: bad messages of its
gateway through the consumer's checks (ingest/check.py) into the store's dead-letter write
(a wrong key, a schema error, another gateway named in the body), and one written before
the codes (no code: `other`). It builds the day's anchor and asks a TSA on a closed port
for its token, storing the failure as `anchor` does (kind `unreachable`), beside an error
stored before the kinds (`other`); then it issues a report of the day, whose anchoring
block says the day is pending with both errors.

The data-quality page and the verdict, as the enterprise and as the verifier: in Chinese,
each refusal's meaning from the catalogue (`dl_<code>`) with the server's words in
`<code>`, each failure's kind (`anchor_err_<kind>`) in the day's tooltip with the URL and
the words in a `<code>` beside it, and no English word outside `<code>` (the Latin-run check
of tests/api/test_console_i18n.py); in English, the reasons and errors as the server words
them. The dead-letters route returns each letter's code, and the report routes' errors
carry their Chinese (`message_zh`) beside the English `message`.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psycopg
import pytest

from edge_agent.contract.wire import encode_message
from ingest_server.evidence import merkle, timestamp
from ingest_server.evidence.render_pdf import BROWSER_ENV
from ingest_server.ingest.check import Limits, check
from ingest_server.ingest.gateway_keys import GatewayDirectory
from ingest_server.repo import anchors
from tests.api.test_console import Console, browser
from tests.api.test_console_downtime import DAY, served_plant
from tests.api.test_console_i18n import VISIBLE_TEXTS, foreign
from tests.evidence.test_ledger import run
from tests.harness.ingest import GW, PREFIX, batch, open_store, s
from tests.harness.netutil import free_port
from tests.harness.pg import PgServer

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the module's browser (chromium), shared with test_console.py

ENT = "hf"
OWN = {ENT, "p1", GW}  # the plant's own ids, shown as they are
# (code, payload): each refused by the checks for its own reason, published on `data`
BAD = (
    ("signature_mismatch", batch(7, [s("cnc-01", "state", time.time(), "IDLE")], key=b"x" * 32)),
    ("schema", encode_message({"gw": GW, "boot": 2, "seq": 0, "sent": 1, "samples": []},
                              b"0123456789abcdef" * 4)),
    ("gateway_mismatch", encode_message({"gw": "gw-77", "boot": 2, "seq": 8, "sent": 1,
                                         "samples": []}, b"0123456789abcdef" * 4)),
)  # fmt: skip
OLD_REASON = "signature: a letter written before the codes"
OLD_TSA = "http://127.0.0.1:9/old-tsa"
OLD_ERROR = f"TSA {OLD_TSA} refused the request: status REJECTION (written before the kinds)"

# the i18n test's visible texts, of each element `sel` finds (its own title included)
_VISIBLE_IN = VISIBLE_TEXTS.replace("() =>", "(root) =>", 1).replace("document.body", "root")
SCOPED_TEXTS = (
    f"(sel) => {{ const visible = {_VISIBLE_IN}; return [...document.querySelectorAll(sel)]"
    ".flatMap((el) => [...visible(el), ...(el.title ? [el.title] : [])]); }"
)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes


def refuse(db: str) -> dict[str, str]:
    """The bad messages through the consumer's checks into the store; their reasons by
    code, and the old letter (no code)."""
    directory = GatewayDirectory(lambda: psycopg.connect(db, autocommit=True))
    limits = Limits(max_payload_bytes=1 << 20, max_past_ms=400 * 86_400_000,
                    max_future_ms=300_000)  # fmt: skip
    try:
        group = check([Received(PREFIX + "data", p) for _, p in BAD], directory=directory,
                      limits=limits, now_ms=round(time.time() * 1000))  # fmt: skip
    finally:
        directory.close()
    assert [d.code for d in group.dead] == [c for c, _ in BAD]
    store = open_store(db)
    try:
        store.write(group)
        store.conn.execute(
            "INSERT INTO dead_letters (topic, gid, reason, payload, payload_bytes, received_at) "
            "SELECT %s, gid, %s, '', 0, now() - interval '1 hour' FROM gateways WHERE id = %s",
            (PREFIX + "data", OLD_REASON, GW),
        )
        store.conn.commit()
    finally:
        store.conn.close()
    return {**{d.code: d.reason for d in group.dead}, "other": OLD_REASON}


def pend(db: str) -> tuple[str, str]:
    """DAY's root, its TSA unreachable (a real request to a closed port, stored as
    cli/anchor.py stores it) and an error stored before the kinds; (url, error)."""
    root = hashlib.sha256(b"the day's root").digest()
    url = f"http://127.0.0.1:{free_port()}/tsa"
    with psycopg.connect(db, autocommit=True) as conn:
        a = anchors.add_anchor(conn, enterprise=ENT, day=DAY, root=root, leaves=1,
                               leaf_order=merkle.LEAF_ORDER)  # fmt: skip
        with pytest.raises(timestamp.TsaUnreachableError) as failed:
            timestamp.request_token(url, root, timeout_s=5)
        anchors.save_error(conn, a.id, tsa_url=url, error=str(failed.value),
                           kind=timestamp.error_kind(failed.value))  # fmt: skip
        conn.execute(
            "INSERT INTO anchor_tokens (anchor_id, tsa_url, last_error, attempted_at) "
            "VALUES (%s, %s, %s, now())",
            (a.id, OLD_TSA, OLD_ERROR),
        )
    return url, str(failed.value)


@pytest.fixture(scope="module")
def site(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("console-refusals")
    with served_plant(pg_server, work) as (db, url, tokens):
        reasons = refuse(db)
        tsa_url, tsa_error = pend(db)
        r = httpx.post(f"{url}/api/v1/enterprises/{ENT}/reports",
                       json={"from": str(DAY), "to": str(DAY)}, headers=tokens["op"])  # fmt: skip
        assert r.status_code == 201, r.text
        yield {"url": url, "headers": tokens["op"], "tokens": tokens, "shots": work / "shots",
               "db": db, "work": work, "reasons": reasons, "report": r.json()["id"],
               "tsa": (tsa_url, tsa_error)}  # fmt: skip


def zh_text(c: Console, key: str) -> str:
    text: str = c.page.evaluate(f"window.I18N.zh[{key!r}]")
    assert re.search(r"[\u4e00-\u9fff]", text or ""), key
    return text


def english(c: Console, where: str) -> list[str]:
    return foreign(c.page.evaluate(SCOPED_TEXTS, where), OWN)


def quality(c: Console) -> None:
    c.period(DAY, DAY)
    c.goto("quality")
    c.page.wait_for_selector("#dead-letters [data-dl-code]")


def verdict(c: Console, report: str) -> None:
    c.goto("evidence")
    c.page.click(f"[data-verify='{report}']")
    c.page.wait_for_selector("#verdict [data-anchor-day]")


def check_zh(c: Console, site: dict[str, Any], who: str) -> None:
    page = c.page
    quality(c)
    for code, reason in site["reasons"].items():
        cell = page.locator(f"#dead-letters [data-dl-code='{code}']")
        assert cell.count() == 1, code
        assert cell.inner_text().startswith(zh_text(c, f"dl_{code}")), code
        assert cell.locator("code").inner_text() == reason  # the server's words, a literal
        assert zh_text(c, "dl_original") in cell.inner_text()
    assert english(c, "#dead-letters") == []
    c.shot(f"refusals-quality-zh-{who}")
    verdict(c, site["report"])
    day = page.locator(f"[data-anchor-day='{DAY}']")
    assert day.get_attribute("data-anchor-state") == "pending"
    tip = day.get_attribute("title") or ""
    assert zh_text(c, "anchor_err_unreachable") in tip
    assert zh_text(c, "anchor_err_other") in tip
    literal = day.locator("code[data-anchor-errors]")
    # the errors in the order of their URLs: the one stored before the kinds is `other`
    url, error = site["tsa"]
    kinds = {url: "unreachable", OLD_TSA: "other"}
    assert literal.get_attribute("data-anchor-errors") == " ".join(kinds[u] for u in sorted(kinds))
    assert f"{url}: {error}" in (literal.get_attribute("title") or "")
    assert f"{OLD_TSA}: {OLD_ERROR}" in (literal.get_attribute("title") or "")
    assert english(c, "[data-anchor-day]") == []
    assert english(c, "#anchoring") == []  # the retry command too is a literal, in <code>
    assert "ingest-server anchor --pending" in page.locator("#anchoring code").all_inner_texts()


def check_en(c: Console, site: dict[str, Any]) -> None:
    page = c.page
    c.switch_language()
    quality(c)
    for code, reason in site["reasons"].items():
        cell = page.locator(f"#dead-letters [data-dl-code='{code}']")
        assert cell.inner_text() == reason, code
    verdict(c, site["report"])
    day = page.locator(f"[data-anchor-day='{DAY}']")
    url, error = site["tsa"]
    lines = {url: f"{url}: {error}", OLD_TSA: f"{OLD_TSA}: {OLD_ERROR}"}
    assert day.get_attribute("title") == "\n".join(lines[u] for u in sorted(lines))
    assert day.locator("code[data-anchor-errors]").count() == 0


@pytest.mark.parametrize("who", ["op", "auditor"])
def test_refusals_and_failed_time_stamps_in_chinese_and_english(
    browser: Any, site: dict[str, Any], who: str
) -> None:
    c = Console(browser, site)
    c.login(who)
    check_zh(c, site, who)
    c.shot(f"refusals-evidence-zh-{who}")
    check_en(c, site)
    c.close()


def test_the_dead_letters_route_gives_each_letters_code(site: dict[str, Any]) -> None:
    for who in ("op", "auditor"):
        r = httpx.get(f"{site['url']}/api/v1/enterprises/{ENT}/dead-letters",
                      headers=site["tokens"][who])  # fmt: skip
        assert r.status_code == 200, r.text
        # newest first: the checks' letters in the order written, then the old one
        assert [(d["code"], d["reason"]) for d in r.json()] == [
            *reversed([(c, site["reasons"][c]) for c, _ in BAD]),
            ("other", OLD_REASON),
        ]


def issued_without_bundle(site: dict[str, Any], name: str) -> str:
    """A report of the day issued by the CLI with `--no-bundle` (written to `name`): its id."""
    out = Path(site["work"]) / name
    code, said = run("report", "--enterprise", ENT, "--from", str(DAY), "--to", str(DAY),
                     "--dsn", site["db"], "--signing-key", str(Path(site["work"]) / "key.pem"),
                     "--no-bundle", "--out", str(out))  # fmt: skip
    assert code == 0, said
    report_id: str = json.loads(out.read_text(encoding="utf-8"))["report_id"]
    return report_id


def error_of(r: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert r.status_code == status, r.text
    error: dict[str, str] = r.json()["error"]
    assert error["code"] == code
    assert re.search(r"[\u4e00-\u9fff]", error["message_zh"]), error
    return error


def english_only(error: dict[str, str]) -> None:
    assert not re.search(r"[\u4e00-\u9fff]", error["message"]), error  # as before


def test_the_report_routes_errors_carry_their_chinese(
    site: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, headers = f"{site['url']}/api/v1", site["headers"]
    e = error_of(httpx.get(f"{url}/reports/no-such-report", headers=headers), 404, "not_found")
    assert e["message"] == "no report 'no-such-report' for this account"
    english_only(e)
    assert "'no-such-report'" in e["message_zh"]
    # the bundle of a report there is none of (or of another enterprise's)
    e = error_of(httpx.get(f"{url}/reports/no-such-report/bundle", headers=headers), 404,
                 "not_found")  # fmt: skip
    assert "no-such-report" in e["message_zh"]

    # a report issued without its bundle (`report --no-bundle`)
    report_id = issued_without_bundle(site, "no-bundle.json")
    e = error_of(httpx.get(f"{url}/reports/{report_id}/bundle", headers=headers), 404,
                 "bundle_unavailable")  # fmt: skip
    assert e["message"].startswith(f"report {report_id}: issued without its evidence bundle")
    english_only(e)
    assert e["message_zh"].startswith(f"报告 {report_id}: 签发时未附证据包")

    # no browser to print with: the Chinese half of the bilingual message
    monkeypatch.setenv(BROWSER_ENV, str(Path(site["work"]) / "no-chromium"))
    e = error_of(httpx.get(f"{url}/reports/{site['report']}/pdf", headers=headers), 503,
                 "pdf_unavailable")  # fmt: skip
    assert e["message_zh"].startswith("无法生成 PDF")
    assert e["message"].startswith(e["message_zh"] + " / cannot make the PDF")

    # files that do not parse as a report
    for body in (b"not a report", b'{"enterprise": '):
        r = httpx.post(f"{url}/reports/verify", content=body, headers=headers)
        e = error_of(r, 422, "invalid_report")
        english_only(e)
        assert "请提交签发时下载的报告文件" in e["message_zh"]


def test_a_report_without_its_bundle_says_why_in_either_language(
    browser: Any, site: dict[str, Any]
) -> None:
    report_id = issued_without_bundle(site, "no-bundle-page.json")
    c = Console(browser, site)
    c.login("auditor")
    c.goto("evidence")
    cell = c.page.wait_for_selector(f"[data-bundle-missing='{report_id}']")
    assert cell.inner_text().startswith(zh_text(c, "bundle_unavailable"))
    assert cell.get_attribute("data-bundle-error") == "not_kept"
    assert "签发时未附证据包" in cell.inner_text()
    assert c.page.locator(f"[data-bundle-missing='{report_id}'] code").inner_text() == (
        "report --no-bundle"
    )
    assert english(c, f"[data-bundle-missing='{report_id}']") == []
    c.switch_language()
    cell = c.page.wait_for_selector(f"[data-bundle-missing='{report_id}']")
    assert "issued without its evidence bundle" in cell.inner_text()
    c.close()
