"""The sink against the real database, in insert mode: a row this job already wrote counts as inserted."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from app.imports.model import Mode
from app.imports.sink import Sink
from tests.helpers import EXISTING, HEADER, batch_of, good_row

TEXT = "\n".join([HEADER, good_row(1), good_row(2), good_row(3, EXISTING["_id"]), good_row(4, "C0000001")]) + "\n"


def sink(db: AsyncDatabase, job_id: str) -> Sink:
    return Sink(db.customers, job_id=job_id, retry_seconds=5, writers=1, mode=Mode.INSERT)


async def test_a_batch_written_again_by_the_same_job_counts_as_inserted_not_duplicate(db: AsyncDatabase) -> None:
    """What a resumed job meets: rows it wrote before a crash or a cancel (or a retried insert_many) are
    refused with E11000 and found stamped with this job and their own line; another job's rows, another line of
    this job and a customer that was there before are duplicates."""
    await db.customers.insert_one(dict(EXISTING))
    batch = batch_of(TEXT, "job-a", Mode.INSERT)
    assert list(batch.ids) == ["C0000001", "C0000002", EXISTING["_id"], "C0000001"]

    first = await sink(db, "job-a").write(batch)
    again = await sink(db, "job-a").write(batch)  # a new Sink: the rule lives in the database, not in memory
    other = await sink(db, "job-b").write(batch_of(TEXT, "job-b", Mode.INSERT))

    assert (first.rows_inserted, first.rows_duplicate, first.skipped) == (2, 2, {2, 3})
    assert (again.rows_inserted, again.rows_duplicate, again.skipped) == (
        2,
        2,
        {2, 3},
    )  # C0000001 and C0000002: still "mine"
    assert (other.rows_inserted, other.rows_duplicate, other.skipped) == (0, 4, {0, 1, 2, 3})
    assert await db.customers.count_documents({}) == 3
    assert await db.customers.count_documents({"importJobId": "job-a"}) == 2
