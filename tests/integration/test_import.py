"""Whole imports through the HTTP API into the real SecantusDB server."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.db import RUNNING_INDEX
from app.errors import ImportRunning
from app.imports.job.jobs import JobStore
from app.imports.model import Status
from app.settings import Settings
from tests.helpers.answers import assert_problem, start, wait_done
from tests.helpers.csvfiles import EXISTING, HEADER, a_job, good_row, plain_row, write, write_hostile_csv
from tests.helpers.gates import Gate, gate_sinks

HOSTILE_ROWS = 2500


async def test_progress_is_idle_on_a_fresh_database(client: AsyncTestClient, db: AsyncDatabase) -> None:
    progress = (await client.get("/import/progress")).json()
    assert progress["status"] == "IDLE"
    assert progress["rowsProcessed"] == 0


async def test_hostile_file_imports_with_exact_counters_and_rejected_rows(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    customer = {"customerId": EXISTING["_id"], "firstName": "Keep", "lastName": "Me", "email": "keep@example.com"}
    created = await client.post("/customers", json=customer)
    assert created.status_code == 201
    hostile = write_hostile_csv(import_dir / "hostile.csv", HOSTILE_ROWS)
    path, counts, rejected = hostile.path, hostile.counters, hostile.rejected

    job = await start(client, path.name, batchSize=100)
    progress = await wait_done(client)

    assert progress["status"] == "COMPLETED", progress
    assert {k: progress[k] for k in counts} == counts
    assert progress["percent"] == 100 and progress["bytesRead"] == path.stat().st_size
    assert await db.customers.count_documents({}) == counts["rowsInserted"] + 1
    assert (await db.customers.find_one({"_id": EXISTING["_id"]}))["firstName"] == "Keep"  # untouched
    errors = (await client.get("/import/errors", params={"jobId": job["jobId"], "limit": 1000})).json()
    assert [item["line"] for item in errors["items"]] == sorted(rejected)
    for item in errors["items"]:
        assert rejected[item["line"]] in item["reason"]
    cities = [doc.get("city", "") async for doc in db.customers.find({}, {"city": 1})]
    assert not any("\ufffd" in city for city in cities)


async def test_documents_are_trimmed_typed_and_stamped(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    path = write(
        import_dir / "shape.csv",
        [
            "customer_id,FIRST NAME,last-name,email,subscription_date,phone_2,_id,importJobId",
            "  X1  ,  Ann ,Lee,ann@exämple.de,2024-02-29,, hacked , hacked",
        ],
    )
    job = await start(client, path.name)
    progress = await wait_done(client)
    assert progress["rowsInserted"] == 1 and progress["ignoredColumns"] == ["_id", "importJobId"]
    doc = await db.customers.find_one({"_id": "X1"})
    assert doc["firstName"] == "Ann" and doc["email"] == "ann@exämple.de"
    assert doc["subscriptionDate"] == dt.datetime(2024, 2, 29, tzinfo=dt.UTC)
    assert "phone2" not in doc and doc["importJobId"] == job["jobId"]
    state = await db.import_state.find_one({"_id": job["jobId"]})
    assert state["status"] == "COMPLETED" and isinstance(state["finishedAt"], dt.datetime)
    assert state["rowsProcessed"] == 1 and state["fileSize"] == path.stat().st_size


@pytest.fixture
def gates(app: Litestar, client: AsyncTestClient, monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    return gate_sinks(app.state.services, monkeypatch)


async def test_concurrent_starts_give_exactly_one_job(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, gates: list[Gate]
) -> None:
    path = write(import_dir / "race.csv", [HEADER, *(good_row(i) for i in range(3000))])
    # the winner's writes wait at a gate: however fast the database, its job still runs when the others arrive
    responses = await asyncio.gather(*(client.post("/import/sync", json={"filePath": path.name}) for _ in range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [202, 409, 409, 409, 409, 409]
    winner = next(r.json()["jobId"] for r in responses if r.status_code == 202)
    assert all(r.json()["jobId"] == winner for r in responses if r.status_code == 409)
    for refused in (r for r in responses if r.status_code == 409):  # one title per status (docs/architecture.md)
        assert assert_problem(refused, 409, "Conflict")["detail"] == f"import job {winner} is running"
    assert len(gates) == 1
    gates[0].open_all()
    assert (await wait_done(client))["status"] == "COMPLETED"
    assert await db.import_state.count_documents({}) == 1


@pytest.mark.parametrize("stray", [1, 2], ids=["one", "two"])
async def test_a_quote_inside_an_unquoted_field_is_kept_as_text_and_every_row_imports(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, stray: int
) -> None:
    """`27" Monitors Ltd`: the csv reader keeps a quote that does not open a field as an ordinary character, and so
    does the import, with one such quote in the file or two (counting quotes failed the first file at line 101
    and silently merged lines 101-201 of the second into one record for the block cutter)."""
    rows = [good_row(i) for i in range(1, 301)]
    rows[100] = plain_row(101, company='27" Monitors Ltd')
    if stray == 2:
        rows[200] = plain_row(201, first='Jo"hn')
    rows[249] = good_row(250, about="line one\nline two")  # a real quoted field with a line break, after them
    await start(client, write(import_dir / f"stray-{stray}.csv", [HEADER, *rows]).name)
    progress = await wait_done(client)
    assert (progress["status"], progress["rowsInserted"], progress["rowsInvalid"]) == ("COMPLETED", 300, 0), progress
    assert (await client.get("/customers/C0000101")).json()["company"] == '27" Monitors Ltd'
    assert (await client.get("/customers/C0000250")).json()["about"] == "line one\nline two"
    if stray == 2:
        assert (await client.get("/customers/C0000201")).json()["firstName"] == 'Jo"hn'


@pytest.mark.parametrize("instances", [1, 3])
async def test_claims_at_once_right_after_a_finished_job_give_at_most_one_running_job(
    db: AsyncDatabase, instances: int
) -> None:
    """On secantusd-rs every claim after a finished job rebuilds the one-RUNNING index (docs/secantus-rs-differences.md,
    1), which refuses nothing for a moment. Six claims at once, from one instance or from several (one JobStore
    each), still give at most one RUNNING job (exactly one from one instance) and 409s, never another error."""
    for _ in range(4):
        earlier = a_job()
        await JobStore(db).claim_new(earlier)
        await JobStore(db).finish(earlier, Status.COMPLETED)
        stores = [JobStore(db) for _ in range(instances)]
        claims = [stores[k % instances].claim_new(a_job()) for k in range(6)]
        results = await asyncio.gather(*claims, return_exceptions=True)
        assert all(r is None or isinstance(r, ImportRunning) for r in results), results
        running = sum([doc["status"] == "RUNNING" async for doc in db.import_state.find({}, {"status": 1})])
        assert running == sum(r is None for r in results) == (1 if instances == 1 else running) <= 1
        assert RUNNING_INDEX in await db.import_state.index_information()
        await db.import_state.update_many({"status": "RUNNING"}, {"$set": {"status": "COMPLETED"}})


async def test_a_quote_never_closed_fails_the_job_naming_its_line_and_the_resume_ends_the_same(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    """A quoted field still open at the end of the file (no later quote could even close it): nothing after the
    quote can be told apart from the field, so the job FAILS naming the line, with the rows before it imported."""
    rows = [HEADER, *(good_row(i) for i in range(100))]
    rows.append('100,C-broken,Ann,Lee,"unterminated,x,y,z,a@b.c,2021-01-01,w,about')
    rows += [plain_row(i) for i in range(101, 101 + settings.import_max_record_bytes // 200)]
    path = write(import_dir / "unterminated.csv", rows)
    await start(client, path.name)
    progress = await wait_done(client)
    assert progress["status"] == "FAILED"
    assert progress["error"].startswith("line 102: a quote opened here (byte offset"), progress["error"]
    assert progress["rowsInserted"] == 100 == await db.customers.count_documents({})
    assert (await client.post("/import/resume")).status_code == 202  # resumed: the same end, nothing counted twice
    again = await wait_done(client)
    assert (again["status"], again["error"], again["attempts"]) == ("FAILED", progress["error"], 2)
    assert (again["rowsProcessed"], again["rowsInserted"], again["bytesRead"]) == (100, 100, progress["bytesRead"])


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"filePath": "missing.csv"}, "does not exist"),
        ({"filePath": "."}, "not a regular file"),
        ({"filePath": "../outside.csv"}, "outside the import folder"),
        ({"filePath": "/etc/passwd"}, "outside the import folder"),
        ({"filePath": "link.csv"}, "outside the import folder"),
        ({"filePath": "noid.csv"}, "no customer id column"),
        ({}, "CSV_FILE_PATH is not set"),
        ({"filePath": "ok.csv", "batchSize": 0}, ""),
        ({"filePath": "ok.csv", "batchSize": 10001}, ""),
        ({"filePath": "ok.csv", "mode": "merge"}, ""),
        ({"filePath": "ok.csv", "extra": 1}, ""),
        ({"filePath": 5}, ""),
    ],
)
async def test_bad_import_requests_get_4xx_and_start_no_job(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, body: dict, fragment: str
) -> None:
    write(import_dir / "ok.csv", [HEADER, good_row(1)])
    write(import_dir / "noid.csv", ["Index,First Name,Email", "1,Ann,a@b.c"])
    outside = write(import_dir.parent / "outside.csv", [HEADER, good_row(1)])
    link = import_dir / "link.csv"
    if not link.is_symlink():
        link.symlink_to(outside)
    response = await client.post("/import/sync", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in response.json()["detail"] + str(response.json().get("errors", ""))
    assert await db.import_state.count_documents({}) == 0


async def test_malformed_json_body_is_400(client: AsyncTestClient, db: AsyncDatabase) -> None:
    response = await client.post("/import/sync", content=b"{nope", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_errors_of_unknown_job_is_404(client: AsyncTestClient, db: AsyncDatabase) -> None:
    response = await client.get("/import/errors", params={"jobId": "nope"})
    assert response.status_code == 404


async def test_resume_with_nothing_to_resume_is_404(client: AsyncTestClient, db: AsyncDatabase) -> None:
    assert (await client.post("/import/resume")).status_code == 404


async def test_dry_run_validates_everything_and_writes_no_customer(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    hostile = write_hostile_csv(import_dir / "hostile.csv", HOSTILE_ROWS)
    path, counts, rejected = hostile.path, hostile.counters, hostile.rejected
    job = await start(client, path.name, dryRun=True)
    progress = await wait_done(client)
    assert progress["status"] == "COMPLETED" and progress["dryRun"] is True
    assert progress["rowsInvalid"] == counts["rowsInvalid"]
    # A dry run does not look duplicates up in the database: every valid row counts as would-be-inserted.
    assert progress["rowsInserted"] == counts["rowsInserted"] + counts["rowsDuplicate"]
    assert await db.customers.count_documents({}) == 0
    errors = (await client.get("/import/errors", params={"jobId": job["jobId"], "limit": 1000})).json()
    assert [item["line"] for item in errors["items"]] == sorted(rejected)


@pytest.mark.parametrize("file_path", ["x" * 300 + ".csv", "bad\x00name.csv", "a/" * 3000 + "b.csv"])
async def test_unusable_paths_are_400_not_500(client: AsyncTestClient, db: AsyncDatabase, file_path: str) -> None:
    response = await client.post("/import/sync", json={"filePath": file_path})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_parser_workers_run_at_a_lower_cpu_priority(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    path = write(import_dir / "nice.csv", [HEADER, *(good_row(i) for i in range(50))])
    await start(client, path.name)
    assert (await wait_done(client))["status"] == "COMPLETED"
    pids = client.app.state.services.imports.worker_pids()
    assert 1 <= len(pids) <= settings.import_workers  # the pool starts a second process only when it needs one
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pids} == {min(19, mine + settings.import_worker_nice)}


async def test_the_list_total_follows_an_import(client: AsyncTestClient, db: AsyncDatabase, import_dir: Path) -> None:
    """The unfiltered total is the collection's metadata count, the filtered one is counted: both see the import."""
    path = write(import_dir / "totals.csv", [HEADER, *(good_row(i) for i in range(1, 41)), good_row(41, "C0000001")])
    await start(client, path.name)
    assert (await wait_done(client))["rowsInserted"] == 40
    page = (await client.get("/customers", params={"limit": 1})).json()
    assert page["total"] == 40 and [item["customerId"] for item in page["items"]] == ["C0000001"]
    page = (await client.get("/customers", params={"limit": 1, "country": "FRANCE", "q": "ann1"})).json()
    assert (page["total"], page["totalCapped"]) == (11, False)  # Ann1, Ann10..Ann19


@pytest.mark.parametrize("route", ["/import/sync", "/import/preview"])
async def test_a_symlink_loop_is_a_400_that_names_no_server_folder(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, route: str
) -> None:
    """Python 3.11's Path.resolve raises RuntimeError on a loop (not OSError): it was a 500, and GET /import/files
    answered 500 for the whole folder while the loop was in it, so the dashboard could list no file at all."""
    write(import_dir / "ok.csv", [HEADER, good_row(1)])
    for name, target in (
        ("loop-a.csv", "loop-b.csv"),
        ("loop-b.csv", "loop-a.csv"),
        ("loop-self.csv", "loop-self.csv"),
    ):
        if not (import_dir / name).is_symlink():
            (import_dir / name).symlink_to(target)
    for name in ("loop-a.csv", "loop-self.csv"):
        problem = assert_problem(await client.post(route, json={"filePath": name}), 400, "Cannot import this file")
        assert problem["detail"] == f"{name!r} is not a usable path: a symlink loop"
    listed = await client.get("/import/files")
    assert listed.status_code == 200, listed.text
    names = [item["name"] for item in listed.json()["items"]]
    assert "ok.csv" in names and not any(name.startswith("loop-") for name in names)
    assert await db.import_state.count_documents({}) == 0
