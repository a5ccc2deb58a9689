"""The API docs page in a real browser (headless Chromium), offline and under a strict Content-Security-Policy
(issue 12, item 14): it renders every operation, and the browser reports no blocked script, style or request.

The app is served by uvicorn in a thread, behind a wrapper that adds the policy the service is meant to run
under: scripts and everything else only from the app's own origin (so no inline script and no remote origin);
images also as data: URLs (Swagger UI draws its icons as data: SVGs in its stylesheet). Every host name other than
127.0.0.1 resolves to nothing, as on a machine without internet.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.types import Message, Receive, Scope, Send

from app.asgi import create_app
from app.settings import Settings
from tests.helpers.served import serving
from tests.helpers.settings import with_settings

pytestmark = pytest.mark.system
CSP = "default-src 'self'; img-src 'self' data:"
BROWSER = next(
    (shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)), None
)


@pytest.fixture
def docs_url(settings: Settings) -> Iterator[str]:
    app = create_app(with_settings(settings, mongodb_db="docs"))

    async def with_csp(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"content-security-policy", CSP.encode())]
            await send(message)

        await app(scope, receive, send_with_csp)

    with serving(with_csp, lifespan="auto", ws="auto") as url:
        yield url


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (apt-get install chromium)")
def test_the_docs_render_offline_under_a_strict_csp(docs_url: str, tmp_path: Path) -> None:
    assert httpx.get(f"{docs_url}/schema", timeout=10).headers["content-security-policy"] == CSP
    result = subprocess.run(
        [
            str(BROWSER),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{docs_url}/schema",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    blocked = [line for line in console if re.search(r"Content Security Policy|Refused|ERR_NAME_NOT_RESOLVED", line)]
    assert not blocked, "\n".join(blocked)
    rendered = set(re.findall(r'data-path="([^"]+)"', result.stdout))
    assert {"/customers", "/customers/{customer_id}", "/import/sync", "/health"} <= rendered, result.stdout[-2000:]
