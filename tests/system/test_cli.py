"""`python -m app import FILE` as a real subprocess against the session's SecantusDB server: exit codes, what it
prints, and what it leaves in import_state and customers (read with pymongo) — the same rules as the API."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pymongo import MongoClient

from app.embedded import EmbeddedMongo, free_port
from app.imports.job.jobs import JobState
from app.imports.model import Status
from tests.helpers.answers import COUNTERS
from tests.helpers.cli import RUN_TIMEOUT, Cli, Run, assert_clean
from tests.helpers.csvfiles import HEADER
from tests.helpers.csvfiles import long_row as _row
from tests.helpers.processes import alive

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

SMALL = 300
INVALID = ["9001,C9001,too,few", _row(9002, "C9002", email="ann@@example.com")]


def cid(i: int) -> str:
    return f"C{i:07d}"


def write_csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def counters(**values: int) -> dict[str, int]:
    result = dict.fromkeys(COUNTERS, 0) | values
    result["rowsProcessed"] = sum(v for k, v in result.items() if k != "rowsProcessed")
    return result


def small_rows() -> list[str]:
    """SMALL valid rows, an exact copy of row 5 (a duplicate whatever row is written first) and two invalid
    rows, spread through the file."""
    rows = [_row(i, cid(i)) for i in range(1, SMALL + 1)]
    rows.insert(100, INVALID[0])
    rows.insert(200, _row(5, cid(5)))
    rows.insert(250, INVALID[1])
    return rows


SMALL_EXPECTED = counters(rowsInserted=SMALL, rowsDuplicate=1, rowsInvalid=2)


def assert_completed(
    cli: Cli, file: Path, expected: dict[str, int], *, mode: str = "insert", dry_run: bool = False
) -> dict[str, Any]:
    """The latest job: COMPLETED, of this file, with these counters."""
    job = cli.db.import_state.find_one({}, sort=[("startedAt", -1)])
    assert job is not None
    assert job["status"] == "COMPLETED", job
    assert job["error"] is None and job["owner"] is None, job
    assert (job["mode"], job["dryRun"], job["filePath"]) == (mode, dry_run, str(file.resolve())), job
    assert job["bytesRead"] == job["fileSize"] == file.stat().st_size, job
    assert {k: job[k] for k in COUNTERS} == expected
    return job


def summary(run: Run, status: str) -> str:
    """The line the CLI ends with: `STATUS: counters in N s`."""
    lines = [line for line in run.out.splitlines() if line.startswith(f"{status}: ")]
    assert len(lines) == 1, str(run)
    return lines[0]


# ---- 1. an import -------------------------------------------------------------------------------------


def test_import_completes_with_exact_counters(cli: Cli) -> None:
    file = write_csv(cli.folder / "imports" / "customers.csv", small_rows())
    cli.env["API_TOKEN"] = "an HTTP token: the CLI talks to the database, not to the API, and needs none"

    run = cli.run("imports/customers.csv", "--batch-size", "50")  # relative to the working directory

    assert run.code == 0, str(run)
    assert_clean(run)
    job = assert_completed(cli, file, SMALL_EXPECTED)
    assert cli.jobs() == [job]
    assert job["batchSize"] == 50
    assert f"job {job['_id']}: {file.resolve()} ({file.stat().st_size:,} bytes)" in run.out, str(run)
    line = summary(run, "COMPLETED")
    assert f"{SMALL + 3:,} rows" in line and f"inserted {SMALL}" in line, line
    assert "duplicate 1" in line and "invalid 2" in line, line

    assert cli.db.customers.count_documents({}) == SMALL
    assert cli.db.customers.count_documents({"importJobId": job["_id"]}) == SMALL
    ann = cli.db.customers.find_one({"_id": cid(42)})
    assert ann is not None and (ann["firstName"], ann["email"]) == ("Ann42", "ann42@example.com"), ann
    rejected = sorted(doc["line"] for doc in cli.db.import_errors.find({"jobId": job["_id"]}))
    assert rejected == [102, 252], rejected  # header is line 1; where small_rows() put the invalid rows


# ---- 2. a re-sync -------------------------------------------------------------------------------------


NEW = 40
HAND_EDITED = {9: "changed in v2", 10: "same in v2"}


def test_upsert_updates_inserts_and_protects_hand_edits(cli: Cli) -> None:
    v1 = write_csv(cli.folder / "imports" / "v1.csv", small_rows())
    first = cli.run(str(v1))
    assert first.code == 0, str(first)
    for i in HAND_EDITED:  # what PATCH /customers/{id} does
        cli.db.customers.update_one({"_id": cid(i)}, {"$set": {"firstName": f"Hand{i}", "handEdited": True}})
    before = {doc["_id"]: doc for doc in cli.db.customers.find({})}

    # every third row changed, NEW rows, two invalid rows; row 9 changes, row 10 does not
    rows = [_row(i, cid(i), about=f"v2 row {i}" if i % 3 == 0 else None) for i in range(1, SMALL + NEW + 1)]
    rows[150:150] = INVALID
    v2 = write_csv(cli.folder / "imports" / "v2.csv", rows)
    changed = SMALL // 3
    expected = counters(
        rowsInserted=NEW,
        rowsUpdated=changed - 1,
        rowsUnchanged=SMALL - changed - 1,
        rowsProtected=len(HAND_EDITED),
        rowsInvalid=2,
    )

    run = cli.run(str(v2), "--mode", "upsert")

    assert run.code == 0, str(run)
    assert_clean(run)
    job = assert_completed(cli, v2, expected, mode="upsert")
    line = summary(run, "COMPLETED")
    for text in (
        f"inserted {NEW}",
        f"updated {changed - 1}",
        f"unchanged {SMALL - changed - 1}",
        f"protected {len(HAND_EDITED)}",
        "invalid 2",
    ):
        assert text in line, line

    after = {doc["_id"]: doc for doc in cli.db.customers.find({})}
    assert len(after) == SMALL + NEW
    for i in HAND_EDITED:  # not overwritten, whether the file changed or not
        assert after[cid(i)] == before[cid(i)]
        assert after[cid(i)]["firstName"] == f"Hand{i}"
    assert after[cid(6)]["about"] == "v2 row 6" and after[cid(6)]["updatedAt"] > before[cid(6)]["updatedAt"]
    assert after[cid(7)] == before[cid(7)]  # unchanged: not written at all
    assert after[cid(SMALL + 1)]["lastImport"]["jobId"] == job["_id"]


# ---- 3. a dry run -------------------------------------------------------------------------------------


def test_dry_run_writes_no_customer(cli: Cli) -> None:
    file = write_csv(cli.folder / "imports" / "customers.csv", small_rows())

    run = cli.run(str(file), "--dry-run")

    assert run.code == 0, str(run)
    assert_clean(run)
    assert "[dry run]" in run.out, str(run)
    # a dry run does not look duplicates up: every valid row counts as would-be-inserted
    assert_completed(cli, file, counters(rowsInserted=SMALL + 1, rowsInvalid=2), dry_run=True)
    assert "COMPLETED" in summary(run, "COMPLETED")
    assert cli.db.customers.count_documents({}) == 0


# ---- 4. refused before any job ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "not a readable file"),
        ("Index,First Name,Email\n1,Ann,ann@example.com\n", "no customer id column"),
    ],
    ids=["missing file", "no customer id column"],
)
def test_unusable_file_fails_with_a_one_line_reason(cli: Cli, content: str | None, reason: str) -> None:
    file = cli.folder / "imports" / "customers.csv"
    if content is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(content)

    run = cli.run(str(file))

    assert run.code != 0, str(run)
    assert_clean(run)
    assert run.out == "", str(run)  # the reason is an error: stderr
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and reason in lines[0] and "customers.csv" in lines[0], str(run)
    assert cli.jobs() == []
    assert cli.db.customers.count_documents({}) == 0


# ---- 5. refused while a job runs ----------------------------------------------------------------------


def test_refused_while_another_job_runs(cli: Cli) -> None:
    file = write_csv(cli.folder / "imports" / "customers.csv", small_rows())
    # a job another instance runs right now (fresh heartbeat), as that instance stores it
    other = JobState(
        job_id=uuid.uuid4().hex,
        status=Status.RUNNING,
        file_path="/elsewhere/other.csv",
        file_size=10**9,
        file_identity={"size": 10**9},
        mode="insert",
        batch_size=1000,
        bytes_read=4096,
        owner="other-host:1:abcdef01",
        heartbeat_at=dt.datetime.now(dt.UTC),
    )
    cli.db.import_state.insert_one(other.to_doc())
    stored = cli.db.import_state.find_one({"_id": other.job_id})

    run = cli.run(str(file))

    assert run.code != 0, str(run)
    assert_clean(run)
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"refused: import job {other.job_id} is running", str(run)
    assert cli.jobs() == [stored]  # no second job, the running one untouched
    assert cli.db.customers.count_documents({}) == 0


# ---- 6. Ctrl-C ----------------------------------------------------------------------------------------


BIG = 20_000


def write_big(path: Path) -> dict[str, int]:
    """BIG rows (~4 MB, several seconds at batch size 100 and one writer) with duplicates and invalid rows; the
    counters an uninterrupted import of it has."""
    rows: list[str] = []
    ids: set[str] = set()
    invalid = duplicate = 0
    for i in range(1, BIG + 1):
        if i % 500 == 250:
            rows.append(f"{i},{cid(i)},too,few")
            invalid += 1
            continue
        customer = cid(i - 1) if i % 700 == 350 else cid(i)  # the row before: a duplicate
        duplicate += customer in ids
        ids.add(customer)
        rows.append(_row(i, customer))
    write_csv(path, rows)
    return counters(rowsInserted=len(ids), rowsDuplicate=duplicate, rowsInvalid=invalid)


def frozen_when(process: subprocess.Popen[bytes], condition: Callable[[], Any], describe: Callable[[], str]) -> Any:
    """Step the CLI's process group (parser workers included): frozen (SIGSTOP) while `condition` is looked at,
    let run for a short slice between looks. Returns the first truthy result with the group still frozen: however
    fast the database, the import moves about one slice between two looks, so the test catches it mid-way and it
    stays there until the test sends SIGCONT."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        os.killpg(process.pid, signal.SIGSTOP)
        if found := condition():
            return found
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(0.05)
    pytest.fail(f"the CLI's job was not seen under way (exit {process.poll()})\n{describe()}")


