"""An evidence report as a PDF, made here rather than left to "print the HTML": the page
of evidence/render_html.py printed by headless Chromium, which embeds the subsets of the
fonts it drew with (the Chinese text in WenQuanYi Micro Hei, fonts-wqy-microhei), so the
file reads the same on a machine without them.

    report → render_html → page.html in a new temporary directory
           → chromium --headless --print-to-pdf (a fresh profile in that directory)
           → the PDF's bytes; the directory removed

No network: the page is self-contained (no scripts, no external resources), the browser
starts with an empty profile, its background services off and every host name resolving
to nothing. It runs in a process group of its own, killed by its id when it overruns the
timeout. The browser is $FE_CHROMIUM, else Debian's /usr/bin/chromium (as the console's
tests find it), else the first chromium or chrome on PATH; without one the error says how
to install it, in Chinese and English.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from ingest_server.errors import UnavailableError
from ingest_server.evidence.columns import Json
from ingest_server.evidence.render_html import render_html

logger = logging.getLogger(__name__)

BROWSER_ENV = "FE_CHROMIUM"
DEBIAN_CHROMIUM = "/usr/bin/chromium"
ON_PATH = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
TIMEOUT_S = 90.0
_FLAGS = (
    "--headless", "--disable-gpu", "--no-pdf-header-footer", "--no-first-run",
    "--no-default-browser-check", "--disable-extensions", "--disable-sync",
    "--disable-background-networking", "--disable-component-update",
    "--disable-default-apps", "--disable-dev-shm-usage", "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)  # fmt: skip


class PdfUnavailableError(UnavailableError):
    """No browser to print with, or it failed or overran: the PDF cannot be made here.
    The message is bilingual; the API answers 503, the CLI exits 1."""


def find_browser() -> Path:
    """The Chromium to print with; `PdfUnavailableError`, naming the fix, without one."""
    named = os.environ.get(BROWSER_ENV)
    if named:
        if os.access(named, os.X_OK):
            return Path(named)
        raise PdfUnavailableError(
            f"无法生成 PDF: 环境变量 {BROWSER_ENV} 指定的浏览器 {named} 不存在或不可执行。"
            f" / cannot make the PDF: {BROWSER_ENV}={named} is not an executable browser; "
            f"point it at chromium, or unset it to use {DEBIAN_CHROMIUM}."
        )
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return Path(DEBIAN_CHROMIUM)
    for name in ON_PATH:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise PdfUnavailableError(
        "无法生成 PDF: 未找到 Chromium 浏览器。请安装: apt-get install chromium "
        f"fonts-wqy-microhei (或 make system-deps), 或以环境变量 {BROWSER_ENV} 指定其路径。"
        " / cannot make the PDF: no Chromium browser found. Install it with `apt-get "
        "install chromium fonts-wqy-microhei` (or `make system-deps`), or set "
        f"{BROWSER_ENV} to its path."
    )


def html_to_pdf(html: str, *, browser: Path | None = None, timeout_s: float = TIMEOUT_S) -> bytes:
    """The page printed to PDF by headless Chromium (A4 and margins from its CSS)."""
    exe = browser or find_browser()
    with tempfile.TemporaryDirectory(prefix="fe-pdf-") as tmp:
        work = Path(tmp)
        page, out = work / "page.html", work / "report.pdf"
        page.write_text(html, encoding="utf-8")
        args = [
            str(exe), *_FLAGS, f"--user-data-dir={work / 'profile'}",
            f"--print-to-pdf={out}", page.as_uri(),
        ]  # fmt: skip
        if os.geteuid() == 0:  # Chromium will not start its sandbox as root
            args.insert(1, "--no-sandbox")
        log = work / "browser.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink, start_new_session=True
            )
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill(proc)
                raise PdfUnavailableError(
                    f"无法生成 PDF: 浏览器 {exe} 在 {timeout_s:.0f} 秒内未完成打印, 已终止。"
                    f" / cannot make the PDF: {exe} did not finish printing within "
                    f"{timeout_s:.0f} s and was stopped."
                ) from None
            finally:
                _kill(proc)  # helpers it left behind in its group
        if code != 0 or not out.exists() or out.stat().st_size == 0:
            tail = log.read_text(encoding="utf-8", errors="replace").strip()[-600:]
            logger.warning("%s exited %s without a PDF: %s", exe, code, tail)
            raise PdfUnavailableError(
                f"无法生成 PDF: 浏览器 {exe} 退出 (代码 {code}) 而未写出 PDF。 / cannot make the "
                f"PDF: {exe} exited with {code} and wrote none: {tail or 'no output'}"
            )
        return out.read_bytes()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """The browser's process group, by the browser's id (its session leader)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def render_pdf(report: Json, *, timeout_s: float = TIMEOUT_S) -> bytes:
    """The report's printed page as a PDF with its fonts embedded."""
    return html_to_pdf(render_html(report), timeout_s=timeout_s)
