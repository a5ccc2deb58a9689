"""app/imports/files.py: what GET /import/files lists is what POST /import/sync would accept."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from app.imports.files import list_files


def test_lists_importable_files_by_relative_name(tmp_path: Path) -> None:
    root, outside = tmp_path / "imports", tmp_path / "elsewhere"
    (root / "2024" / "march").mkdir(parents=True)
    (root / ".hidden-dir").mkdir()
    outside.mkdir()
    (root / "b.csv").write_text("Customer Id\n1\n")
    (root / "a.csv").write_text("Customer Id\n")
    (root / "2024" / "march" / "c.csv").write_text("x")
    (root / ".partial.csv").write_text("x")
    (root / ".hidden-dir" / "d.csv").write_text("x")
    (outside / "secret.csv").write_text("x")
    (root / "escape.csv").symlink_to(outside / "secret.csv")  # resolves outside IMPORT_DIR: refused by imports
    (root / "inside-link.csv").symlink_to(root / "a.csv")  # resolves inside: accepted
    (root / "dangling.csv").symlink_to(root / "missing.csv")
    (root / "fifo").mkdir()  # a folder, walked into, holds nothing

    files, truncated = list_files(root)

    assert [f.name for f in files] == ["2024/march/c.csv", "a.csv", "b.csv", "inside-link.csv"]
    assert not truncated
    b = files[2]
    assert b.size == len("Customer Id\n1\n")
    assert b.modified_at == dt.datetime.fromtimestamp(os.stat(root / "b.csv").st_mtime, dt.UTC)


def test_an_unreadable_file_is_not_listed(tmp_path: Path) -> None:
    (tmp_path / "ok.csv").write_text("x")
    locked = tmp_path / "locked.csv"
    locked.write_text("x")
    locked.chmod(0)
    try:
        names = [f.name for f in list_files(tmp_path)[0]]
    finally:
        locked.chmod(0o644)
    # root reads every file whatever its mode: then os.access says readable and the import would read it too
    assert names == (["locked.csv", "ok.csv"] if os.access(locked, os.R_OK) else ["ok.csv"])


def test_the_list_is_bounded(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i:02d}.csv").write_text("x")
    files, truncated = list_files(tmp_path, limit=5)
    assert truncated and len(files) == 5
    files, truncated = list_files(tmp_path, scan_limit=3)
    assert truncated and len(files) == 3


def test_every_entry_counts_against_the_scan_limit_folders_too(tmp_path: Path) -> None:
    """A tree of empty folders is bounded as a folder of files is (only files counted: it was walked to its end)."""
    for i in range(50):
        (tmp_path / f"empty-{i:02d}").mkdir()
    (tmp_path / "empty-49" / "last.csv").write_text("x")  # the 51st entry looked at
    assert list_files(tmp_path, scan_limit=10) == ([], True)
    assert list_files(tmp_path, scan_limit=50) == ([], True)
    files, truncated = list_files(tmp_path, scan_limit=51)
    assert [f.name for f in files] == ["empty-49/last.csv"] and not truncated


def test_a_deep_chain_of_empty_folders_is_cut_short(tmp_path: Path) -> None:
    folder = tmp_path
    for depth in range(40):
        folder = folder / f"level-{depth}"
        folder.mkdir()
    (folder / "deep.csv").write_text("x")
    assert list_files(tmp_path, scan_limit=20) == ([], True)
    files, truncated = list_files(tmp_path, scan_limit=41)  # 40 folders and the file
    assert [f.name for f in files] == [(folder / "deep.csv").relative_to(tmp_path).as_posix()] and not truncated


def test_a_missing_folder_lists_nothing(tmp_path: Path) -> None:
    assert list_files(tmp_path / "absent") == ([], False)


def test_a_name_that_is_not_utf8_is_left_out_and_the_rest_is_listed(tmp_path: Path) -> None:
    """A JSON filePath cannot carry bytes that are not UTF-8 (GET /import/files was a 500 on them)."""
    root = os.fsencode(tmp_path)
    (tmp_path / "good.csv").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ok.csv").write_text("x")
    for name in (b"/bad\xff.csv", b"/sub/bad\xfe.csv"):
        with open(root + name, "w") as file:
            file.write("x")
    os.mkdir(root + b"/dir\xff")
    with open(root + b"/dir\xff/inside.csv", "w") as file:  # a good name in a folder whose name is not
        file.write("x")

    files, truncated = list_files(tmp_path)

    assert [f.name for f in files] == ["good.csv", "sub/ok.csv"] and not truncated
    for f in files:
        f.name.encode("utf-8")  # every listed name can be sent back as JSON
