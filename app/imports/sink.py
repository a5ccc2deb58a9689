"""Bulk writes of encoded customer documents and their outcome counts. Knows no CSV.

insert_many(ordered=False) writes every document it can; E11000 duplicate-key errors are the skipped
duplicates. A duplicate whose stored document carries this job's id and this row's line was written by
this very job before a crash or a retried write: it counts as inserted, so re-processing never inflates
the duplicate count. Transient database errors are retried with backoff for a bounded time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bson.raw_bson import RawBSONDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import AutoReconnect, BulkWriteError, ConnectionFailure, NetworkTimeout, PyMongoError

from app.imports.model import Batch

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
    def __init__(self, customers: AsyncCollection, *, job_id: str, retry_seconds: float, writers: int):
        self.customers = customers
        self.job_id = job_id
        self.retry_seconds = retry_seconds
        self.writers = asyncio.Semaphore(writers)

    async def insert(self, batch: Batch) -> tuple[int, int, list[int]]:
        """Write one batch; return (inserted, duplicate, indexes of the documents refused as duplicates)."""
        async with self.writers:
            duplicates = await retry(lambda: self._insert(batch), seconds=self.retry_seconds, what="insert_many")
        if not duplicates:
            return len(batch.docs), 0, duplicates
        mine = await retry(lambda: self._written_by_this_job(batch, duplicates),
                           seconds=self.retry_seconds, what="duplicate check")
        return len(batch.docs) - len(duplicates) + mine, len(duplicates) - mine, duplicates

    async def _insert(self, batch: Batch) -> list[int]:
        """Indexes (into the batch) of documents refused as duplicates."""
        try:
            await self.customers.insert_many([RawBSONDocument(doc) for doc in batch.docs], ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            other = [e for e in errors if e.get("code") != DUPLICATE_KEY]
            if other:
                raise WriteFailed(f"insert_many: {other[0].get('errmsg', other[0])}") from exc
            return [e["index"] for e in errors]
        except PyMongoError as exc:
            if isinstance(exc, TRANSIENT):
                raise
            raise WriteFailed(f"insert_many: {exc}") from exc
        return []

    async def _written_by_this_job(self, batch: Batch, duplicates: list[int]) -> int:
        # (id, line) pairs: one id can be refused twice in a batch, and only its own row is "mine".
        wanted = {(batch.ids[i], batch.lines[i]) for i in duplicates}
        ids = list({customer_id for customer_id, _ in wanted})
        cursor = self.customers.find({"_id": {"$in": ids}, "importJobId": self.job_id}, {"importLine": 1})
        return len([doc async for doc in cursor if (doc["_id"], doc.get("importLine")) in wanted])


class DrySink:
    """A dry run's sink: counts what would be written, writes nothing (duplicates are not looked up)."""

    async def insert(self, batch: Batch) -> tuple[int, int, list[int]]:
        return len(batch.ids), 0, []