def test_ctrl_c_cancels_and_the_job_resumes_to_the_uninterrupted_counters(cli: Cli) -> None:
    file = cli.folder / "imports" / "big.csv"
    expected = write_big(file)
    # a lease longer than the test: the CLI is frozen for a while below, and must not look dead meanwhile
    cli.env |= {"IMPORT_WRITERS": "1", "IMPORT_BLOCK_BYTES": "65536", "IMPORT_LEASE_SECONDS": "600"}
    out, err = cli.folder / "cli.out", cli.folder / "cli.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = cli.popen(str(file), "--batch-size", "100", stdout=stdout, stderr=stderr)

    def outputs() -> tuple[str, str]:
        return out.read_text(errors="replace"), err.read_text(errors="replace")

    def job_in_progress() -> dict[str, Any] | None:
        job = cli.db.import_state.find_one({"status": "RUNNING"})
        return job if job is not None and job["rowsProcessed"] > 0 else None

    running = frozen_when(process, job_in_progress, lambda: str(Run(process.returncode, *outputs())))

    # a second import meanwhile is refused and names the running job
    second = cli.run(str(write_csv(cli.folder / "imports" / "small.csv", small_rows())))
    assert second.code != 0 and f"import job {running['_id']} is running" in second.err, str(second)

    # Ctrl-C in a terminal: SIGINT to the whole foreground process group, parser workers included
    os.killpg(process.pid, signal.SIGINT)
    os.killpg(process.pid, signal.SIGCONT)
    interrupted = time.monotonic()
    try:
        code = process.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the CLI did not exit within 30 s of SIGINT\n{Run(-1, *outputs())}")
    run = Run(code, *outputs())

    assert run.code == 130, str(run)
    assert_clean(run)
    assert "resume" in run.out, str(run)
    summary(run, "CANCELLED")
    cancelled = cli.only_job()
    assert cancelled["_id"] == running["_id"]
    assert (cancelled["status"], cancelled["owner"], cancelled["error"]) == ("CANCELLED", None, None), cancelled
    assert 0 < running["bytesRead"] <= cancelled["bytesRead"] < cancelled["fileSize"], cancelled  # progress kept
    assert 0 < cancelled["rowsProcessed"] < expected["rowsProcessed"], cancelled
    print(
        f"\nCLI exited {time.monotonic() - interrupted:.1f}s after SIGINT, job cancelled at "
        f"{cancelled['bytesRead'] / cancelled['fileSize']:.0%}"
    )

    assert "cancelling…" in run.err, str(run)  # Ctrl-C is acknowledged at once
    assert f"python -m app import --resume {running['_id']}" in run.out, str(run)

    # resumed from the command line from the watermark: it ends exactly like an uninterrupted import
    resumed = cli.run("--resume", running["_id"])
    assert resumed.code == 0, str(resumed)
    assert_clean(resumed)
    assert f"job {running['_id']}: {file.resolve()}" in resumed.out and "resumed at byte" in resumed.out, str(resumed)
    final = cli.only_job()
    assert final["status"] == "COMPLETED" and final["attempts"] == 2 and final["bytesRead"] == final["fileSize"], final
    assert {k: final[k] for k in COUNTERS} == expected
    assert cli.db.customers.count_documents({}) == expected["rowsInserted"]
    assert cli.db.import_errors.count_documents({"jobId": running["_id"]}) == expected["rowsInvalid"]
    nothing = cli.run("--resume")  # the latest job completed: nothing left to resume
    assert nothing.code == 2 and f"the latest import job {running['_id']} is COMPLETED" in nothing.err, str(nothing)
    assert "--resume JOB_ID" in nothing.err, str(nothing)


