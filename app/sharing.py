"""How our processes share one embedded database server (app/embedded.py): a file per process using it (Users),
an flock held while one joins or leaves, and the watchdog that stops the server once every user is gone
without stopping it (kill -9): `python -m app.sharing watch STORAGE PID`, started by the server's starter."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

STOP_TIMEOUT = 20.0


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), None if it is gone or a
    zombie: with the pid it names one process, even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def pid_alive(pid: int) -> bool:
    return start_time(pid) is not None


def wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


class Users:
    """The processes using one embedded server: a file per process, named by pid, holding its start time."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int | None = None) -> None:
        pid = pid or os.getpid()
        (self.folder / str(pid)).write_text(start_time(pid) or "")

    def remove(self, pid: int | None = None) -> None:
        (self.folder / str(pid or os.getpid())).unlink(missing_ok=True)

    def others(self) -> list[int]:
        """Live users other than this process; files of dead ones are removed."""
        live = []
        for entry in self.folder.iterdir():
            try:
                pid, started = int(entry.name), entry.read_text()
            except (OSError, ValueError):
                continue
            if start_time(pid) == started and started:
                if pid != os.getpid():
                    live.append(pid)
            else:
                entry.unlink(missing_ok=True)
        return sorted(live)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)


def terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL if the server has not exited within STOP_TIMEOUT."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        if not wait_exit(pid, STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            wait_exit(pid, 5)


def watch(storage: Path, pid: int, interval: float = 0.5) -> None:
    """The watchdog's loop: once the server has no live user left, stop it (and go)."""
    users = Users(storage.parent / f"{storage.name}.users")
    while pid_alive(pid):
        time.sleep(interval)
        with locked(storage.parent / f"{storage.name}.lock"):
            if pid_alive(pid) and not users.others():
                terminate(pid)
                (storage.parent / f"{storage.name}.pid").unlink(missing_ok=True)
                return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m app.sharing")
    parser.add_argument("command", choices=["watch"])
    parser.add_argument("storage", type=Path)
    parser.add_argument("pid", type=int)
    args = parser.parse_args()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(args.storage, args.pid)
