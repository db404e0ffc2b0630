"""Debian's headless Chromium driven by Playwright: PDF export and the browser tests use this one launcher.

Never a downloaded browser: the executable is ``NEXA_CHROMIUM`` or ``chromium`` on PATH (the Makefile
installs it with apt). Every launch gets a fresh empty profile and no background network traffic.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class BrowserUnavailableError(RuntimeError):
    """No Chromium executable, or Playwright is not installed."""


def chromium_path() -> str:
    """The Chromium to drive; says how to install it when there is none."""
    path = os.environ.get("NEXA_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        raise BrowserUnavailableError("no chromium found (NEXA_CHROMIUM or `chromium` on PATH); "
                                      "install Debian's: apt-get install -y chromium")
    return path


@contextmanager
def chromium() -> Iterator:
    """A Playwright browser context of headless Chromium with an empty temporary profile."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise BrowserUnavailableError("the `playwright` package is missing: pip install 'nexacompute[ui]'") from exc
    executable = chromium_path()
    with tempfile.TemporaryDirectory(prefix="nexa-chromium-") as profile, sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=executable, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1200, "height": 900})
        try:
            yield context
        finally:
            context.close()


def html_to_pdf(html_file: Path, pdf_file: Path) -> Path:
    """Print a local HTML file to PDF once its Plotly figures have drawn (A4, backgrounds kept)."""
    with chromium() as context:
        page = context.new_page()
        page.goto(html_file.resolve().as_uri(), wait_until="load")
        page.wait_for_function("Array.from(document.querySelectorAll('.plotly-graph-div'))"
                               ".every(d => d.querySelector('.main-svg'))", timeout=60_000)
        page.emulate_media(media="screen")
        pdf_file.parent.mkdir(parents=True, exist_ok=True)
        page.pdf(path=str(pdf_file), format="A4", print_background=True,
                 margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"})
    return pdf_file
