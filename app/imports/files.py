"""The files an import may name: regular, readable files under IMPORT_DIR, by the same rules as POST /import/sync.

Blocking file-system calls; the service runs `list_files` in a thread. Bounded: at most `limit` files are
returned and at most `scan_limit` directory entries looked at, so a huge folder cannot stall the request.
A name that is not valid UTF-8 (a file or a folder) is left out: a JSON filePath cannot name it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ImportableFile:
    name: str  # the path relative to IMPORT_DIR, with '/': what POST /import/sync takes as filePath
    size: int
    modified_at: dt.datetime


def importable(root: Path, path: Path) -> os.stat_result | None:
    """The stat of `path` when an import would accept it: inside `root` after resolving symlinks, a regular
    readable file; else None."""
    try:
        real = path.resolve()
        if not real.is_relative_to(root) or not real.is_file() or not os.access(real, os.R_OK):
            return None
        return real.stat()
    except (OSError, ValueError, RuntimeError):  # RuntimeError: Python 3.11's Path.resolve on a symlink loop
        return None


def sendable(name: str) -> bool:
    """False for a name os.walk decoded with surrogateescape (bytes that are not UTF-8): JSON cannot carry it."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def list_files(root: Path, *, limit: int = 1000, scan_limit: int = 20_000) -> tuple[list[ImportableFile], bool]:
    """Importable files under `root` (hidden ones and hidden folders skipped) sorted by name, and whether the
    list was cut short by `limit` or `scan_limit`. Every entry read counts against `scan_limit`, a folder as much
    as a file (a tree of empty folders was walked to its end), and entries are read one at a time (os.walk reads
    a whole folder before it hands over any of it). Folders are walked depth first, in name order."""
    root = root.resolve()
    found: list[ImportableFile] = []
    scanned = 0
    folders = [root]
    while folders:
        subfolders: list[Path] = []
        try:
            with os.scandir(folders.pop()) as entries:
                for entry in entries:
                    scanned += 1
                    if scanned > scan_limit or len(found) >= limit:
                        return sorted(found, key=lambda f: f.name), True
                    if entry.name.startswith(".") or not sendable(entry.name):
                        continue
                    if _is_folder(entry):
                        subfolders.append(Path(entry.path))
                    elif (file := _listed(root, Path(entry.path))) is not None:
                        found.append(file)
        except OSError:  # a folder that cannot be read (or is gone) is skipped, as os.walk skips it
            continue
        folders += sorted(subfolders, reverse=True)  # the first by name is walked next
    return sorted(found, key=lambda f: f.name), False


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """A folder to walk into; a symlink to a folder is not walked (it may lead out of IMPORT_DIR, or in a loop)."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _listed(root: Path, path: Path) -> ImportableFile | None:
    stat = importable(root, path)
    if stat is None:
        return None
    modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
    return ImportableFile(path.relative_to(root).as_posix(), stat.st_size, modified)
