"""`python -m app serve` in subprocesses (tests/system): apps started and killed, their imports started, watched
and stepped with the database held still."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.embedded import EmbeddedMongo, free_port
from tests.helpers.gates import wait_until
from tests.helpers.processes import held
from tests.helpers.settings import SETTINGS_ENV

START_TIMEOUT = 60.0
IMPORT_TIMEOUT = 90.0
LEASE_SECONDS = 3.0
BATCH_SIZE = 100
STEP_SECONDS = 0.005  # how long step_until lets the database run between two looks at an import (a few writes)
INSERT_COUNTERS = ("rowsProcessed", "rowsInserted", "rowsDuplicate", "rowsInvalid")


@dataclass
class App:
    """One `python -m app serve` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10)

    def progress(self) -> dict[str, Any]:
        response = self.get("/import/progress")
        assert response.status_code == 200, response.text
        return response.json()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- {self.log.name} ---\n{self.tail()}")


@dataclass
class Apps:
    """Starts apps for one test (same database unless told otherwise) and kills whatever is left at the end."""

    folder: Path
    base_env: dict[str, str]
    started: list[App] = field(default_factory=list)

    def start(self, *, wait: bool = True, **env: str) -> App:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
        environ |= {**self.base_env, "HOST": "127.0.0.1", "PORT": str(port), **env}
        log = self.folder / f"app-{len(self.started)}.log"
        with log.open("wb") as out:
            # a session of its own: the parser processes it forks can be found (and killed) by its id later
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=environ,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        app = App(process, f"http://127.0.0.1:{port}", log, environ)
        self.started.append(app)
        if wait:
            wait_until(lambda: _healthy(app), START_TIMEOUT, app, "GET /health was not 200")
        return app

    def close(self) -> None:
        """Kill every app and what it left behind: a killed app's parser pool (forkserver, workers, resource
        tracker) outlives it, blocked forever on its queue."""
        for app in self.started:
            if app.process.poll() is None:
                app.process.kill()
            app.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.process.pid, signal.SIGKILL)


def _healthy(app: App) -> bool:
    if not app.alive():
        app.fail(f"app exited with {app.process.returncode} before it was healthy")
    try:
        return app.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def app_env(server: EmbeddedMongo, folder: Path, database: str) -> dict[str, str]:
    (folder / "imports").mkdir(parents=True, exist_ok=True)
    return {
        "MONGODB_URI": server.uri,
        "MONGODB_DB": database,
        "IMPORT_DIR": str(folder / "imports"),
        "DATA_DIR": str(folder / "data"),
        "IMPORT_LEASE_SECONDS": str(LEASE_SECONDS),
        "IMPORT_CHECKPOINT_SECONDS": "0.2",
        "IMPORT_BLOCK_BYTES": "65536",
        # Two blocks in flight: they still finish out of order, but the watermark moves by at most two blocks
        # (about 6 % of the hostile file) at once, so a test stepping the database (step_until) sees each point.
        "IMPORT_BLOCKS_IN_FLIGHT": "2",
        "IMPORT_RETRY_SECONDS": "60",
        "LOG_LEVEL": "INFO",
    }


def start_import(app: App, file_name: str, **options: Any) -> dict[str, Any]:
    response = app.post("/import/sync", {"filePath": file_name, "batchSize": BATCH_SIZE, **options})
    assert response.status_code == 202, response.text
    return response.json()


def wait_progress(
    app: App, predicate: Callable[[dict[str, Any]], bool], timeout: float = IMPORT_TIMEOUT, what: str = "progress"
) -> dict[str, Any]:
    """The first /import/progress answer that satisfies `predicate`; the job must not end in between."""

    def check() -> dict[str, Any] | None:
        progress = app.progress()
        if predicate(progress):
            return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        return None

    return wait_until(check, timeout, app, what)


def step_until(
    app: App,
    server: EmbeddedMongo,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    then: Callable[[], None] | None = None,
    timeout: float = IMPORT_TIMEOUT,
) -> dict[str, Any]:
    """The owner's /import/progress (served from its memory) looked at with the database held still, and the
    database let run for STEP_SECONDS between looks: however fast the database, the import stops at each look
    and advances about one slice between two, so the test sees it pass `predicate` while still RUNNING. `then`
    runs while the database is still held (kill -9 the app, say), then the database goes on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with held(server):
            progress = app.progress()
            if predicate(progress):
                if then is not None:
                    then()
                return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        time.sleep(STEP_SECONDS)
    app.fail(f"{what} not reached within {timeout:.0f}s")
    raise AssertionError(what)


def wait_completed(app: App, timeout: float = IMPORT_TIMEOUT) -> dict[str, Any]:
    return wait_progress(app, lambda p: p["status"] == "COMPLETED", timeout, "COMPLETED")


def fraction(progress: dict[str, Any]) -> float:
    return progress["bytesRead"] / progress["fileSize"] if progress["fileSize"] else 0.0


def terminate(app: App, timeout: float) -> int:
    """SIGTERM; the exit code (`timeout`: a hang turned into a failure)."""
    app.process.send_signal(signal.SIGTERM)
    try:
        return app.process.wait(timeout)
    except subprocess.TimeoutExpired:
        app.fail(f"app did not exit within {timeout:.0f}s of SIGTERM")
        raise
