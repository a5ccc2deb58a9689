"""`python -m app import` (and the CLI's other commands) in a subprocess (tests/system)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from app.embedded import EmbeddedMongo

if TYPE_CHECKING:
    from pymongo.database import Database

RUN_TIMEOUT = 60.0
# rich reads these; the tests look at what a user sees in a log file (no terminal, no colours)
TERMINAL_ENV = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM"}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit code {self.code}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


@dataclass
class Cli:
    """One test's database (fresh, on the session server), folder and environment."""

    folder: Path
    env: dict[str, str]
    db: Database[dict[str, Any]]
    server: EmbeddedMongo
    started: list[subprocess.Popen[bytes]]

    def popen(self, *args: str, stdout: Any, stderr: Any, command: str = "import") -> subprocess.Popen[bytes]:
        # a session of its own: a signal to the process group is what Ctrl-C in a terminal sends, and whatever
        # the CLI leaves behind (forkserver, parser workers) can be found by its id
        process = subprocess.Popen(
            [sys.executable, "-m", "app", command, *args],
            env=self.env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def run(self, *args: str, command: str = "import") -> Run:
        process = self.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, command=command)
        try:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(
                f"`python -m app {command} {' '.join(args)}` did not end within {RUN_TIMEOUT:.0f}s\n"
                f"{Run(-1, out.decode(errors='replace'), err.decode(errors='replace'))}"
            )
        return Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.db.import_state.find({}))

    def only_job(self) -> dict[str, Any]:
        jobs = self.jobs()
        assert len(jobs) == 1, jobs
        return jobs[0]

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def assert_clean(run: Run) -> None:
    assert "Traceback" not in run.out + run.err, str(run)
