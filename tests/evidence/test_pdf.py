"""The report as a PDF made by the project: Debian's headless chromium prints the HTML page
with its fonts embedded, page one the summary and the detail after it; without a browser
the error says how to install one, and a browser that hangs is killed.

One PDF for the module (about 3 s); the failure cases use stand-in browsers (shell
scripts), which cost nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pypdf
import pytest

from ingest_server.cli.main import main
from ingest_server.evidence import render_pdf
from ingest_server.evidence.render_pdf import PdfUnavailableError, html_to_pdf
from tests.harness.kpi_example import example_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example report printed through the CLI, as a user makes it."""
    try:
        render_pdf.find_browser()
    except PdfUnavailableError as exc:
        pytest.fail(str(exc))
    tmp = tmp_path_factory.mktemp("pdf")
    report, out = tmp / "report.json", tmp / "report.pdf"
    report.write_text(json.dumps(example_report(), ensure_ascii=False), encoding="utf-8")
    assert main(["render", str(report), "--pdf", str(out)]) == 0
    return out


def fonts(reader: pypdf.PdfReader) -> dict[str, Any]:
    """Every font the pages use, by object id (fonts inside form XObjects too)."""
    found: dict[str, Any] = {}

    def walk(resources: Any) -> None:
        resources = resources.get_object() if resources is not None else {}
        for ref in (resources.get("/Font") or {}).values():
            found[repr(ref)] = ref.get_object()
        for ref in (resources.get("/XObject") or {}).values():
            xobject = ref.get_object()
            if "/Resources" in xobject:
                walk(xobject["/Resources"])

    for page in reader.pages:
        walk(page.get("/Resources"))
    return found


def embedded(font: Any) -> bool:
    """A Type 3 font is its glyph procedures; any other carries its font program."""
    if font["/Subtype"] == "/Type3":
        return bool(font.get("/CharProcs"))
    if font["/Subtype"] == "/Type0":
        font = font["/DescendantFonts"][0].get_object()
    descriptor = font["/FontDescriptor"].get_object()
    return any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))


def test_the_pdf_has_the_summary_first_and_every_font_embedded(pdf: Path) -> None:
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-")
    reader = pypdf.PdfReader(pdf)
    assert len(reader.pages) >= 2
    first = reader.pages[0].extract_text()
    report = example_report()
    assert report["enterprise"]["name"] in first
    assert "主要指标" in first
    assert "83.3%" in first  # the declared NC rate, as printed
    assert "33.172 tce" in first
    assert "How to verify" in first
    assert "报告信息" in reader.pages[1].extract_text()  # the detail starts on page two
    used = fonts(reader)
    assert used
    assert [name for name, f in used.items() if not embedded(f)] == []
    names = [str(f.get("/BaseFont", "")) for f in used.values()]
    assert any("WenQuanYi" in n for n in names), names  # the Chinese text's font


def test_no_browser_says_how_to_install_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(render_pdf, "DEBIAN_CHROMIUM", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(render_pdf.BROWSER_ENV, raising=False)
    with pytest.raises(PdfUnavailableError) as err:
        render_pdf.render_pdf(example_report())
    assert "未找到 Chromium 浏览器" in str(err.value)
    assert "apt-get install chromium fonts-wqy-microhei" in str(err.value)
    # the CLI: exit 1 before anything is written, the message and no traceback
    report, out = tmp_path / "r.json", tmp_path / "r.pdf"
    report.write_text(json.dumps(example_report()), encoding="utf-8")
    monkeypatch.setenv(render_pdf.BROWSER_ENV, str(tmp_path / "missing"))
    assert main(["render", str(report), "--pdf", str(out), "--html", str(tmp_path / "r.html")]) == 1
    said = capsys.readouterr().err
    assert f"{render_pdf.BROWSER_ENV}={tmp_path / 'missing'} is not an executable browser" in said
    assert "Traceback" not in said
    assert not out.exists()
    assert not (tmp_path / "r.html").exists()


def stand_in(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "browser"
    script.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return script


def test_a_browser_that_hangs_is_killed_and_one_that_fails_is_named(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hangs = stand_in(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60")
    started = time.monotonic()
    with pytest.raises(PdfUnavailableError, match="did not finish printing within 1 s"):
        html_to_pdf("<p>x</p>", browser=hangs, timeout_s=1)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped, not left running
    fails = stand_in(tmp_path, "echo 'cannot open display' >&2\nexit 3")
    with pytest.raises(PdfUnavailableError, match="exited with 3 and wrote none: cannot open"):
        html_to_pdf("<p>x</p>", browser=fails)
