"""Bulk writes of encoded customer documents and their outcome counts. Knows no CSV (a row is an id, its
source line, an encoded document and, for re-sync, the digest of its values).

Insert mode: insert_many(ordered=False) writes every document it can; E11000 duplicate-key errors are the
skipped duplicates. A duplicate whose stored document carries this job's id and this row's line
(`importJobId`, `importLine`) was written by this very job before a crash or a retried write: it counts as
inserted, so re-processing never inflates the duplicate count. One whose stored document is a *later* row of
this job (blocks are written concurrently) replaces it: the first row of an id wins, and the later row's line
goes back to the pipeline as displaced (its count moves to duplicate, app/imports/job/ledger.py).

Upsert mode (re-sync) reads, then writes only what changed: one `$in` read of the batch's ids (`importHash`,
`handEdited`, `lastImport`, `importJobId`, `importLine`) classifies each row:
- stamped `lastImport` = (this job, this line or a later one): this job already wrote it (before a crash or a
  failed attempt) or a later row of the same id: inserted or updated, as it was then, and not written again;
- `handEdited`: protected; the same digest as the id's previous row in this batch, else as its stored `importHash`:
  unchanged (rows of one id apply in file order); neither is written;
- absent: inserted, and stored: updated, by one unordered bulk_write whose filter guards `handEdited != true`,
  so a customer edited through the API between the read and the write is never overwritten (counted protected).

Transient database errors are retried with backoff for a bounded time (app/db.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, PyMongoError

from app.db import DUPLICATE_KEY, TRANSIENT, WriteFailed, retry
from app.imports.model import Batch, Mode, Written

STAMPS = {"importHash": 1, "handEdited": 1, "lastImport": 1, "importJobId": 1, "importLine": 1}


class Sink:
    def __init__(
        self,
        customers: AsyncCollection[dict[str, Any]],
        *,
        job_id: str,
        retry_seconds: float,
        writers: int,
        mode: Mode = Mode.INSERT,
    ):
        self.customers = customers
        self.job_id = job_id
        self.retry_seconds = retry_seconds
        self.writers = asyncio.Semaphore(writers)
        self.mode = mode

    async def write(self, batch: Batch) -> Written:
        if self.mode is Mode.UPSERT:
            return await self.upsert(batch)
        return await self.insert(batch)

    # ---- insert -------------------------------------------------------------------------------------------

    async def insert(self, batch: Batch) -> Written:
        async with self.writers:
            refused = await retry(lambda: self._insert(batch), seconds=self.retry_seconds, what="insert_many")
        if not refused:
            return Written(rows_inserted=len(batch.docs))
        mine, swapped, displaced, chained = await self._refused(batch, refused)
        skipped = set(refused) - mine - swapped
        return Written(
            rows_inserted=len(batch.docs) - len(skipped),
            rows_duplicate=len(skipped),
            skipped=skipped,
            displaced=displaced,
            chained=chained,
        )

    async def _insert(self, batch: Batch) -> list[int]:
        """Indexes (into the batch) of documents refused as duplicates."""
        try:
            await self.customers.insert_many([RawBSONDocument(doc) for doc in batch.docs], ordered=False)
        except BulkWriteError as exc:
            return _duplicates(exc, "insert_many")
        except PyMongoError as exc:
            if isinstance(exc, TRANSIENT):
                raise
            raise WriteFailed(f"insert_many: {exc}") from exc
        return []

    async def _refused(
        self, batch: Batch, refused: list[int]
    ) -> tuple[set[int], set[int], list[int], list[tuple[int, int]]]:
        """Of the rows refused as duplicates: `mine`, this row itself, written by this job before a crash or a
        retried insert (inserted); `swapped`, rows that replaced a later row of this job of the same id that got
        in first, as blocks are written concurrently (the first row of an id wins: inserted, and the later
        row's line is `displaced`, a duplicate). Another job's customer, or a hand-edited one, stays."""
        ids = list({batch.ids[i] for i in refused})
        stored = await retry(lambda: self._stamps(ids), seconds=self.retry_seconds, what="duplicate check")
        mine, swapped, displaced, chained = set(), set(), [], []
        for i in sorted(refused, key=lambda i: batch.lines[i]):  # of one id's rows in this batch, the first
            stamp = stored.get(batch.ids[i])
            if stamp is not None and stamp.get("importLine") == batch.lines[i]:
                mine.add(i)  # edited through the API since or not, this row wrote it
            elif stamp is not None and (replaced := await self._first_row(batch, i, stamp)) is not None:
                later, certain = replaced
                if certain:
                    swapped.add(i)
                    displaced.append(later)
                else:  # perhaps replaced, then replaced in turn by an earlier row (see _first_row)
                    chained.append((batch.lines[i], later))
        return mine, swapped, displaced, chained

    async def _first_row(self, batch: Batch, i: int, stamp: dict[str, Any]) -> tuple[int, bool] | None:
        """Replace this job's later row of the same id with row `i`: (the later row's line, True), or None if the stored
        customer is not a later row of this job (or is hand-edited). A replace that finds the customer changed
        reads it again: another earlier row may have replaced it first (try again over that one, if it is still
        later than row `i`), or this very replace was applied and its reply lost (row `i`'s line is stored: it
        is a swap all the same). An even earlier row stored instead leaves it open which row that one replaced:
        (later, False) says so (row `i` is a duplicate; the ledger displaces `later` if row `i`'s line is)."""
        line = batch.lines[i]
        while isinstance(later := stamp.get("importLine"), int) and later > line and not stamp.get("handEdited"):
            if await self._replace(batch, i, later):
                stamp["importLine"] = line  # what the next row of this id in the batch finds
                return later, True
            found = await retry(lambda: self._stamps([batch.ids[i]]), seconds=self.retry_seconds, what="re-read")
            stamp.clear()
            stamp.update(found.get(batch.ids[i], {}))
            now = stamp.get("importLine")
            if now == line:  # only this replace writes row i's line: applied, reply lost
                return later, True
            if isinstance(now, int) and now < line:  # an earlier row replaced it: this row's, applied, or `later`
                return later, False
        return None

    async def _stamps(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        cursor = self.customers.find(
            {"_id": {"$in": ids}, "importJobId": self.job_id}, {"importLine": 1, "handEdited": 1}
        )
        return {doc["_id"]: doc async for doc in cursor}

    async def _replace(self, batch: Batch, i: int, later: int) -> bool:
        """Replace the customer that this job's row at line `later` wrote with row `i`, if it is still that one."""
        guard = {"_id": batch.ids[i], "importJobId": self.job_id, "importLine": later, "handEdited": {"$ne": True}}
        result = await retry(
            lambda: self.customers.replace_one(guard, RawBSONDocument(batch.docs[i])),
            seconds=self.retry_seconds,
            what="first row of an id",
        )
        return result.modified_count == 1

    # ---- upsert (re-sync) ---------------------------------------------------------------------------------

    async def upsert(self, batch: Batch) -> Written:
        # read, classify and write are retried together: a write retried on its own would count a row that the
        # failed attempt did insert as updated; read again, that row is classified by its stamp
        return await retry(lambda: self._upsert(batch), seconds=self.retry_seconds, what="re-sync")

    async def _upsert(self, batch: Batch) -> Written:
        written, to_write = self._classify(batch, await self._stored(batch))
        if to_write:
            async with self.writers:
                inserted, updated = await self._write(batch, to_write)
            written.rows_inserted += inserted
            written.rows_updated += updated
            written.rows_protected += len(to_write) - inserted - updated  # edited through the API meanwhile
        return written

    async def _stored(self, batch: Batch) -> dict[str, dict[str, Any]]:
        cursor = self.customers.find({"_id": {"$in": list(set(batch.ids))}}, STAMPS)
        return {doc["_id"]: doc async for doc in cursor}

    def _classify(self, batch: Batch, stored: dict[str, dict[str, Any]]) -> tuple[Written, list[int]]:
        """Counts of the rows that need no write, and the indexes of those that do (new or changed)."""
        written, to_write = Written(), []
        latest: dict[str, str] = {}  # id -> the digest of its previous row in this batch: rows apply in file order
        for i, customer_id in enumerate(batch.ids):
            doc = stored.get(customer_id)
            before = latest.get(customer_id, doc.get("importHash") if doc else None)
            latest[customer_id] = batch.hashes[i]
            if doc is not None and self._already_applied(doc.get("lastImport"), batch.lines[i]):
                mine = doc.get("importJobId") == self.job_id and doc.get("importLine") == batch.lines[i]
                if mine:
                    written.rows_inserted += 1  # this job inserted it before a crash or a retried write
                else:
                    written.rows_updated += 1
            elif doc is not None and doc.get("handEdited"):
                written.rows_protected += 1
                written.skipped.add(i)
            elif before == batch.hashes[i]:
                written.rows_unchanged += 1
                written.skipped.add(i)
            else:  # new, or changed
                to_write.append(i)
        return written, to_write

    def _already_applied(self, stamp: Any, line: int) -> bool:
        """This job wrote this row (before a crash or a failed attempt), or already a later row of the same id:
        writing the row again would put an earlier row's values over a later one's."""
        return isinstance(stamp, Mapping) and stamp.get("jobId") == self.job_id and stamp.get("line", 0) >= line

    async def _write(self, batch: Batch, rows: list[int]) -> tuple[int, int]:
        """(inserted, updated) of the rows written; the rest were refused by the handEdited guard."""
        ops = [
            UpdateOne({"_id": batch.ids[i], "handEdited": {"$ne": True}}, RawBSONDocument(batch.docs[i]), upsert=True)
            for i in rows
        ]
        result: Mapping[str, Any]  # BulkWriteError.details may be a RawBSONDocument
        try:
            result = (await self.customers.bulk_write(ops, ordered=False)).bulk_api_result
        except BulkWriteError as exc:
            _duplicates(exc, "bulk_write")  # E11000: created through the API meanwhile (handEdited): protected
            result = exc.details
        except PyMongoError as exc:
            if isinstance(exc, TRANSIENT):
                raise
            raise WriteFailed(f"bulk_write: {exc}") from exc
        return len(result.get("upserted", [])), result.get("nMatched", 0)


def _duplicates(exc: BulkWriteError, what: str) -> list[int]:
    """Indexes of the E11000 write errors; any other write error fails the write."""
    errors = exc.details.get("writeErrors", [])
    other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
    if other:
        raise WriteFailed(f"{what}: {other[0].get('errmsg', other[0])}") from exc
    return [e["index"] for e in errors]


class DrySink:
    """A dry run's sink: counts what would be written, writes nothing (the database is not read either)."""

    async def write(self, batch: Batch) -> Written:
        return Written(rows_inserted=len(batch.ids))
