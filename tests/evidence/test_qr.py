"""A paper copy matched to its signed file: the first page's report id, short digest and
QR code. The code is checked module by module against segno's symbol of the text
computed here independently (no QR decoder needed); the text round-trips through
`parse_qr_text`, matches the signed report, and stops matching once the report is
edited."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import urllib.parse
from typing import Any

import pytest
import rfc8785
import segno
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_server.evidence.canonical import sign
from ingest_server.evidence.qr import (
    QrTextError,
    check_paper,
    paper_json,
    paper_mark,
    parse_qr_text,
)
from ingest_server.evidence.render_html import render_html
from ingest_server.evidence.verify import check_signature
from tests.evidence.test_render import minimal_report, workbook
from tests.harness.kpi_example import example_report


def signed_report() -> dict[str, Any]:
    return sign(example_report(), Ed25519PrivateKey.generate())


def expected_text(doc: dict[str, Any]) -> str:
    """The QR text as docs/kpi.md defines it, written out here without evidence/qr.py."""
    body = {k: v for k, v in doc.items() if k != "signature"}
    digest = hashlib.sha256(rfc8785.dumps(body)).hexdigest()
    sig = base64.b64decode(doc["signature"]["value"])
    return f"FE1:{doc['report_id']}:{digest}:{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"


def svg_matrix(svg: str) -> list[list[bool]]:
    """The dark modules of a segno SVG (one stroked path in module units: `M x y` and
    `m dx dy` move, `h n` is a run of n dark modules on the row at y - 0.5), without the
    quiet zone: the finder patterns touch three corners of the symbol, so the dark
    modules' extent is the symbol's."""
    path = re.search(r"class=[\"']qrline[\"'][^>]* d=[\"']([^\"']+)[\"']", svg)
    assert path, "not a segno SVG QR code"
    dark: set[tuple[int, int]] = set()
    x = y = 0.0
    for cmd, args in re.findall(r"([MmHh])([-\d. ]+)", path.group(1)):
        nums = [float(a) for a in args.split()]
        if cmd == "M":
            x, y = nums
        elif cmd == "m":
            x, y = x + nums[0], y + nums[1]
        else:
            run = int(nums[0])
            dark.update((int(x) + i, int(y - 0.5)) for i in range(run))
            x += run
    left, top = min(c for c, _ in dark), min(r for _, r in dark)
    n = max(c for c, _ in dark) - left + 1
    assert n == max(r for _, r in dark) - top + 1, "not square"
    return [[(c + left, r + top) in dark for c in range(n)] for r in range(n)]


def segno_matrix(text: str) -> list[list[bool]]:
    qr = segno.make(text, error="m")
    return [[bool(v) for v in row] for row in qr.matrix_iter(border=0)]


def first_page(page: str) -> str:
    """The title block: what precedes the first section prints on page one."""
    return page[: page.index("<section")]


def test_html_shows_id_short_digest_and_the_qr_of_the_signed_report() -> None:
    doc = signed_report()
    text = expected_text(doc)
    digest = text.split(":")[2]
    head = first_page(render_html(doc))
    assert doc["report_id"] in head
    short = " ".join(digest[i : i + 4] for i in range(0, 16, 4))
    assert f'<code class="short">{short}</code>' in head
    svgs = re.findall(r"<svg\b.*?</svg>", head, re.S)
    assert len(svgs) == 1
    assert svg_matrix(svgs[0]) == segno_matrix(text)
    # printable: a fixed size in millimetres, the white quiet zone drawn, no namespace URL
    assert re.search(r'<svg width="32.5mm" height="32.5mm"', svgs[0])
    assert 'fill="#fff" d="M0 0h65' in svgs[0]
    assert "http" not in svgs[0]
    # measured: ~192 characters -> version 10 (57 x 57 modules) at level M, under 15
    qr = segno.make(text, error="m")
    assert (len(text), qr.version, qr.error) == (192, 10, "M")


def test_signature_block_gives_the_full_digest_and_the_qr_text() -> None:
    doc = signed_report()
    text = expected_text(doc)
    page = render_html(doc)
    sig = page[page.index("签名 <span") :]
    assert text.split(":")[2] in sig
    assert text in sig
    assert "ingest-server render report.json --html copy.html" in sig
    # and the same id and digest at the foot of every printed page
    style = page[page.index("<style>") : page.index("</style>")]
    mark = paper_mark(doc)
    assert mark is not None
    assert f'content: "{doc["report_id"]} · {mark.short_digest}"' in style


def test_qr_text_round_trips_and_matches_the_signed_report() -> None:
    doc = signed_report()
    mark = paper_mark(doc)
    assert mark is not None
    assert mark.qr_text == expected_text(doc)
    parsed = parse_qr_text(mark.qr_text + "\r\n")  # scanners add a line end
    assert parsed.report_id == doc["report_id"]
    assert parsed.digest == mark.digest
    assert parsed.signature == base64.b64decode(doc["signature"]["value"])
    assert check_paper(mark.qr_text, doc) == []
    # a file re-serialised on the way (indented, 75.0 written 75) is the same report
    written = json.dumps(doc, indent=2, ensure_ascii=False)
    assert ".0," in written
    assert check_paper(mark.qr_text, json.loads(written.replace(".0,", ","))) == []
    api = paper_json(doc)
    assert api is not None
    assert api["qr_text"] == mark.qr_text
    assert api["short_digest"] == mark.short_digest
    media, _, data = api["qr_svg"].partition(",")
    assert media == "data:image/svg+xml;charset=utf-8"
    svg = urllib.parse.unquote(data)
    assert svg_matrix(svg) == segno_matrix(mark.qr_text)


def test_an_edited_report_no_longer_matches_its_paper() -> None:
    doc = signed_report()
    printed = paper_mark(doc)
    assert printed is not None
    assert printed.qr_text is not None
    edited = copy.deepcopy(doc)
    next(k for k in edited["kpis"] if k["id"] == "oee")["value"] += 1.0
    after = paper_mark(edited)
    assert after is not None
    assert after.digest != printed.digest
    assert after.short_digest != printed.short_digest
    assert printed.short_digest not in render_html(edited)
    problems = check_paper(printed.qr_text, edited)
    assert len(problems) == 1
    assert problems[0].startswith(f"report digest: paper {printed.short_digest}, file ")
    assert not check_signature(edited)[0]  # and `verify` refuses the file anyway
    # the edited report signed again: its signature is not the paper's either
    resigned = sign(edited, Ed25519PrivateKey.generate())
    assert [p.split(":")[0] for p in check_paper(printed.qr_text, resigned)] == [
        "report digest",
        "signature",
    ]
    # another report's paper
    other = signed_report()
    other["report_id"] = "00000000-0000-4000-8000-000000000000"
    other = sign(other, Ed25519PrivateKey.generate())
    assert check_paper(printed.qr_text, other)[0].startswith("report id: paper 6f1c")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("https://example.invalid/x", "not 'FE1'"),
        ("FE1:only-an-id", "four fields"),
        ("FE1::" + "0" * 64 + ":AAAA", "four fields"),
        ("FE1:id:" + "0" * 63 + ":AAAA", "not 64 hex digits"),
        ("FE1:id:" + "g" * 64 + ":AAAA", "not 64 hex digits"),
        ("FE1:id:" + "0" * 64 + ":AA+A", "not base64url"),
        ("FE1:id:" + "0" * 64 + ":AAAAA", "not base64url"),
    ],
)
def test_parse_qr_text_refuses_what_it_cannot_read(text: str, says: str) -> None:
    with pytest.raises(QrTextError, match=says):
        parse_qr_text(text)


def test_an_unsigned_draft_shows_its_digest_but_no_qr() -> None:
    draft = minimal_report()
    mark = paper_mark(draft)
    assert mark is not None
    assert mark.qr_text is None
    head = first_page(render_html(draft))
    assert mark.short_digest in head
    assert "<svg" not in head
    assert "无二维码: 未签名草稿" in head
    assert mark.digest == hashlib.sha256(rfc8785.dumps(draft)).hexdigest()


def test_a_legacy_report_is_digested_in_the_form_it_was_signed() -> None:
    doc = example_report()  # its signature block names no canonicalization
    assert "canonicalization" not in doc["signature"]
    body = {k: v for k, v in doc.items() if k != "signature"}
    legacy = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    mark = paper_mark(doc)
    assert mark is not None
    assert mark.digest == hashlib.sha256(legacy.encode()).hexdigest()
    assert mark.digest != hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def test_an_id_too_long_to_print_gets_no_code_and_the_page_says_why() -> None:
    doc = example_report()
    doc["report_id"] = "x" * 300  # no id of ours: the code would be too fine to print
    doc = sign(doc, Ed25519PrivateKey.generate())
    mark = paper_mark(doc)
    assert mark is not None
    assert mark.qr_text is None
    head = first_page(render_html(doc))
    assert "<svg" not in head
    assert "no QR code: the id or signature cannot be encoded" in head
    assert mark.short_digest in head


def test_the_xlsx_signature_sheet_carries_what_the_paper_shows() -> None:
    doc = signed_report()
    sheet = workbook(doc)["签名 Signature"]
    rows = {r[0].value: r[1].value for r in sheet.iter_rows(min_row=2) if r[0].value}
    text = expected_text(doc)
    assert rows["二维码内容 QR text"] == text
    assert rows["报告摘要 Report digest (SHA-256)"] == text.split(":")[2]
    assert rows["输入数据摘要值 Input-rows digest"] == doc["digest"]["value"]
