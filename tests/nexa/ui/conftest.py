"""Fixtures of the UI tests: the small lab of ``ui_lab.py``, the dashboard served from it, and Chromium."""

from __future__ import annotations

import pytest
from ui_lab import build_lab

from nexa.ui.app import running


@pytest.fixture(scope="module")
def ui_lab(tmp_path_factory) -> dict:
    return build_lab(tmp_path_factory.mktemp("ui") / "lab")


@pytest.fixture(scope="module")
def served(ui_lab) -> str:
    """The base URL of the dashboard over ``ui_lab``."""
    with running(ui_lab["lab"].root) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from nexa.ui.browser import chromium

    with chromium() as context:
        yield context


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")
