"""app/imports/ by stage (issue 23), with imports flowing one way: model <- reading, job <- run <- the edges (the
modules at the top of app/imports). A stage that imports a later one, or an edge, fails here. And tests/helpers is
a package of modules under 300 lines each that import one another one way."""

from __future__ import annotations

import ast
import graphlib
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


# ---- tests/helpers: a package of short modules, imported one way ----------------------------------------------

HELPERS = Path(__file__).parents[1] / "helpers"
MAX_LINES = 300


def helper_imports(module: Path) -> set[str]:
    """Every module of tests/ a module imports, as written: `from tests.helpers.apps import App` -> tests.helpers.apps
    (a relative import keeps its dots: `from .apps import App` -> .apps)."""
    found = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            name = "." * node.level + (node.module or "")
            found.update([name] if node.level or name.startswith("tests") else [])
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tests"))
    return found


def helper_graph() -> dict[str, set[str]]:
    """Each helper module and the helper modules it imports (by stem: apps -> {gates, processes, settings})."""
    return {
        module.stem: {name.removeprefix("tests.helpers.") for name in helper_imports(module)}
        for module in sorted(HELPERS.glob("*.py"))
    }


def test_helpers_are_a_package_of_short_modules() -> None:
    assert not (HELPERS.parent / "helpers.py").exists()
    modules = sorted(HELPERS.glob("*.py"))
    assert len(modules) >= 5 and HELPERS / "__init__.py" in modules, modules
    lengths = {module.name: len(module.read_text(encoding="utf-8").splitlines()) for module in modules}
    assert {name: lines for name, lines in lengths.items() if lines >= MAX_LINES} == {}


def test_the_helpers_package_itself_exports_nothing() -> None:
    """Only a docstring: a test imports each helper from its topical module."""
    body = ast.parse((HELPERS / "__init__.py").read_text(encoding="utf-8")).body
    assert len(body) == 1 and isinstance(body[0], ast.Expr), [ast.dump(node) for node in body[1:]]
    assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)


def test_helper_modules_import_only_helper_modules_one_way() -> None:
    graph = helper_graph()
    strays = {stem: parts - set(graph) for stem, parts in graph.items() if parts - set(graph)}
    assert strays == {}  # no test module, no relative import, no helper that is not there
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    assert sorted(order) == sorted(graph)


def test_the_helper_checks_see_imports_and_cycles() -> None:
    assert helper_graph()["apps"] >= {"gates", "processes"}
    assert helper_graph()["paths"] == set()
    with pytest.raises(graphlib.CycleError):
        list(graphlib.TopologicalSorter({"apps": {"gates"}, "gates": {"apps"}}).static_order())
