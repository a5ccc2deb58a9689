"""Re-sync (`mode: upsert`) through the HTTP API into the real SecantusDB server: what changed is updated, what
did not is left alone, and customers created or edited through the API are never overwritten."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from app.customers.document import index_keys
from app.imports.model import Batch, Mode
from app.imports.run.sink import Sink
from tests.helpers.answers import start, wait_done
from tests.helpers.csvfiles import HEADER, batch_of, write

ROWS = 240


def row(
    i: int, *, first: str | None = None, phone: str = "+33 1", about: str = "Likes tea", customer_id: str | None = None
) -> str:
    cid = customer_id or f"R{i:05d}"
    return (
        f"{i},{cid},{first or f'Ann{i}'},Lee,Acme,Paris,France,{phone},,ann{i}@example.com,"
        f"2021-03-{1 + i % 28:02d},https://acme.example,{about}"
    )


def csv_lines(rows: dict[int, str]) -> list[str]:
    return [HEADER, *rows.values()]


async def import_and_wait(client: AsyncTestClient, path: Path, **options: Any) -> dict[str, Any]:
    await start(client, path.name, batchSize=50, **options)
    progress = await wait_done(client)
    assert progress["status"] == "COMPLETED", progress
    return progress


def counters(progress: dict[str, Any]) -> dict[str, int]:
    names = ("rowsInserted", "rowsUpdated", "rowsUnchanged", "rowsProtected", "rowsDuplicate", "rowsInvalid")
    found = {name: progress[name] for name in names}
    assert progress["rowsProcessed"] == sum(found.values()), progress
    return found


async def test_resync_updates_what_changed_and_never_overwrites_hand_edits(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    first = {i: row(i) for i in range(1, ROWS + 1)}
    await import_and_wait(client, write(import_dir / "v1.csv", csv_lines(first)))
    before = {doc["_id"]: doc async for doc in db.customers.find({})}
    assert len(before) == ROWS

    # Hand edits through the API: a PATCH of an imported customer, and a customer created by hand that the
    # next file also carries.
    patched = await client.patch("/customers/R00007", json={"firstName": "Edited", "phone1": None})
    assert patched.status_code == 200, patched.text
    created = await client.post(
        "/customers",
        json={"customerId": "HAND-1", "firstName": "Hand", "lastName": "Made", "email": "hand@example.com"},
    )
    assert created.status_code == 201, created.text

    second = dict(first)
    changed = {i for i in range(10, ROWS + 1, 10)}  # 24 rows with a new value
    for i in changed:
        second[i] = row(i, about="Prefers coffee")
    second[3] = row(3, first="Renamed")  # a searched field changes: the search keys must follow
    second[5] = row(5, phone="")  # an emptied value removes the field
    second[7] = row(7, first="FromFile")  # hand-edited: protected
    second[ROWS + 1] = row(ROWS + 1, customer_id="HAND-1", first="FromFile")  # hand-created: protected
    second.update({i: row(i) for i in range(ROWS + 2, ROWS + 32)})  # 30 new customers
    second[ROWS + 40] = f"{ROWS + 40},R99999,too,few"  # invalid
    path = write(import_dir / "v2.csv", csv_lines(second))

    progress = await import_and_wait(client, path, mode="upsert")

    updated = len(changed) + 2  # + the renamed and the emptied row
    assert counters(progress) == {
        "rowsInserted": 30,
        "rowsUpdated": updated,
        "rowsUnchanged": ROWS - updated - 1,
        "rowsProtected": 2,
        "rowsDuplicate": 0,
        "rowsInvalid": 1,
    }
    assert progress["mode"] == "upsert"
    after = {doc["_id"]: doc async for doc in db.customers.find({})}
    assert len(after) == ROWS + 1 + 30

    # Hand edits survived, field by field.
    assert after["R00007"]["firstName"] == "Edited" and "phone1" not in after["R00007"]
    assert after["R00007"]["handEdited"] is True
    assert after["HAND-1"]["firstName"] == "Hand" and after["HAND-1"]["email"] == "hand@example.com"
    assert "city" not in after["HAND-1"]
    # Changed rows carry the file's values and a new updatedAt; creation stays.
    assert after["R00010"]["about"] == "Prefers coffee"
    assert after["R00010"]["createdAt"] == before["R00010"]["createdAt"]
    assert after["R00010"]["updatedAt"] > before["R00010"]["updatedAt"]
    assert "phone1" not in after["R00005"] and after["R00005"]["firstName"] == "Ann5"
    # The keys follow the new name.
    assert {name: after["R00003"][name] for name in ("searchKeys", "searchTerms")} == {
        name: value for name, value in index_keys(after["R00003"]).items() if name in ("searchKeys", "searchTerms")
    }
    assert "renamed" in after["R00003"]["searchTerms"] and "ann3" in before["R00003"]["searchTerms"]
    found = (await client.get("/customers", params={"q": "renam"})).json()
    assert [item["customerId"] for item in found["items"]] == ["R00003"]
    # Unchanged rows were not written at all.
    assert after["R00011"] == before["R00011"]
    # New rows are ordinary imported customers.
    new = after[f"R{ROWS + 2:05d}"]
    assert new["firstName"] == f"Ann{ROWS + 2}" and new["importJobId"] == progress["jobId"]
    assert new["subscriptionDate"] == dt.datetime(2021, 3, 1 + (ROWS + 2) % 28, tzinfo=dt.UTC)
    assert not new.get("handEdited")
    errors = (await client.get("/import/errors", params={"jobId": progress["jobId"]})).json()
    assert [item["line"] for item in errors["items"]] == [len(second) + 1]

    # The same file again changes nothing.
    again = await import_and_wait(client, path, mode="upsert")
    assert counters(again) == {
        "rowsInserted": 0,
        "rowsUpdated": 0,
        "rowsUnchanged": ROWS + 30 - 1,
        "rowsProtected": 2,
        "rowsDuplicate": 0,
        "rowsInvalid": 1,
    }
    assert {doc["_id"]: doc async for doc in db.customers.find({})} == after


async def test_resync_dry_run_writes_nothing(client: AsyncTestClient, db: AsyncDatabase, import_dir: Path) -> None:
    path = write(import_dir / "dry.csv", csv_lines({i: row(i) for i in range(1, 21)}))
    progress = await import_and_wait(client, path, mode="upsert", dryRun=True)
    assert progress["mode"] == "upsert" and progress["dryRun"] is True
    assert progress["rowsProcessed"] == 20
    assert await db.customers.count_documents({}) == 0


async def test_an_unknown_mode_is_a_400_problem(client: AsyncTestClient, db: AsyncDatabase, import_dir: Path) -> None:
    path = write(import_dir / "mode.csv", csv_lines({1: row(1)}))
    response = await client.post("/import/sync", json={"filePath": path.name, "mode": "merge"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert await db.import_state.count_documents({}) == 0


async def test_a_batch_written_again_by_the_same_job_counts_the_same(db: AsyncDatabase) -> None:
    """What a resumed job meets: rows it already wrote before a crash (or a retried bulk_write) are counted as
    what they were then (inserted or updated), never as unchanged; another job's stamp does not count."""
    await db.customers.insert_one({"_id": "R00002", "firstName": "Old", "importHash": "stale"})
    await db.customers.insert_one({"_id": "R00003", "firstName": "Mine", "handEdited": True})
    text = "\n".join([HEADER, row(1), row(2), row(3), row(4)]) + "\n"
    sink = Sink(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    batch = batch_of(text, "job-a", Mode.UPSERT)

    first = await sink.write(batch)
    again = await sink.write(batch)

    assert (first.rows_inserted, first.rows_updated, first.rows_unchanged, first.rows_protected) == (2, 1, 0, 1)
    assert (again.rows_inserted, again.rows_updated, again.rows_unchanged, again.rows_protected) == (2, 1, 0, 1)
    assert again.skipped == first.skipped == {2}
    other = Sink(db.customers, job_id="job-b", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    later = await other.write(batch_of(text, "job-b", Mode.UPSERT))
    assert (later.rows_inserted, later.rows_updated, later.rows_unchanged, later.rows_protected) == (0, 0, 3, 1)


class EditedBetweenReadAndWrite(Sink):
    """The real sink; right after its read, the API edits a stored customer (as a concurrent PATCH would)."""

    async def _stored(self, batch: Batch) -> dict[str, dict[str, object]]:
        stored = await super()._stored(batch)
        await self.customers.update_one({"_id": "R00002"}, {"$set": {"firstName": "Edited", "handEdited": True}})
        return stored


async def test_a_customer_edited_between_the_read_and_the_write_is_never_overwritten(db: AsyncDatabase) -> None:
    await db.customers.insert_one({"_id": "R00002", "firstName": "Old", "importHash": "stale"})
    sink = EditedBetweenReadAndWrite(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    written = await sink.write(batch_of("\n".join([HEADER, row(1), row(2)]) + "\n", "job-a", Mode.UPSERT))
    # R00002 was classified as changed by the read; the write's handEdited guard refused it: protected
    assert (written.rows_inserted, written.rows_updated, written.rows_protected) == (1, 0, 1)
    stored = await db.customers.find_one({"_id": "R00002"})
    assert stored is not None and stored["firstName"] == "Edited" and "lastImport" not in stored


class FailingAfterTheWrite(Sink):
    """The real sink; its first bulk_write is applied by the server, but the answer is lost (a dropped
    connection), so the sink sees a transient error and tries again."""

    lost = 0

    async def _write(self, batch: Batch, rows: list[int]) -> tuple[int, int]:
        result = await super()._write(batch, rows)
        if not self.lost:
            self.lost += 1
            raise AutoReconnect("connection closed after the write was applied")
        return result


async def test_a_write_retried_after_a_lost_answer_counts_what_it_did(db: AsyncDatabase) -> None:
    """The retry reads and classifies again: rows the lost attempt inserted count as inserted, not updated."""
    await db.customers.insert_one({"_id": "R00002", "firstName": "Old", "importHash": "stale"})
    await db.customers.insert_one({"_id": "R00003", "firstName": "Mine", "handEdited": True})
    sink = FailingAfterTheWrite(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    written = await sink.write(
        batch_of("\n".join([HEADER, row(1), row(2), row(3), row(4)]) + "\n", "job-a", Mode.UPSERT)
    )
    assert sink.lost == 1
    assert (written.rows_inserted, written.rows_updated, written.rows_unchanged, written.rows_protected) == (2, 1, 0, 1)


async def test_a_resumed_resync_never_puts_an_earlier_row_over_a_later_one_of_the_same_id(db: AsyncDatabase) -> None:
    """A file with one id twice: the later row wins, and a resume over both rows (the same job writing the same
    batch again) leaves the later row's values and counts the same."""
    text = "\n".join([HEADER, row(1, first="Early"), row(2), row(3, first="Late", customer_id="R00001")]) + "\n"
    sink = Sink(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    batch = batch_of(text, "job-a", Mode.UPSERT)
    first = await sink.write(batch)
    assert (await db.customers.find_one({"_id": "R00001"}) or {})["firstName"] == "Late"
    again = await sink.write(batch)
    assert (await db.customers.find_one({"_id": "R00001"}) or {})["firstName"] == "Late"
    assert (first.rows_inserted, first.rows_updated) == (again.rows_inserted, again.rows_updated) == (2, 1)


async def test_a_later_row_equal_to_the_stored_customer_still_wins_over_an_earlier_changed_one(
    db: AsyncDatabase,
) -> None:
    """One batch: R00001 changed by a row, then set back by a later one. Each row is compared with the one before
    it of the same id, so both are updates and the later one wins (before, the later row equalled the customer
    stored before the batch, counted unchanged and was not written: the earlier row's change stayed)."""
    await Sink(db.customers, job_id="job-0", retry_seconds=5, writers=1, mode=Mode.UPSERT).write(
        batch_of("\n".join([HEADER, row(1)]) + "\n", "job-0", Mode.UPSERT)
    )
    text = "\n".join([HEADER, row(1, first="Early"), row(2), row(1), row(2)]) + "\n"
    sink = Sink(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.UPSERT)
    written = await sink.write(batch_of(text, "job-a", Mode.UPSERT))
    assert (await db.customers.find_one({"_id": "R00001"}) or {})["firstName"] == "Ann1"
    assert (written.rows_inserted, written.rows_updated, written.rows_unchanged) == (1, 2, 1)