@pytest.mark.parametrize("args", [(), ("imports/x.csv", "--resume")], ids=["neither", "both"])
def test_import_takes_a_file_or_resume_not_both(cli: Cli, args: tuple[str, ...]) -> None:
    write_csv(cli.folder / "imports" / "x.csv", small_rows())
    run = cli.run(*args)
    assert run.code == 2 and "give a FILE to import, or --resume" in run.err, str(run)
    assert cli.jobs() == []


@pytest.mark.parametrize("value", ["0", "10001", "-5", "many"])
def test_a_batch_size_out_of_range_is_one_line_naming_the_range(cli: Cli, value: str) -> None:
    """argparse's choices=range(1, 10001) printed every allowed value: a 59 KB error."""
    write_csv(cli.folder / "imports" / "x.csv", small_rows())
    run = cli.run("imports/x.csv", "--batch-size", value)
    assert run.code == 2 and run.out == "", str(run)
    error = run.err.strip().splitlines()[-1]
    assert "--batch-size" in error and "1..10000" in error and len(run.err) < 1000, str(run)
    assert cli.jobs() == []


def test_log_lines_print_through_the_progress_bar_console(cli: Cli) -> None:
    file = write_csv(cli.folder / "imports" / "logged.csv", small_rows())
    cli.env["LOG_LEVEL"] = "INFO"
    run = cli.run(str(file))
    assert run.code == 0, str(run)
    job = cli.only_job()
    # logged while the bar is drawn: printed by the bar's console (above it), not across it on stderr
    assert f"import {job['_id']} ended COMPLETED" in run.out, str(run)
    assert f"import {job['_id']} ended" not in run.err, str(run)


