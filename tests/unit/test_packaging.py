"""pyproject.toml as the build backend reads it: the metadata builds without a deprecation warning (issue 12,
item 18: every install printed setuptools' warning for the `project.license` table)."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import setuptools
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The first setuptools that reads `license` as an SPDX expression, and so warns about the table form.
SPDX_SETUPTOOLS = Version("77")

BUILD_METADATA = """
import sys, warnings
warnings.simplefilter("always")
from setuptools import build_meta
print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))
"""


def test_the_build_backend_is_one_that_reads_an_spdx_licence() -> None:
    (requirement,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert requirement.specifier.contains(SPDX_SETUPTOOLS)
    assert not requirement.specifier.contains("76.9"), "an older setuptools cannot read license = 'MIT'"
    assert isinstance(PYPROJECT["project"]["license"], str)


def test_the_metadata_builds_without_a_deprecation_warning(tmp_path: Path) -> None:
    """Runs the backend the install runs, on a copy of the project's metadata files, with every warning shown."""
    if Version(setuptools.__version__) < SPDX_SETUPTOOLS:
        pytest.fail(f"setuptools {setuptools.__version__} in .venv is older than the build requires; run make")
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    (project / "app" / "__init__.py").write_text("")
    out = tmp_path / "metadata"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", BUILD_METADATA, str(out)], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Deprecat" not in result.stderr + result.stdout, result.stderr
    metadata = (out / result.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata.splitlines()
