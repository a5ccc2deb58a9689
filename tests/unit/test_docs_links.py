"""The README links to its detail instead of repeating it (issue 23): every relative link of README.md and
docs/*.md reaches a file that exists and, when it names one, a heading of that file (GitHub's anchors), so a moved
section leaves no dead link behind; every file of the source tree a page names exists, so a moved module leaves
no stale path; and the README's prose repeats no run of words of docs/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
SOURCE_PATH = re.compile(r"\b(?:app|tests|scripts)/[\w/.\-]*\w")  # app/imports/run/sink.py, tests/browser/, ...


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (not `-` or `_`), spaces to `-`."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    headings = {anchor(heading) for heading in re.findall(r"^#{1,6} (.+)$", text, re.MULTILINE)}
    return headings | set(re.findall(r'<a (?:id|name)="([^"]+)"', text))  # and anchors set by hand


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return [m["target"] for m in LINK.finditer(text) if not re.match(r"[a-z]+:", m["target"])]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_relative_link_reaches_a_file_and_its_heading(page: Path) -> None:
    dead = []
    for target in links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (fragment and file.suffix == ".md" and fragment not in anchors(file)):
            dead.append(target)
    assert dead == [], f"dead links in {page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_source_path_a_page_names_exists(page: Path) -> None:
    named = set(SOURCE_PATH.findall(page.read_text(encoding="utf-8")))
    # a module's attribute may be named by its path: app/imports/reading/sample.read_bound
    missing = [path for path in named if not any((ROOT / p).exists() for p in (path, f"{path.rpartition('.')[0]}.py"))]
    assert sorted(missing) == []


def test_the_anchor_is_githubs() -> None:
    assert anchor("GET /customers/{customer_id}") == "get-customerscustomer_id"
    assert anchor('Re-sync: `{"mode": "upsert"}` (`--mode upsert`)') == "re-sync-mode-upsert---mode-upsert"
    assert anchor("Under load (issue 19)") == "under-load-issue-19"


def prose_words(page: Path) -> list[str]:
    """The page's words outside code blocks (a command may be shown in both: the tour and the reference)."""
    return FENCE.sub("", page.read_text(encoding="utf-8")).split()


def test_the_readme_repeats_no_run_of_eight_words_of_the_docs() -> None:
    readme = prose_words(ROOT / "README.md")
    docs = " ".join(" ".join(prose_words(page)) for page in PAGES[1:])
    repeated = {" ".join(readme[i : i + 8]) for i in range(len(readme) - 7) if " ".join(readme[i : i + 8]) in docs}
    assert repeated == set()
