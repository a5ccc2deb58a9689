"""Fixtures of the browser tests: Debian's headless Chromium driven by Playwright (no browser download), against
the app served by a real uvicorn (in a thread) on the session's SecantusDB server. Screenshots go to artifacts/
(gitignored)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from app.settings import Settings
from tests.helpers.browser import WAIT_MS, Watched, browser_settings
from tests.helpers.paths import ROOT
from tests.helpers.served import Served, serve

GENERATOR = ROOT / "scripts" / "generate_customers.py"


expect.set_options(timeout=WAIT_MS)  # expect()'s own default is 5 s: a loaded machine is slower than that


def chromium_path() -> str:
    """Debian's chromium (CHROMIUM overrides); `.ci/run` installs it when missing."""
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("no chromium on PATH: `apt-get install -y chromium` (as .ci/run does), or set CHROMIUM=<path>")
    return path


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path())
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def served_dashboard(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(browser_settings(settings, tmp_path_factory.mktemp("browser-imports"))) as served:
        yield served


@pytest.fixture
def dashboard(served_dashboard: Served) -> Served:
    """The shared app with no job running: a test that failed half-way leaves none to the next."""
    progress = served_dashboard.api("GET", "/import/progress").json()
    if progress["status"] == "RUNNING":
        served_dashboard.api("POST", "/import/cancel")
        deadline = time.monotonic() + WAIT_MS / 1000
        while served_dashboard.api("GET", "/import/progress").json()["status"] == "RUNNING":
            assert time.monotonic() < deadline, "the job left running by an earlier test did not stop"
            time.sleep(0.05)
    return served_dashboard


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    watch = Watched(page)
    page.on("console", watch.console)
    page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))

    def dialog(d: Any) -> None:
        watch.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", dialog)
    yield watch
    context.close()
    assert watch.errors == [], "errors in the browser console"
    assert watch.dialogs == [], "a browser dialog opened"


@pytest.fixture(scope="package")
def generator() -> ModuleType:
    """scripts/generate_customers.py, the file generator of the README."""
    spec = importlib.util.spec_from_file_location("generate_customers", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