def test_ctrl_c_with_the_embedded_database_cancels_the_job(cli: Cli) -> None:
    file = cli.folder / "imports" / "big.csv"
    write_big(file)
    del cli.env["MONGODB_URI"]
    cli.env |= {
        "EMBEDDED_DB_PORT": str(free_port()),
        "IMPORT_WRITERS": "1",
        "IMPORT_BLOCK_BYTES": "65536",
        "IMPORT_RETRY_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    data = Path(cli.env["DATA_DIR"])
    out, err = cli.folder / "cli.out", cli.folder / "cli.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = cli.popen(str(file), "--batch-size", "100", stdout=stdout, stderr=stderr)

    def outputs() -> tuple[str, str]:
        return out.read_text(errors="replace"), err.read_text(errors="replace")

    def started() -> dict[str, Any] | None:
        try:
            server = json.loads((data / "db.pid").read_text())
        except (OSError, ValueError):
            return None
        with MongoClient(
            f"mongodb://127.0.0.1:{server['port']}/?directConnection=true", serverSelectionTimeoutMS=2000
        ) as client:
            job = client[cli.db.name].import_state.find_one({"status": "RUNNING"})
        return server if job is not None and job["rowsProcessed"] > 0 else None

    server = frozen_when(process, started, lambda: str(Run(process.returncode, *outputs())))
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal
    os.killpg(process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while process.poll() is None:
        # the CLI stops its database only after the job ended and it printed how
        if not alive(server["pid"]) and "CANCELLED:" not in out.read_text(errors="replace"):
            pytest.fail(f"the embedded database died while the job was being cancelled\n{Run(-1, *outputs())}")
        if time.monotonic() > deadline:
            pytest.fail(f"the CLI did not exit within 30 s of SIGINT\n{Run(-1, *outputs())}")
        time.sleep(0.05)
    run = Run(process.returncode, *outputs())
    assert run.code == 130, str(run)
    assert_clean(run)
    summary(run, "CANCELLED")
    assert not alive(server["pid"])  # stopped with the CLI

    with EmbeddedMongo(data / "db", free_port()) as embedded, MongoClient(embedded.uri) as client:
        job = client[cli.db.name].import_state.find_one({})
    assert job is not None and job["status"] == "CANCELLED", job
    assert 0 < job["bytesRead"] < job["fileSize"], job
