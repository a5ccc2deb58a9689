"""The README's five-minute tour (issue 23), read from README.md itself and run as written, in order, in a folder of
its own beside `python -m app serve` (what `make run` serves), with `.venv` and `scripts` linked in: each command
must exit 0 and do what the tour says it does. `localhost:8000` becomes the served app's port, and the commands
get MONGODB_URI and MONGODB_DB of a fresh database on the test server; nothing else differs."""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.embedded import EmbeddedMongo
from tests.helpers.apps import IMPORT_TIMEOUT, App, Apps
from tests.helpers.cli import TERMINAL_ENV
from tests.helpers.gates import wait_until
from tests.helpers.paths import ROOT
from tests.helpers.settings import SETTINGS_ENV

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="subprocesses")]

TOUR = "## A five-minute tour"
ADDRESS = "localhost:8000"
EDITED = "Bce5E1299E3657E"  # the customer the tour edits: the first of the generated file (seed 42)
RUN_TIMEOUT = 120.0


def tour_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The lines of the tour's sh blocks, in order; a line continued with `\\` is one command."""
    text = readme.read_text(encoding="utf-8")
    start = text.find(f"\n{TOUR}\n")
    section = text[start : text.find("\n## ", start + 1)] if start >= 0 else ""
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    return [line for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@dataclass
class Tour:
    """One run of the tour: its folder, the served app, the environment its commands get."""

    folder: Path
    app: App
    env: dict[str, str]

    def run(self, command: str) -> str:
        served = command.replace(ADDRESS, self.app.url.removeprefix("http://").replace("127.0.0.1", "localhost"))
        done = subprocess.run(
            ["bash", "-c", served], cwd=self.folder, env=self.env, capture_output=True, text=True, timeout=RUN_TIMEOUT
        )
        assert done.returncode == 0, f"{command}\n--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        return done.stdout

    def job(self) -> dict[str, Any]:
        jobs = self.app.get("/import/jobs", limit=1).json()["items"]
        assert jobs, "no import job"
        return dict(jobs[0])


@pytest.fixture
def tour(mongo_server: EmbeddedMongo, tmp_path: Path) -> Iterator[Tour]:
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    database = {"MONGODB_URI": mongo_server.uri, "MONGODB_DB": f"tour_{uuid.uuid4().hex[:8]}"}
    apps = Apps(tmp_path, database | {"LOG_LEVEL": "WARNING"})
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV | TERMINAL_ENV} | database
    try:
        yield Tour(tmp_path, apps.start(), env)
    finally:
        apps.close()


def generated(tour: Tour, out: str) -> None:
    assert json.loads(out)["rows"] == 10_000
    assert (tour.folder / "data" / "imports" / "customers.csv").is_file()


def previewed(tour: Tour, out: str) -> None:
    rows = json.loads(out)["rows"]
    assert [(row["customer"]["customerId"], row["outcome"]) for row in rows[:1]] == [(EDITED, "insert")], out
    assert len(rows) == 3 and tour.app.progress()["status"] == "IDLE", "a preview starts no job"


def previewed_as_tables(tour: Tour, out: str) -> None:
    """Tables as wide as the terminal (80 columns here, no terminal): the column table and the rows' table."""
    assert re.search(r"Customer Id +│ customerId +│ recognised", out) and "First 3 rows" in out, out


def started(tour: Tour, out: str) -> None:
    assert json.loads(out)["status"] == "RUNNING", out


def watched(tour: Tour, out: str) -> None:
    assert json.loads(out)["status"] in ("RUNNING", "COMPLETED"), out
    progress = wait_until(lambda: (p := tour.app.progress())["status"] != "RUNNING" and p, IMPORT_TIMEOUT, tour.app)
    assert (progress["status"], progress["rowsInserted"], progress["rowsInvalid"]) == ("COMPLETED", 10_000, 0)


