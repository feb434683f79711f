"""The evidence report says which days are anchored in time (docs/evidence.md, "What the
report says"), against a real PostgreSQL and a real RFC 3161 TSA on 127.0.0.1 (OpenSSL's
`ts -reply`, tests/harness/tsa.py). The v2 batches are written into the ledger as
tests/evidence/test_ledger.py's World writes them, over two days: the first is
time-stamped, the second's TSA is down (its port closed), so the day is left pending with
the TSA's error; the TSA comes back, `anchor --pending` runs, and a new report says both
days are anchored. The block is signed with the report, checked against the anchors on
record (`anchoring_problems`), and left out of figure comparison: a report made before it
still verifies.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from openpyxl import load_workbook

from ingest_server.evidence.canonical import sign
from ingest_server.evidence.compute import notices
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.render_xlsx import render_xlsx
from ingest_server.evidence.report import (
    Request,
    anchoring_problems,
    day_anchoring,
    make_report,
)
from ingest_server.evidence.verify import verify
from ingest_server.repo import anchors
from tests.evidence.test_ledger import DAY, World, run
from tests.harness.ingest import ENT
from tests.harness.tsa import Tsa

DAY2 = DAY + dt.timedelta(days=1)
BEFORE = DAY - dt.timedelta(days=1)  # in the period, with no signed batch
REQ = Request(ENT, BEFORE, DAY2)


@pytest.fixture
def world(db: str) -> Iterator[World]:
    w = World(db)
    yield w
    w.conn.close()


@pytest.fixture
def tsa(tmp_path: Path) -> Iterator[Tsa]:
    t = Tsa(tmp_path / "tsa-a", "A").start()
    yield t
    t.stop()


def anchor(world: World, *extra: str) -> tuple[int, str]:
    code, out = run("anchor", "--enterprise", ENT, "--dsn", world.db, *extra)
    return code, str(out)


def by_day(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["day"]: d for d in doc["anchoring"]["days"]}


def notice(doc: dict[str, Any]) -> dict[str, str] | None:
    found = [n for n in doc["notices"] if n["code"] == "unanchored_days"]
    return found[0] if found else None


def resign(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    out.pop("signature")
    sign(out, key)
    return out


def test_the_report_names_anchored_and_pending_days_until_the_tsa_is_back(
    world: World, tsa: Tsa
) -> None:
    world.chain("gw-01", 2)
    world.chain("gw-02", 1)
    for seq in (3, 4):  # gw-01's chain goes on the next day
        world.seal("gw-01", seq, world.samples(24 * 60 + seq), minutes=24 * 60 + seq)
    code, out = anchor(world, "--day", str(DAY), "--tsa", tsa.url)
    assert code == 0, out
    tsa.stop()  # its port closed: connection refused
    code, out = anchor(world, "--day", str(DAY2), "--tsa", tsa.url)
    assert (code, "PENDING" in out) == (1, True), out
    key = Ed25519PrivateKey.generate()

    doc = make_report(world.conn, REQ, key=key)
    block = doc["anchoring"]
    assert block["summary"] == {"anchored": 1, "pending": 1, "not_anchored": 1, "not_due": 0}
    days = by_day(doc)
    assert list(days) == [str(BEFORE), str(DAY), str(DAY2)]
    assert {d["part"] for d in days.values()} == {"period"}
    assert (days[str(BEFORE)]["state"], days[str(BEFORE)]["batches"]) == ("not_anchored", 0)

    one = days[str(DAY)]
    day1 = anchors.current_anchor(world.conn, enterprise=ENT, day=DAY)
    assert day1 is not None
    (token,) = day1.granted
    assert token.gen_time is not None
    assert (one["state"], one["batches"], one["leaves"]) == ("anchored", 3, 3)
    assert one["root"] == day1.root.hex()
    assert one["tsas"] == [{
        "name": "CN=A test TSA", "url": tsa.url,
        "gen_time": token.gen_time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }]  # fmt: skip
    assert one["errors"] == []

    two = days[str(DAY2)]
    assert (two["state"], two["batches"], two["leaves"], two["tsas"]) == ("pending", 2, 2, [])
    (error,) = two["errors"]
    assert error["url"] == tsa.url
    assert error["error"].startswith(f"TSA {tsa.url} unreachable")

    n = notice(doc)
    assert n is not None
    assert f"{DAY2} 待重试" in n["text"]
    assert "anchor --pending" in n["text"]
    assert f"{DAY2} pending" in n["text_en"]
    assert "retries" in n["text_en"]
    assert "`ingest-server run --tsa` every hour" in n["text_en"]
    # a day without a signed batch has nothing to anchor; the anchored day is not named
    assert str(BEFORE) not in n["text"] + n["text_en"]
    assert str(DAY) not in n["text"] + n["text_en"]

    # signed with the report; figures compared as before; consistent with the record
    v = verify(doc, conn=world.conn, trusted=key.public_key())
    assert (v.ok, v.trusted, v.reasons) == (True, True, []), v
    assert anchoring_problems(world.conn, doc) == []
    forged = copy.deepcopy(doc)
    forged["anchoring"]["days"][2]["state"] = "anchored"  # day 2 said anchored...
    assert verify(forged, conn=world.conn, trusted=key.public_key()).signature_ok is False
    forged = resign(forged, key)  # ...by whoever holds the key: the record contradicts it
    forged["anchoring"]["days"][2]["tsas"] = [dict(one["tsas"][0])]
    forged = resign(forged, key)
    assert anchoring_problems(world.conn, forged) == [
        f"anchoring: the summary {forged['anchoring']['summary']} does not count the days "
        "listed {'anchored': 2, 'pending': 0, 'not_anchored': 1, 'not_due': 0}",
        f"anchoring {DAY2}: no token on record from {one['tsas'][0]} over its root",
    ]
    v = verify(forged, conn=world.conn, trusted=key.public_key())  # and verify says so
    assert not v.ok
    assert [r.code for r in v.reasons] == ["anchoring_differs", "anchoring_differs"]
    hidden = copy.deepcopy(doc)
    hidden["anchoring"]["days"][1] = {"day": str(DAY), "part": "period", "batches": 3,
                                      "state": "not_anchored"}  # fmt: skip
    problems = anchoring_problems(world.conn, hidden)
    assert any(p.startswith(f"anchoring {DAY}: called not anchored, but a root was built")
               for p in problems), problems  # fmt: skip
    short = copy.deepcopy(doc)
    del short["anchoring"]["days"][0]
    assert anchoring_problems(world.conn, short)[0].startswith(
        "anchoring: the days listed (2) are not the report's 3 days"
    )

    # both renderings show both states
    page = render_html(doc)
    assert "时间锚定" in page
    assert "Anchoring in time" in page
    assert 'data-anchor-day="2026-03-10" data-anchor-state="anchored"' in page
    assert 'data-anchor-day="2026-03-11" data-anchor-state="pending"' in page
    assert "CN=A test TSA" in page
    assert f"TSA {tsa.url} unreachable" in page
    assert f"{DAY2} 待重试" in page  # the notice, on the first page
    buf = io.BytesIO()
    render_xlsx(doc, buf)
    sheet = load_workbook(io.BytesIO(buf.getvalue()))["时间锚定 Anchoring"]
    rows = [[c.value for c in r] for r in sheet.iter_rows()]
    # each day a date cell, read back as a datetime at midnight
    days = {dt.datetime.combine(d, dt.time()): str(d) for d in (BEFORE, DAY, DAY2)}
    states = {days[r[0]]: r[2] for r in rows if r and r[0] in days}
    assert states == {str(BEFORE): "not_anchored", str(DAY): "anchored", str(DAY2): "pending"}

    # the TSA is back; the next run anchors the pending day; a new report says so
    tsa.start()
    code, out = anchor(world, "--pending", "--tsa", tsa.url)
    assert code == 0, out
    again = make_report(world.conn, REQ, key=key)
    assert again["anchoring"]["summary"] == {
        "anchored": 2, "pending": 0, "not_anchored": 1, "not_due": 0,
    }  # fmt: skip
    two = by_day(again)[str(DAY2)]
    assert (two["state"], [t["name"] for t in two["tsas"]], two["errors"]) == (
        "anchored", ["CN=A test TSA"], []
    )  # fmt: skip
    assert notice(again) is None
    assert 'data-anchor-day="2026-03-11" data-anchor-state="anchored"' in render_html(again)
    # the first report said pending then: anchored since is no contradiction
    assert anchoring_problems(world.conn, doc) == []

    # a report made before the block (none, no such notice) still verifies
    old = copy.deepcopy(doc)
    del old["anchoring"]
    old["notices"] = [n for n in old["notices"] if n["code"] != "unanchored_days"]
    old = resign(old, key)
    v = verify(old, conn=world.conn, trusted=key.public_key())
    assert (v.ok, v.reasons) == (True, []), v
    assert anchoring_problems(world.conn, old) == []
    assert "时间锚定" not in render_html(old)


UTC = dt.UTC
ENDS = dt.datetime(2026, 3, 10, 16, tzinfo=UTC)  # the day's end, Asia/Shanghai midnight


def test_a_day_not_over_is_not_due_and_an_unanchored_day_with_batches_is_named() -> None:
    state = anchors.DayState(DAY, None, 4, ENDS)
    early = day_anchoring(state, "period", ENDS + dt.timedelta(minutes=30))
    assert early == {"day": str(DAY), "part": "period", "batches": 4, "state": "not_due",
                     "due_at": "2026-03-10T17:00:00Z"}  # fmt: skip
    late = day_anchoring(state, "baseline", ENDS + dt.timedelta(hours=1))
    assert late == {"day": str(DAY), "part": "baseline", "batches": 4, "state": "not_anchored"}
    empty = day_anchoring(anchors.DayState(DAY2, None, 0, ENDS), "period", ENDS + dt.timedelta(1))
    doc = {"anchoring": {"days": [early, late, empty]}}
    (n,) = notices(doc)
    assert n["code"] == "unanchored_days"
    assert f"{DAY} 未锚定 (基期)" in n["text"]
    assert f"{DAY} not anchored (baseline)" in n["text_en"]
    assert str(DAY2) not in n["text"]
    assert notices({"anchoring": {"days": [early, empty]}}) == []
    assert notices({"anchoring": "not a block"}) == []
