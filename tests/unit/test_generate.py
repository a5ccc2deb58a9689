"""scripts/generate_customers.py: the file it writes is the file it reports, checked with the stdlib csv module."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from app.imports.model import ParseSpec
from app.imports.reading.header import map_header
from app.imports.reading.parse import parse_block

SCRIPT = Path(__file__).parents[2] / "scripts" / "generate_customers.py"
HEADER = [
    "Index",
    "Customer Id",
    "First Name",
    "Last Name",
    "Company",
    "City",
    "Country",
    "Phone 1",
    "Phone 2",
    "Email",
    "Subscription Date",
    "Website",
    "About Customer",
]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_customers", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    # surrogateescape keeps invalid UTF-8 bytes visible as lone surrogates instead of failing the whole read
    with path.open(newline="", encoding="utf-8", errors="surrogateescape") as file:
        header, *rows = csv.reader(file)
    return header, rows


def problem(row: list[str]) -> str | None:
    """Why an importer must reject this row (the generator's kind names), or None."""
    if len(row) != len(HEADER):
        return "field_count"
    if any(re.search("[\udc80-\udcff]", value) for value in row):
        return "bad_utf8"
    if not row[1]:
        return "empty_id"
    email = row[9].strip()  # the importer trims every field
    local, _, domain = email.partition("@")
    if not local or not domain or "@" in domain or re.search(r"\s", email):
        return "bad_email"
    try:
        dt.date.fromisoformat(row[10])
    except ValueError:
        return "bad_date"
    return None


def test_clean_file_has_the_header_unique_ids_and_realistic_rows(generator: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    summary = generator.generate(out, rows=3000, seed=7)
    header, rows = read(out)
    assert header == HEADER
    assert len(rows) == summary["rows"] == 3000
    assert summary["bytes"] == out.stat().st_size
    assert summary["duplicates"] == summary["invalid"] == 0
    assert all(len(row) == len(HEADER) and problem(row) is None for row in rows)
    assert [int(row[0]) for row in rows] == list(range(1, 3001))
    ids = [row[1] for row in rows]
    assert all(re.fullmatch(r"[0-9a-fA-F]{15}", cid) for cid in ids)
    assert len({cid.lower() for cid in ids}) == len(ids)
    assert any(cid != cid.lower() and cid != cid.upper() for cid in ids)
    assert 700 <= out.stat().st_size / len(rows) <= 1000


def test_file_exercises_quoting_and_unicode(generator: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    generator.generate(out, rows=3000, seed=3)
    _, rows = read(out)
    text = out.read_text(encoding="utf-8")
    fields = [value for row in rows for value in row]
    assert any("," in value for row in rows for value in row[4:7])
    assert any('"' in value for value in fields)
    assert any("\n" in value for value in fields)
    assert text.count("\n") > len(rows) + 1
    assert any(not value.isascii() for row in rows for value in row[2:4])


@pytest.mark.parametrize(("duplicate_rate", "invalid_rate"), [(0.05, 0.0), (0.0, 0.05), (0.03, 0.04), (0.5, 0.5)])
def test_reported_duplicates_and_invalid_rows_are_the_ones_in_the_file(
    generator: ModuleType, tmp_path: Path, duplicate_rate: float, invalid_rate: float
) -> None:
    out = tmp_path / "c.csv"
    summary = generator.generate(out, rows=4000, seed=11, duplicate_rate=duplicate_rate, invalid_rate=invalid_rate)
    _, rows = read(out)
    assert len(rows) == 4000
    problems = Counter(problem(row) for row in rows)
    seen: set[str] = set()
    duplicates = 0
    for row in rows:
        if problem(row) is None:
            duplicates += row[1] in seen
            seen.add(row[1])
    invalid = {kind: count for kind, count in summary["invalidByKind"].items() if count}
    assert invalid == {kind: count for kind, count in problems.items() if kind is not None}
    assert summary["invalid"] == 4000 - problems[None]
    assert summary["duplicates"] == duplicates
    for rate, count in ((duplicate_rate, duplicates), (invalid_rate, summary["invalid"])):
        assert 0.7 * rate * 4000 <= count <= 1.3 * rate * 4000


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_the_importer_rejects_exactly_the_rows_the_generator_reports_invalid(
    generator: ModuleType, tmp_path: Path, seed: int
) -> None:
    """The importer's own parser (app/imports/reading/parse.py), not a copy of its rules: a trailing space after an
    email was one of the generator's invalid rows, which the importer trims and accepts, so the two counts differed."""
    out = tmp_path / "c.csv"
    summary = generator.generate(out, rows=4000, seed=seed, invalid_rate=0.2)
    content = out.read_bytes()
    end = content.index(b"\n") + 1  # the generator's header has no quoted newline
    spec = ParseSpec(map_header(content[:end]), "job", batch_size=1000, max_record_bytes=1_048_576)
    parsed = parse_block(content[end:], 2, spec)
    assert parsed.fatal is None
    assert parsed.rows == summary["rows"]
    assert len(parsed.rejections) == summary["invalid"] == sum(summary["invalidByKind"].values()) > 0


def test_size_ends_at_the_first_row_that_reaches_it(generator: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "c.csv"
    summary = generator.generate(out, size=300_000, seed=1)
    _, rows = read(out)
    assert len(rows) == summary["rows"]
    assert 300_000 <= out.stat().st_size == summary["bytes"] < 300_000 + 5000


def test_same_seed_same_file(generator: ModuleType, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for path, seed in ((a, 5), (b, 5), (c, 6)):
        generator.generate(path, rows=300, seed=seed, duplicate_rate=0.1, invalid_rate=0.1)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("500K", 500_000),
        ("200MB", 200_000_000),
        ("2gb", 2_000_000_000),
        ("1.5M", 1_500_000),
        ("1GiB", 2**30),
        ("64KiB", 65536),
        ("123", 123),
    ],
)
def test_sizes_are_decimal_unless_binary_units(generator: ModuleType, text: str, size: int) -> None:
    assert generator.parse_size(text) == size


def test_cli_prints_a_json_summary(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "c.csv"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--rows", "200", "--out", str(out), "--seed", "9", "--invalid-rate", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    summary = json.loads(done.stdout)
    assert summary["rows"] == 200
    assert summary["bytes"] == out.stat().st_size
    assert summary["invalid"] == sum(summary["invalidByKind"].values()) > 0


@pytest.mark.parametrize(
    "args",
    [
        ["--rows", "5"],
        ["--out", "x.csv"],
        ["--size", "2XB", "--out", "x.csv"],
        ["--rows", "5", "--out", "x.csv", "--invalid-rate", "1.5"],
    ],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2
    assert not (tmp_path / "x.csv").exists()
