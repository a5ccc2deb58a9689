"""The embedded SecantusDB server: a child process started when MONGODB_URI is unset.

The server is SecantusDB's Rust binary `secantusd-rs` (installed by `make`, see scripts/install_secantusd.sh);
where it is missing, SecantusDB's Python server (`python -m secantus`) is the fallback. Both take the same
flags and speak the MongoDB wire protocol; nothing else in the app knows which one answers.

The database runs in its own process, never inside the app, so it cannot compete with the event loop.

Several processes of ours may use one data folder at once (`make run` serving, `python -m app import` beside
it). Next to the data live `db.pid` (the server's pid and port, written once it answers ping), `db.users/`
(one file per process using the server) and `db.lock` (an flock held while a process joins or leaves):
- a process that finds a live server of ours that answers ping uses it, and registers as a user;
- a process that leaves stops the server only when no other live user is left;
- a server whose users are all gone (every one crashed) is stopped by a small watchdog process, or else
  as a leftover by the next start (it would hold the WiredTiger lock).
A database that a live process of ours is using is never stopped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from app.sharing import Users, locked, pid_alive, terminate

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0
# The server's own settings, chosen by measurement (docs/performance.md, issue 22): --sync-on-commit makes every
# acknowledged write durable, as the client's j:true asks (app/db.py) and the server otherwise ignores
# (docs/secantus-rs-differences.md, 8): without it a kill -9 of the server lost acknowledged rows of an import
# (tests/system/test_database_crash.py). Both servers take it. --oplog-async and --data-nonlogged held that test
# too (beside it), but no speed-up stood out of the noise of this machine, so they are left out.
SERVER_FLAGS = ("--sync-on-commit",)
# ... and its environment: secantusd-rs keeps no oplog, which only change streams and point-in-time restore read
# (the service uses neither; with data tables logged, as here, recovery replays the write-ahead log, not the
# oplog). The import ran 1.25x faster without it (docs/performance.md, scripts/bench_import.py --server-env=), and the
# kill -9 test holds.
SERVER_ENV = {"SECANTUS_DISABLE_OPLOG": "1"}
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
        port: int = sock.getsockname()[1]  # the socket module types the address as Any
        return port


def _is_our_server(pid: int, storage: Path, program: str = RUST_SERVER) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    names = (RUST_SERVER.encode(), program.encode())  # the configured binary may be named otherwise
    is_server = any(arg == b"secantus" or arg.endswith(names) for arg in cmdline)
    return is_server and str(storage).encode() in cmdline


class EmbeddedMongo:
    """Start (or join), and stop (or leave), the SecantusDB server whose data lives in `storage`."""

    def __init__(
        self,
        storage: Path,
        port: int,
        *,
        host: str = "127.0.0.1",
        log_level: str = "WARNING",
        server: str = "auto",
        flags: tuple[str, ...] = SERVER_FLAGS,
        env: dict[str, str] = SERVER_ENV,
    ):
        self.command = find_server(server)
        self.flags = flags  # the server's own flags (scripts/bench_import.py --server-flags measures others)
        self.env = env  # and environment variables (--server-env)
        self.storage = storage
        self.host = host
        self.port = port
        self.log_level = log_level if log_level in {"DEBUG", "INFO", "WARNING", "ERROR"} else "WARNING"
        self.process: subprocess.Popen[bytes] | None = None  # the server, when this process started it
        self.pid: int | None = None  # the server's pid, started here or joined
        self.joined = False

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?directConnection=true"

    @property
    def name(self) -> str:
        # by what runs, not by the file name: EMBEDDED_DB_SERVER may be the path of a binary named otherwise
        return "Python server" if self.command[1:] == ["-m", "secantus"] else RUST_SERVER

    def _sibling(self, suffix: str) -> Path:
        return self.storage.parent / f"{self.storage.name}.{suffix}"

    @property
    def _pidfile(self) -> Path:
        return self._sibling("pid")

    @property
    def _logfile(self) -> Path:
        return self._sibling("log")

    def start(self) -> str:
        """Join the live server of this data folder, or start one; return its URI once it answers ping."""
        self.storage.mkdir(parents=True, exist_ok=True)
        with locked(self._sibling("lock")):
            users = Users(self._sibling("users"))
            found = self._recorded_server()
            if found is not None and (others := users.others()):
                return self._join(users, *found, others)
            if found is not None:
                self._stop_leftover(found[0])
            self._pidfile.unlink(missing_ok=True)
            self._spawn()
            users.add()
            self._pidfile.write_text(json.dumps({"pid": self.pid, "port": self.port}))
        self._start_watchdog()
        log.info(
            "embedded SecantusDB (%s) ready: %s (data in %s; mongosh: npx mongosh '%s')",
            self.name,
            self.uri,
            self.storage,
            self.uri,
        )
        return self.uri

    def _join(self, users: Users, pid: int, port: int, others: list[int]) -> str:
        """Use the server another live process of ours runs on this data; never stop it."""
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers(self.host, port):
            if time.monotonic() > deadline or not pid_alive(pid):
                raise RuntimeError(
                    f"the embedded database of {self.storage} (pid {pid}, used by pid(s) {others}) does not answer "
                    f"on port {port}; it is left alone because a live process uses it"
                )
            time.sleep(0.2)
        self.pid, self.port, self.joined = pid, port, True
        users.add()
        log.info(
            "using the embedded database of this data folder (pid %d, also used by pid(s) %s): %s",
            pid,
            others,
            self.uri,
        )
        return self.uri

    def _spawn(self) -> None:
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
            *self.flags,
        ]
        # A session of its own: a terminal's Ctrl-C (sent to the whole foreground group) is the app's to handle;
        # the database must stay up while the app cancels and checkpoints.
        with self._logfile.open("ab") as out:
            self.process = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        self.pid = self.process.pid
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._logfile.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded database exited with {self.process.returncode}:\n{tail}")
            if _answers(self.host, self.port):
                return
            time.sleep(0.2)
        terminate(self.process.pid)
        raise RuntimeError(f"embedded database did not answer ping within {START_TIMEOUT:.0f}s")

    def _recorded_server(self) -> tuple[int, int] | None:
        """(pid, port) from the pidfile when that process is alive and is our server on this data."""
        try:
            recorded = json.loads(self._pidfile.read_text())
            pid, port = int(recorded["pid"]), int(recorded["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return (pid, port) if pid_alive(pid) and _is_our_server(pid, self.storage, self.command[-1]) else None

    def _stop_leftover(self, pid: int) -> None:
        """A server no live process of ours uses (its users crashed): it holds the WiredTiger lock on our data."""
        log.warning("stopping an embedded database left over by an earlier run (pid %d)", pid)
        terminate(pid)

    def _start_watchdog(self) -> None:
        """A small process that stops the server once every user is gone without stopping it (kill -9)."""
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "app.sharing", "watch", str(self.storage), str(self.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=watchdog.wait, name="db-watchdog-reaper", daemon=True).start()

    def stop(self) -> None:
        """Leave the server; stop it cleanly (SIGTERM lets WiredTiger checkpoint) if no other live user is left."""
        if self.pid is None:
            return
        with locked(self._sibling("lock")):
            users = Users(self._sibling("users"))
            users.remove()
            if others := users.others():
                log.info("embedded database left running for pid(s) %s", ", ".join(map(str, others)))
                self.pid = None
                return
            started = time.monotonic()
            terminate(self.pid)
            self._reap()
            self._pidfile.unlink(missing_ok=True)
        log.info("embedded database stopped in %.1fs", time.monotonic() - started)
        self.pid = None

    def _reap(self) -> None:
        if self.process is not None and self.process.poll() is None and not pid_alive(self.process.pid):
            self.process.wait()  # our child, already gone: only the zombie is left

    def __enter__(self) -> EmbeddedMongo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _answers(host: str, port: int) -> bool:
    client: MongoClient[dict[str, Any]]
    with MongoClient(
        f"mongodb://{host}:{port}/?directConnection=true", serverSelectionTimeoutMS=500, connectTimeoutMS=500
    ) as client:
        try:
            client.admin.command("ping")
        except PyMongoError:
            return False
    return True
