"""app/imports/ by stage (issue 23), with imports flowing one way: model <- reading, job <- run <- the edges (the
modules at the top of app/imports). A stage that imports a later one, or an edge, fails here."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

IMPORTS = Path(__file__).parents[2] / "app" / "imports"
# what each stage may import from app.imports besides itself
ALLOWED = {"reading": {"model"}, "job": {"model"}, "run": {"model", "reading", "job"}}


def imported_parts(module: Path) -> set[str]:
    """The first part under app.imports of each `from app.imports... import` of a module: model, reading, service."""
    parts = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("app.imports"):
            names = node.module.split(".")[2:] or [alias.name for alias in node.names]
            parts.update(names[:1] if node.module != "app.imports" else names)
    return parts


@pytest.mark.parametrize("stage", sorted(ALLOWED))
def test_a_stage_imports_only_the_stages_before_it(stage: str) -> None:
    modules = sorted((IMPORTS / stage).glob("*.py"))
    assert len(modules) >= 3, modules  # the stage is there
    crossing = {module.name: imported_parts(module) - ALLOWED[stage] - {stage} for module in modules}
    assert {name: parts for name, parts in crossing.items() if parts} == {}


def test_imported_parts_reads_the_stages_a_module_imports() -> None:
    assert "service" in imported_parts(IMPORTS / "cli.py") or "service" in imported_parts(IMPORTS / "table.py")
    assert imported_parts(IMPORTS / "run" / "pipeline.py") >= {"model", "reading", "job", "run"}
