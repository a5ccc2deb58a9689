"""app/customers/cli.py's output: the CLI's file appears only when the export ends cleanly."""

from __future__ import annotations

import os
import stat
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


def test_a_symlink_stays_a_link_and_its_target_gets_the_export(tmp_path: Path) -> None:
    target = tmp_path / "exports" / "customers.csv"
    target.parent.mkdir()
    target.write_bytes(b"an older export")
    link = tmp_path / "latest.csv"
    link.symlink_to(target)
    with output(str(link)) as file:
        file.write(b"Customer Id\r\nC1\r\n")
    assert link.is_symlink()  # was replaced by a regular file, leaving the old export where the link pointed
    assert target.read_bytes() == b"Customer Id\r\nC1\r\n"
    assert sorted(path.name for path in target.parent.iterdir()) == ["customers.csv"]


def test_a_fifo_is_written_to_not_replaced(tmp_path: Path) -> None:
    """`--out /dev/stdout`, `/dev/null` or a named pipe: renaming a file over them replaced the device node (as root,
    `--out /dev/null` left a regular file at /dev/null). A FIFO stands in for them here."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader is there: the writer's open does not wait
    try:
        with output(str(fifo)) as file:
            file.write(b"Customer Id\r\nC1\r\n")
        assert os.read(reader, 1024) == b"Customer Id\r\nC1\r\n"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pipe"]


def test_a_folder_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError), output(str(tmp_path)):
        raise AssertionError("the export ran, to fail only at its end")
    assert list(tmp_path.iterdir()) == []