def imported_again(tour: Tour, out: str) -> None:
    job = tour.job()
    assert (job["status"], job["mode"], job["rowsDuplicate"], job["rowsInserted"]) == ("COMPLETED", "insert", 10_000, 0)


def paged(tour: Tour, out: str) -> None:
    assert len(json.loads(out)["items"]) == 2, out


def searched(tour: Tour, out: str) -> None:
    items = json.loads(out)["items"]
    assert EDITED in {item["customerId"] for item in items}, out
    assert all(item["country"].lower() == "new zealand" for item in items)


def edited(tour: Tour, out: str) -> None:
    customer = json.loads(out)
    assert (customer["customerId"], customer["city"], customer["handEdited"]) == (EDITED, "Lisbon", True), out


def exported_search(tour: Tour, out: str) -> None:
    [file] = tour.folder.glob("customers-*.csv")
    with file.open(newline="", encoding="utf-8") as rows:
        countries = {row["Country"] for row in csv.DictReader(rows)}
    assert countries == {"New Zealand"}, countries


def exported_all(tour: Tour, out: str) -> None:
    with (tour.folder / "customers-export.csv").open(newline="", encoding="utf-8") as rows:
        assert sum(1 for _ in csv.DictReader(rows)) == 10_000


def resynced(tour: Tour, out: str) -> None:
    job = tour.job()
    counters = {key: job[key] for key in ("status", "mode", "rowsProtected", "rowsUnchanged", "rowsUpdated")}
    assert counters == dict(status="COMPLETED", mode="upsert", rowsProtected=1, rowsUnchanged=9_999, rowsUpdated=0)


def still_edited(tour: Tour, out: str) -> None:
    assert json.loads(out)["city"] == "Lisbon", out


Check = Callable[[Tour, str], None]
# each command of the tour, by its start, and what it must have done; a command not listed here fails the test
CHECKS: list[tuple[str, Check]] = [
    (".venv/bin/python scripts/generate_customers.py ", generated),
    ("curl -X POST 'localhost:8000/import/preview?", previewed),
    (".venv/bin/python -m app preview data/imports/customers.csv", previewed_as_tables),
    ("curl -X POST localhost:8000/import/sync ", started),
    ("curl localhost:8000/import/progress", watched),
    (".venv/bin/python -m app import data/imports/customers.csv --mode upsert", resynced),
    (".venv/bin/python -m app import data/imports/customers.csv", imported_again),
    ("curl 'localhost:8000/customers?limit=", paged),
    ("curl 'localhost:8000/customers?q=", searched),
    (f"curl -X PATCH localhost:8000/customers/{EDITED} ", edited),
    ("curl -OJ 'localhost:8000/customers/export?", exported_search),
    (".venv/bin/python -m app export --out customers-export.csv", exported_all),
    (f"curl localhost:8000/customers/{EDITED}", still_edited),
]


def check_of(command: str) -> Check:
    return next(check for start, check in CHECKS if command.startswith(start))


def test_the_tour_shows_each_step_and_this_test_checks_each_command() -> None:
    commands = tour_commands()
    assert len(commands) >= len(CHECKS), commands
    unchecked = [command for command in commands if not any(command.startswith(start) for start, _ in CHECKS)]
    assert unchecked == [], "a tour command this test does not check: add it to CHECKS"
    assert {check_of(command) for command in commands} == {check for _, check in CHECKS}, "a step left the tour"


def test_the_tour_runs_as_written(tour: Tour) -> None:
    for command in tour_commands():
        check_of(command)(tour, tour.run(command))


def test_a_command_is_run_by_bash_as_written(tour: Tour) -> None:
    """The runner itself: quoting as a shell reads it, the address replaced, a failing command fails."""
    assert json.loads(tour.run(f"curl -s {shlex.quote(ADDRESS + '/health')}"))["database"] == "up"
    with pytest.raises(AssertionError, match="--- stderr ---"):
        tour.run("false")
