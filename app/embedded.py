"""The embedded SecantusDB server: a child process started when MONGODB_URI is unset.

The server is SecantusDB's Rust binary `secantusd-rs` (installed by `make`, see scripts/install_secantusd.sh);
where it is missing, SecantusDB's Python server (`python -m secantus`) is the fallback. Both take the same
flags and speak the MongoDB wire protocol; nothing else in the app knows which one answers.

The database runs in its own process, never inside the app, so it cannot compete with the event loop.
A pidfile next to the data lets the next start stop a server orphaned by a crashed run (it would
hold the WiredTiger lock); the child also gets SIGTERM from the kernel if the app dies (Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
RUST_SERVER = "secantusd-rs"
PYTHON_SERVER = "python"  # EMBEDDED_DB_SERVER value that asks for the fallback


def find_server(choice: str = "auto") -> list[str]:
    """The command that starts the embedded server: `choice` is "auto" (secantusd-rs on PATH or in cargo's bin
    folder, else the Python server), "python", or the path of a secantusd-rs binary."""
    if choice == PYTHON_SERVER:
        return [sys.executable, "-m", "secantus"]
    if choice != "auto":
        return [choice]
    cargo_bin = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo") / "bin" / RUST_SERVER
    found = shutil.which(RUST_SERVER) or (str(cargo_bin) if os.access(cargo_bin, os.X_OK) else None)
    if found:
        return [found]
    log.warning(
        "%s not found: using SecantusDB's Python server, about 10x slower at imports. "
        "Install the fast one with `make secantusd` (needs cargo and cmake).",
        RUST_SERVER,
    )
    return [sys.executable, "-m", "secantus"]


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the parent dies."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the server binds: connections of a stopped server in TIME_WAIT must not make its port look busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_server(pid: int, storage: Path, program: str = RUST_SERVER) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = (RUST_SERVER.encode(), program.encode())  # the configured binary may be named otherwise
    is_server = any(arg == b"secantus" or arg.endswith(names) for arg in cmdline)
    return is_server and str(storage).encode() in cmdline


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


class EmbeddedMongo:
    """Start, find and stop one SecantusDB server whose data lives in `storage`."""

    def __init__(
        self, storage: Path, port: int, *, host: str = "127.0.0.1", log_level: str = "WARNING", server: str = "auto"
    ):
        self.command = find_server(server)
        self.storage = storage
        self.host = host
        self.port = port
        self.log_level = log_level if log_level in {"DEBUG", "INFO", "WARNING", "ERROR"} else "WARNING"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def name(self) -> str:
        # by what runs, not by the file name: EMBEDDED_DB_SERVER may be the path of a binary named otherwise
        return "Python server" if self.command[1:] == ["-m", "secantus"] else RUST_SERVER

    @property
    def _pidfile(self) -> Path:
        return self.storage.parent / f"{self.storage.name}.pid"

    @property
    def _logfile(self) -> Path:
        return self.storage.parent / f"{self.storage.name}.log"

    def start(self) -> str:
        """Start the server and return its URI once it answers ping."""
        self.storage.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        if self.port == 0:  # EMBEDDED_DB_PORT=0: any free port
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            busy, self.port = self.port, free_port(self.host)
            log.warning("port %d is busy; embedded database uses port %d", busy, self.port)
        cmd = [
            *self.command,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--storage-path",
            str(self.storage),
            "--log-level",
            self.log_level,
        ]
        # A session of its own: a terminal's Ctrl-C (sent to the whole foreground group) is the app's to handle;
        # the database must stay up while the app cancels and checkpoints. PDEATHSIG still covers a dead app.
        with self._logfile.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        self._pidfile.write_text(json.dumps({"pid": self.process.pid, "port": self.port}))
        self._wait_ready()
        log.info(
            "embedded SecantusDB (%s) ready: %s (data in %s; mongosh: npx mongosh '%s')",
            self.name,
            self.uri,
            self.storage,
            self.uri,
        )
        return self.uri

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    tail = self._logfile.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"embedded database exited with {self.process.returncode}:\n{tail}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"embedded database did not answer ping within {START_TIMEOUT:.0f}s")

    def _stop_orphan(self) -> None:
        """Stop a server left running by a crashed app: it holds the WiredTiger lock on our data."""
        try:
            pid = int(json.loads(self._pidfile.read_text())["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if _pid_alive(pid) and _is_our_server(pid, self.storage, self.command[-1]):
            log.warning("stopping an embedded database left over by an earlier run (pid %d)", pid)
            os.kill(pid, signal.SIGTERM)
            if not _wait_exit(pid, STOP_TIMEOUT):
                os.kill(pid, signal.SIGKILL)
                _wait_exit(pid, 5)
        self._pidfile.unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the server cleanly (SIGTERM lets WiredTiger checkpoint), killing it if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            started = time.monotonic()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            log.info("embedded database stopped in %.1fs", time.monotonic() - started)
        self._pidfile.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
