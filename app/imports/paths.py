"""Which file an import request names: inside IMPORT_DIR after resolving symlinks, or CSV_FILE_PATH itself."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from app.errors import ImportFileError
from app.imports.reading.decode import InputError
from app.imports.reading.header import HeaderError


def resolve(file_path: str | None, root: Path, csv_file_path: str | None) -> Path:
    """The file to import; every refusal is an ImportFileError (400) naming the file as the client wrote it,
    never a server folder."""
    try:
        return _resolve(file_path, root, csv_file_path)
    except RuntimeError:  # Python 3.11's Path.resolve on a symlink loop (its message holds the server's path)
        raise ImportFileError(f"{(file_path or '')[:200]!r} is not a usable path: a symlink loop") from None
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system, ...
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)  # an OSError's str holds the path
        raise ImportFileError(f"{(file_path or '')[:200]!r} is not a usable path: {reason}") from None


def _resolve(file_path: str | None, root: Path, csv_file_path: str | None) -> Path:
    configured = Path(csv_file_path).resolve() if csv_file_path else None
    if file_path is None:
        if configured is None:
            raise ImportFileError("no filePath given and CSV_FILE_PATH is not set")
        path = configured
    else:
        path = (root / file_path).resolve()
        if path != configured and not path.is_relative_to(root):
            raise ImportFileError(f"{file_path!r} is outside the import folder")
    name = repr(file_path) if file_path else f"CSV_FILE_PATH ({path.name})"  # never a server folder
    if not path.exists():
        raise ImportFileError(f"{name} does not exist")
    if not path.is_file():
        raise ImportFileError(f"{name} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ImportFileError(f"{name} is not readable")
    return path


@contextlib.contextmanager
def readable(path: Path) -> Iterator[None]:
    """A file that cannot be read as asked (its header, its encoding, a record too large) is a 400 naming the file,
    never a server folder."""
    try:
        yield
    except (HeaderError, InputError) as exc:
        raise ImportFileError(f"{path.name}: {exc}") from None
    except OSError as exc:
        raise ImportFileError(f"{path.name}: cannot be read ({exc.strerror})") from None
