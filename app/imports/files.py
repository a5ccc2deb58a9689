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
    except (OSError, ValueError):
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
    list was cut short by `limit` or `scan_limit`."""
    root = root.resolve()
    found: list[ImportableFile] = []
    scanned = 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and sendable(d))
        for name in names:
            scanned += 1
            if scanned > scan_limit or len(found) >= limit:
                return sorted(found, key=lambda f: f.name), True
            if name.startswith(".") or not sendable(name):
                continue
            path = Path(folder) / name
            stat = importable(root, path)
            if stat is not None:
                modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
                found.append(ImportableFile(path.relative_to(root).as_posix(), stat.st_size, modified))
    return sorted(found, key=lambda f: f.name), False
