"""The dashboard in a browser (tests/browser): the settings of a served app, a watched page, a counter shown."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.settings import Settings
from tests.helpers.paths import ROOT
from tests.helpers.settings import with_settings

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

ARTIFACTS = ROOT / "artifacts"
WAIT_MS = 120_000  # an upper bound for slow machines, never a speed requirement


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


def shown(text: str) -> int:
    """A counter as the page shows it ("12,345") as a number."""
    return int(text.replace(",", ""))
