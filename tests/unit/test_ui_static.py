"""The dashboard's files obey the Content-Security-Policy they are served with, and never turn data into HTML."""

from __future__ import annotations

import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

STATIC = Path(__file__).parents[2] / "app" / "ui" / "static"
SCRIPTS = sorted(STATIC.rglob("*.js"))
TEXT_FILES = sorted([*SCRIPTS, *STATIC.rglob("*.css"), *STATIC.rglob("*.html"), *STATIC.rglob("*.svg")])


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text = ""
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text += data.strip()


def test_the_page_has_no_inline_script_or_style() -> None:
    parser = Tags()
    parser.feed((STATIC / "index.html").read_text())
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    assert scripts and all(attrs.get("src", "").startswith("/ui/static/") for attrs in scripts)
    assert parser.script_text == ""
    assert not [tag for tag, attrs in parser.tags if tag == "style" or "style" in attrs]
    assert not [(tag, name) for tag, attrs in parser.tags for name in attrs if name.startswith("on")]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_scripts_never_build_html_from_strings(path: Path) -> None:
    source = path.read_text()
    sinks = re.findall(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc", source)
    assert sinks == []


@pytest.mark.parametrize("path", TEXT_FILES, ids=lambda p: p.name)
def test_nothing_comes_from_another_origin(path: Path) -> None:
    remote = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", path.read_text(), re.IGNORECASE)
    allowed = {"http://www.w3.org"}  # the SVG namespace: a name, never fetched
    assert [url for url in remote if url not in allowed] == []


def test_every_static_file_is_package_data() -> None:
    """`pip install .` (the Docker image) ships only what pyproject's package-data names."""
    pyproject = tomllib.loads((STATIC.parents[2] / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["app.ui"]
    files = {path.relative_to(STATIC.parent) for path in STATIC.rglob("*") if path.is_file()}
    shipped = {path.relative_to(STATIC.parent) for pattern in globs for path in STATIC.parent.glob(pattern)}
    assert files and files <= shipped, files - shipped
