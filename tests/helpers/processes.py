"""Processes: alive or gone, their command line, and the database server held still."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

from app.embedded import EmbeddedMongo


def alive(pid: int) -> bool:
    """A zombie counts as gone: it has exited and only waits for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def command(pid: int) -> list[bytes]:
    """The command line of a process ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


@contextlib.contextmanager
def held(server: EmbeddedMongo) -> Iterator[None]:
    """The database server stopped (SIGSTOP) for the block: an import cannot move while a test looks at it."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)
