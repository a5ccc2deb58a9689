"""The API docs page (issue 12, item 14): served from the app's own vendored assets, no inline script, no remote
origin, the pinned package's files unchanged and its licence alongside. tests/system/test_docs_browser.py loads
it in a real browser, offline, under a Content-Security-Policy."""

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from app.docs import STATIC

ROOT = Path(__file__).parents[2]
VENDORED = STATIC / "swagger-ui" / "VENDORED"


class Page(HTMLParser):
    """The page's scripts (src, inline text), stylesheet links and event-handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str | None] = []
        self.inline: list[str] = []
        self.links: list[str] = []
        self.handlers: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]
        if tag == "script":
            self.scripts.append(values.get("src"))
            self._in_script = True
        if tag == "link" and values.get("href"):
            self.links.append(values["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


async def page(client: AsyncTestClient, path: str) -> Page:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert not re.search(r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", response.text), "a remote origin in the page"
    parsed = Page()
    parsed.feed(response.text)
    return parsed


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_docs_page_has_no_inline_script_and_no_remote_origin(client: AsyncTestClient, path: str) -> None:
    parsed = await page(client, path)
    assert parsed.scripts and all(parsed.scripts), "a <script> without src is an inline script"
    assert not parsed.inline and not parsed.handlers
    for url in [*parsed.scripts, *parsed.links]:
        assert url and url.startswith("/") and not url.startswith("//"), url


async def test_every_asset_of_the_page_is_served_by_the_app(client: AsyncTestClient) -> None:
    parsed = await page(client, "/schema")
    kinds = {".js": "javascript", ".css": "text/css"}
    for url in [*parsed.scripts, *parsed.links]:
        assert url is not None
        response = await client.get(url)
        assert response.status_code == 200, url
        assert kinds[Path(url).suffix] in response.headers["content-type"], url
        if url.endswith(".css"):  # no font or image from a remote host
            assert not re.search(rb"url\(\s*['\"]?(https?:)?//|@import", response.content), url
    init = (STATIC / "docs.js").read_text()
    assert "validatorUrl: null" in init and "http" not in init


def test_the_vendored_files_are_the_pinned_package_unchanged() -> None:
    manifest = VENDORED.read_text().splitlines()
    package, integrity = manifest[0].split()[1], manifest[1].split()[1]
    script = (ROOT / "scripts" / "vendor_swagger_ui.sh").read_text()
    assert f"swagger-ui-dist@{script.split('VERSION=')[1].split()[0]}" == package
    assert f"INTEGRITY={integrity}" in script
    for line in manifest[2:]:
        digest, name = line.split()
        assert hashlib.sha256((VENDORED.parent / name).read_bytes()).hexdigest() == digest, name


async def test_the_licence_is_served_with_the_assets(client: AsyncTestClient) -> None:
    response = await client.get("/schema/assets/swagger-ui/LICENSE")
    assert response.status_code == 200
    assert "Apache License" in response.text
    assert (await client.get("/schema/assets/swagger-ui/swagger-ui-bundle.js.LICENSE.txt")).status_code == 200
