"""app/customers/cli.py's output: the CLI's file appears only when the export ends cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.customers.cli import output


def test_the_file_appears_whole_when_the_export_ends(tmp_path: Path) -> None:
    target = tmp_path / "customers.csv"
    target.write_bytes(b"an older export")
    with output(str(target)) as file:
        file.write(b"Customer Id\r\n")
        assert target.read_bytes() == b"an older export"  # written beside it until the end
        file.write(b"C1\r\n")
    assert target.read_bytes() == b"Customer Id\r\nC1\r\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["customers.csv"]


def test_a_failed_export_leaves_no_file_and_no_part_of_one(tmp_path: Path) -> None:
    target = tmp_path / "customers.csv"
    with pytest.raises(ConnectionError), output(str(target)) as file:
        file.write(b"Customer Id\r\nC1\r\n")
        raise ConnectionError("the database went away midway")
    assert list(tmp_path.iterdir()) == []
