"""Browser tests: Debian's headless Chromium driven by Playwright (no browser download), against the app served
by a real uvicorn (in a thread) on the session's SecantusDB server. Screenshots go to artifacts/ (gitignored)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright

from app.asgi import create_app
from app.embedded import EmbeddedMongo, free_port
from app.settings import Settings
from tests.conftest import with_settings

ROOT = Path(__file__).parents[2]
ARTIFACTS = ROOT / "artifacts"
GENERATOR = ROOT / "scripts" / "generate_customers.py"
WAIT_MS = 120_000  # an upper bound for slow machines, never a speed requirement
COUNTERS = (
    "rowsProcessed",
    "rowsInserted",
    "rowsDuplicate",
    "rowsUpdated",
    "rowsUnchanged",
    "rowsProtected",
    "rowsInvalid",
)


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


@dataclass
class Served:
    """One app served by uvicorn over TCP: its URL, settings and import folder."""

    url: str
    settings: Settings
    import_dir: Path

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.settings.api_token}"} if self.settings.api_token else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """uvicorn in a thread on a free port, lifespan included; stopped (gracefully) at the end."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", settings, settings.import_path)
    finally:
        server.should_exit = True
        thread.join(60)


def browser_settings(settings: Settings, folder: Path, **changes: Any) -> Settings:
    """A database of its own; small blocks and one writer, so that an import lasts long enough to cancel."""
    folder.mkdir(parents=True, exist_ok=True)
    return with_settings(
        settings,
        mongodb_db=f"browser_{uuid.uuid4().hex[:8]}",
        import_dir=str(folder),
        csv_file_path=None,
        import_block_bytes=65536,
        import_writers=1,
        **changes,
    )


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


@dataclass
class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are recorded; `allow` excuses console
    errors matching a pattern (an expected 401 or 400 the page shows to the user)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.errors.append(message.text)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


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


@contextlib.contextmanager
def held(server: EmbeddedMongo) -> Iterator[None]:
    """The database server stopped (SIGSTOP) for the block: a running import cannot finish meanwhile."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


def shown(text: str) -> int:
    """A counter as the page shows it ("12,345") as a number."""
    return int(text.replace(",", ""))
