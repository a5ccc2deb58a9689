"""Bulk writes of encoded customer documents and their outcome counts. Knows no CSV.

Insert mode: insert_many(ordered=False) writes every document it can; E11000 duplicate-key errors are the
skipped duplicates. A duplicate whose stored document carries this job's id and this row's line
(`importJobId`, `importLine`) was written by this very job before a crash or a retried write: it counts as
inserted, so re-processing never inflates the duplicate count.

Upsert mode: one unordered bulk_write of UpdateOne(filter, update, upsert=True) per batch. The filter
matches only a customer that was not edited through the API and whose CSV values differ; upserted rows are
inserted, matched rows updated, and a row refused with E11000 is looked up (one find per batch): stamped
`lastImport` = (this job, this line) means this job already wrote it (before a crash or a retried write),
otherwise `handEdited` makes it protected, else it is unchanged.

Transient database errors are retried with backoff for a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bson.raw_bson import RawBSONDocument
from pymongo import UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, NetworkTimeout, PyMongoError

from app.imports.model import Batch, Mode, Written

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout)
T = TypeVar("T")


class WriteFailed(Exception):
    """A write error that is not a duplicate key, or an outage longer than the retry budget."""


async def retry(operation: Callable[[], Awaitable[T]], *, seconds: float, what: str) -> T:
    """Run `operation`, retrying transient database errors with capped exponential backoff."""
    deadline, delay = time.monotonic() + seconds, 0.1
    while True:
        try:
            return await operation()
        except TRANSIENT as exc:
            if time.monotonic() + delay > deadline:
                raise WriteFailed(f"{what}: the database did not answer for {seconds:.0f}s ({exc})") from exc
            log.warning("%s failed (%s); retrying in %.1fs", what, exc.__class__.__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


class Sink:
    def __init__(
        self, customers: AsyncCollection, *, job_id: str, retry_seconds: float, writers: int, mode: Mode = Mode.INSERT
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

    async def insert(self, batch: Batch) -> Written:
        async with self.writers:
            refused = await retry(lambda: self._insert(batch), seconds=self.retry_seconds, what="insert_many")
        if not refused:
            return Written(rows_inserted=len(batch.docs))
        mine = await retry(
            lambda: self._written_by_this_job(batch, refused), seconds=self.retry_seconds, what="duplicate check"
        )
        skipped = set(refused) - mine
        return Written(rows_inserted=len(batch.docs) - len(skipped), rows_duplicate=len(skipped), skipped=skipped)

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

    async def _written_by_this_job(self, batch: Batch, refused: list[int]) -> set[int]:
        # (id, line) pairs: one id can be refused twice in a batch, and only its own row is "mine".
        ids = list({batch.ids[i] for i in refused})
        cursor = self.customers.find({"_id": {"$in": ids}, "importJobId": self.job_id}, {"importLine": 1})
        stored = {(doc["_id"], doc.get("importLine")) async for doc in cursor}
        return {i for i in refused if (batch.ids[i], batch.lines[i]) in stored}

    async def upsert(self, batch: Batch) -> Written:
        async with self.writers:
            upserted, refused = await retry(lambda: self._upsert(batch), seconds=self.retry_seconds, what="bulk_write")
        written = Written(rows_inserted=len(upserted))
        written.rows_updated = len(batch.docs) - len(upserted) - len(refused)
        if refused:
            stored = await retry(lambda: self._stamps(batch, refused), seconds=self.retry_seconds, what="re-sync check")
            for i in refused:
                doc = stored.get(batch.ids[i])
                if doc is not None and doc.get("lastImport") == {"jobId": self.job_id, "line": batch.lines[i]}:
                    if doc.get("importJobId") == self.job_id and doc.get("importLine") == batch.lines[i]:
                        written.rows_inserted += 1  # this job inserted it before a crash or a retried write
                    else:
                        written.rows_updated += 1
                elif doc is not None and doc.get("handEdited"):
                    written.rows_protected += 1
                    written.skipped.add(i)
                else:  # same values (or deleted since the write was refused: nothing was written either way)
                    written.rows_unchanged += 1
                    written.skipped.add(i)
        return written

    async def _upsert(self, batch: Batch) -> tuple[set[int], list[int]]:
        """(indexes of rows inserted, indexes of rows refused with E11000); the rest were updated."""
        ops = [
            UpdateOne(RawBSONDocument(flt), RawBSONDocument(update), upsert=True)
            for flt, update in zip(batch.filters, batch.docs, strict=True)
        ]
        try:
            result = (await self.customers.bulk_write(ops, ordered=False)).bulk_api_result
            refused: list[int] = []
        except BulkWriteError as exc:
            refused = _duplicates(exc, "bulk_write")
            result = exc.details
        except PyMongoError as exc:
            if isinstance(exc, TRANSIENT):
                raise
            raise WriteFailed(f"bulk_write: {exc}") from exc
        return {entry["index"] for entry in result.get("upserted", [])}, refused

    async def _stamps(self, batch: Batch, refused: list[int]) -> dict[str, dict]:
        ids = list({batch.ids[i] for i in refused})
        projection = {"handEdited": 1, "lastImport": 1, "importJobId": 1, "importLine": 1}
        return {doc["_id"]: doc async for doc in self.customers.find({"_id": {"$in": ids}}, projection)}


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
