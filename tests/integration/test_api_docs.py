"""docs/api.md agrees with the app's OpenAPI document (issue 23): every path and method of the document has its
section (`### METHOD /path`) and every section its operation; each parameter a section's table names (`| `name` |
in |`) is one of that operation's parameters, in the same place, and each parameter of the operation is named;
each status the operation declares is mentioned in its section."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar

API_DOCS = Path(__file__).parents[2] / "docs" / "api.md"
HEADING = re.compile(r"^### (?P<method>[A-Z]+) (?P<path>/\S*)$", re.MULTILINE)
PARAMETER_ROW = re.compile(r"^\| (?P<names>`[^|]+`) \| (?P<where>query|path|header) \|", re.MULTILINE)
METHODS = ("get", "head", "post", "put", "patch", "delete")

Operation = tuple[str, str]  # (METHOD, /path)


def documented() -> dict[Operation, str]:
    """Each section of docs/api.md by its heading's method and path: the section's text."""
    text = API_DOCS.read_text(encoding="utf-8")
    headings = list(HEADING.finditer(text))
    ends = [heading.start() for heading in headings[1:]] + [len(text)]
    return {(h["method"], h["path"]): text[h.end() : end] for h, end in zip(headings, ends, strict=True)}


def parameters_of(section: str) -> set[tuple[str, str]]:
    """(name, in) of every row of a section's parameter table; a row may name several: `email`, `country`."""
    rows = PARAMETER_ROW.finditer(section)
    return {(name, row["where"]) for row in rows for name in re.findall(r"`([^`]+)`", row["names"])}


@pytest.fixture(scope="module")
def operations(app: Litestar) -> dict[Operation, dict[str, Any]]:
    paths = app.openapi_schema.to_schema()["paths"]
    return {
        (method.upper(), path): operation
        for path, item in paths.items()
        for method, operation in item.items()
        if method in METHODS
    }


def test_the_page_documents_a_section_per_operation_and_nothing_else(
    operations: dict[Operation, dict[str, Any]],
) -> None:
    sections = documented()
    assert len(operations) >= 19, sorted(operations)  # the document is read, not empty
    assert sorted(set(operations) - set(sections)) == [], "in the OpenAPI document, missing from docs/api.md"
    assert sorted(set(sections) - set(operations)) == [], "in docs/api.md, not in the OpenAPI document"


def test_each_section_names_exactly_its_operations_parameters(operations: dict[Operation, dict[str, Any]]) -> None:
    for key, section in documented().items():
        declared = {(parameter["name"], parameter["in"]) for parameter in operations[key].get("parameters", [])}
        assert parameters_of(section) == declared, key


def test_each_declared_status_is_in_its_section(operations: dict[Operation, dict[str, Any]]) -> None:
    missing = {
        (*key, status)
        for key, section in documented().items()
        for status in set(operations[key]["responses"]) - {"default"}
        if not re.search(rf"\b{status}\b", section)
    }
    assert sorted(missing) == [], sorted(missing)


def test_the_parameter_table_reader_reads_a_row_naming_several() -> None:
    section = "| parameter | in | rule |\n|---|---|---|\n| `email`, `q` | query | text |\n| `job_id` | path | id |\n"
    assert parameters_of(section) == {("email", "query"), ("q", "query"), ("job_id", "path")}
