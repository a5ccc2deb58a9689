"""Cancel, resume and live progress with database writes held back by the test (a Gate around the real sink):
a cancel must not wait for a slow write, resume takes a named job, and counters move batch by batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.answers import assert_problem, start, wait_done
from tests.helpers.csvfiles import HEADER, good_row, write
from tests.helpers.gates import Gate, gate_sinks, until

ROWS = 3000  # one block (4 MiB by default), thirty batches of 100


@pytest.fixture
def gates(app: Litestar, client: AsyncTestClient, monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    """Every job this test starts writes through a closed Gate (appended here in start order)."""
    return gate_sinks(app.state.services, monkeypatch)


def csv_file(folder: Path, name: str, rows: int = ROWS, first: int = 0) -> Path:
    return write(folder / name, [HEADER, *(good_row(i) for i in range(first, first + rows))])


async def held_after_one_batch(client: AsyncTestClient, gate: Gate) -> None:
    """One batch written, the next write waiting at the gate (it never goes through unless opened)."""
    gate.open(1)
    await gate.until(lambda: gate.written == 1 and gate.waiting >= 1)


async def cancelled(client: AsyncTestClient) -> dict[str, Any]:
    response = await client.post("/import/cancel")
    assert response.status_code == 202, response.text
    progress = await wait_done(client)
    assert progress["status"] == "CANCELLED", progress
    return progress


async def test_cancel_ends_the_job_while_a_write_hangs_and_the_resume_is_exact(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    job = await start(client, csv_file(import_dir, "hang.csv").name, batchSize=100)
    gate = gates[0]
    await held_after_one_batch(client, gate)

    # the API answers while the import runs (and its write hangs)
    assert (await client.get("/customers", params={"limit": 5})).status_code == 200
    assert (await client.get("/health")).status_code == 200
    progress = await cancelled(client)  # with a write that never ends: the cancel does not wait for it
    assert_problem(await client.post("/import/cancel"), 409, "Conflict")  # nothing runs any more
    assert gate.written == 1 and gate.waiting == 0  # the held write was abandoned, not let through
    # the block was not finished: nothing is accounted, the 100 rows written are counted again on resume
    assert (progress["rowsProcessed"], progress["bytesRead"]) == (0, len(HEADER) + 1), progress
    assert await db.customers.count_documents({}) == 100

    assert (await client.post("/import/resume", json={"jobId": job["jobId"]})).status_code == 202
    gates[1].open_all()
    final = await wait_done(client)
    assert final["status"] == "COMPLETED" and final["attempts"] == 2, final
    assert (final["rowsProcessed"], final["rowsInserted"], final["rowsDuplicate"]) == (ROWS, ROWS, 0)
    assert await db.customers.count_documents({}) == ROWS


async def test_resume_while_a_job_runs_is_409_naming_the_running_job(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    job = await start(client, csv_file(import_dir, "running.csv").name, batchSize=100)
    for body in (None, {"jobId": job["jobId"]}):
        response = await client.post("/import/resume", json=body)
        assert assert_problem(response, 409, "Conflict")["jobId"] == job["jobId"]
    gates[0].open_all()
    assert (await wait_done(client))["status"] == "COMPLETED"


async def test_a_named_cancelled_job_resumes_after_a_later_job_completed(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    first = await start(client, csv_file(import_dir, "first.csv").name, batchSize=100)
    await held_after_one_batch(client, gates[0])
    await cancelled(client)
    later = await start(client, csv_file(import_dir, "later.csv", rows=50, first=ROWS).name)
    gates[1].open_all()
    assert (await wait_done(client))["status"] == "COMPLETED"

    latest = await client.post("/import/resume")  # the latest job completed: nothing to resume by default
    detail = assert_problem(latest, 404)["detail"]
    assert f"latest import job {later['jobId']} is COMPLETED" in detail and '"jobId"' in detail, detail
    assert "no failed or cancelled" not in detail  # there is one: `first`, which a named resume takes below
    completed = await client.post("/import/resume", json={"jobId": later["jobId"]})
    assert completed.status_code == 409 and "COMPLETED" in completed.json()["detail"], completed.text
    unknown = await client.post("/import/resume", json={"jobId": "no-such-job"})
    assert unknown.status_code == 404, unknown.text

    response = await client.post("/import/resume", json={"jobId": first["jobId"]})
    assert response.status_code == 202, response.text
    assert response.json()["jobId"] == first["jobId"]
    gates[2].open_all()
    final = await wait_done(client)
    assert final["jobId"] == first["jobId"] and final["status"] == "COMPLETED", final
    assert (final["rowsInserted"], final["rowsDuplicate"]) == (ROWS, 0)
    assert await db.customers.count_documents({}) == ROWS + 50


async def test_resume_with_no_job_at_all_says_so(client: AsyncTestClient, db: AsyncDatabase) -> None:
    assert "no import has run yet" in assert_problem(await client.post("/import/resume"), 404)["detail"]


@pytest.mark.parametrize("after", ["running", "latest"])
async def test_a_resume_that_loses_the_race_to_another_is_409_naming_the_job(
    app: Litestar,
    client: AsyncTestClient,
    db: AsyncDatabase,
    import_dir: Path,
    gates: list[Gate],
    monkeypatch: pytest.MonkeyPatch,
    after: str,
) -> None:
    """Three resumes at once: one reopens the job between another's checks. Right after that one's look for a
    RUNNING job (it saw none, then the latest job is RUNNING) or after it read the latest job (CANCELLED, but
    RUNNING when it reopens it), the loser is a 409 naming the job, never a 404 "nothing to resume"."""
    job = await start(client, csv_file(import_dir, "raced.csv").name, batchSize=100)
    await held_after_one_batch(client, gates[0])
    await cancelled(client)
    store = app.state.services.imports.store
    real, raced = getattr(store, after), []

    async def then_another_resume(*args: Any) -> Any:
        seen = await real(*args)
        if not raced:
            raced.append(await store.reopen(job["jobId"], "another-instance"))
        return seen

    monkeypatch.setattr(store, after, then_another_resume)
    response = await client.post("/import/resume")
    assert assert_problem(response, 409, "Conflict")["jobId"] == job["jobId"]
    assert response.json()["detail"] == f"import job {job['jobId']} is running"
    assert await db.import_state.count_documents({"status": "RUNNING", "owner": "another-instance"}) == 1
    assert len(gates) == 1  # this app started nothing
    # the other instance is gone: no lease, no owner, so no watcher takes the job over after this test
    await db.import_state.update_one({"_id": job["jobId"]}, {"$set": {"status": "CANCELLED", "owner": None}})


async def test_a_named_job_whose_file_changed_is_400(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    path = csv_file(import_dir, "changing.csv")
    job = await start(client, path.name, batchSize=100)
    await held_after_one_batch(client, gates[0])
    await cancelled(client)
    with path.open("a") as file:
        file.write(good_row(ROWS) + "\n")
    response = await client.post("/import/resume", json={"jobId": job["jobId"]})
    assert response.status_code == 400, response.text
    assert "changed" in response.json()["detail"]
    assert (await db.import_state.find_one({"_id": job["jobId"]}))["status"] == "CANCELLED"


@pytest.mark.parametrize("body", [{"jobId": 5}, {"jobId": ""}, {"job": "x"}, [1]])
async def test_bad_resume_bodies_are_400(client: AsyncTestClient, db: AsyncDatabase, body: object) -> None:
    response = await client.post("/import/resume", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_counters_move_batch_by_batch_before_the_block_is_accounted(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    job = await start(client, csv_file(import_dir, "live.csv").name, batchSize=100)
    gate = gates[0]
    await held_after_one_batch(client, gate)
    progress = (await client.get("/import/progress")).json()
    assert (progress["rowsProcessed"], progress["rowsInserted"]) == (100, 100), progress
    # import_state holds only what the watermark covers (exact on resume); the API shows what is written
    stored = await db.import_state.find_one({"_id": job["jobId"]})
    assert (stored["rowsProcessed"], stored["bytesRead"]) == (0, len(HEADER) + 1)

    gate.open(2)
    await gate.until(lambda: gate.written == 3)
    assert (await client.get("/import/progress")).json()["rowsInserted"] == 300

    gate.open_all()
    final = await wait_done(client)
    assert (final["status"], final["rowsInserted"]) == ("COMPLETED", ROWS)
    stored = await db.import_state.find_one({"_id": job["jobId"]})
    # the final rate is the average over the time the job ran, which never exceeds the time since it started
    assert stored["rateRowsPerSec"] == round(ROWS / stored["activeSeconds"], 1) == final["rateRowsPerSec"]
    assert final["activeSec"] <= final["elapsedSec"] + 0.1 and final["etaSec"] is None


async def test_a_job_started_just_as_the_last_one_ends_stays_the_one_the_app_runs(
    app: Litestar, client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job's end is in import_state before its task has returned, and a start in that moment succeeds: the new
    job must stay the app's current one (its live progress, its cancel, its shutdown), not be dropped when the
    previous task returns."""
    imports = app.state.services.imports
    real, moment = imports.store.finish, {"ended": False, "go": False}

    async def finish(state: Any, status: Any, error: str | None = None) -> bool:
        done = await real(state, status, error)
        moment["ended"] = True
        await until(lambda: moment["go"])
        return done

    monkeypatch.setattr(imports.store, "finish", finish)
    await start(client, csv_file(import_dir, "ends.csv", rows=10).name)
    await until(lambda: moment["ended"])
    ending = imports.current.task
    gates = gate_sinks(app.state.services, monkeypatch)
    second = await start(client, csv_file(import_dir, "next.csv", rows=10, first=100).name)
    moment["go"] = True
    await until(ending.done)
    assert imports.current is not None and imports.current.state.job_id == second["jobId"]
    assert (await client.post("/import/cancel")).status_code == 202  # reaches the job through the app
    progress = await wait_done(client)
    assert (progress["jobId"], progress["status"]) == (second["jobId"], "CANCELLED"), progress
    assert gates[0].written == 0
