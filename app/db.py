"""The MongoDB client, collection names and every index, in one place."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any, TypeVar

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.errors import AutoReconnect, ConnectionFailure, NetworkTimeout, PyMongoError

log = logging.getLogger(__name__)
DUPLICATE_KEY = 11000  # MongoDB's E11000
TRANSIENT = (AutoReconnect, ConnectionFailure, NetworkTimeout)
T = TypeVar("T")

CUSTOMERS = "customers"
IMPORT_STATE = "import_state"
IMPORT_ERRORS = "import_errors"
RUNNING_INDEX = "one_running_job"

# customerId is stored as _id, so the unfiltered list walks the _id index. Each filter has an index that starts
# with its key and continues with _id: an equality on the key walks its matches in the list's order and stops at
# the page's limit, with no sort (the keys: app/customers/document.py; a `q` of 1 or 2 characters is the one
# exception, app/customers/repository.py). What each index entry costs at ingest: docs/performance.md
# (scripts/bench_indexes.py).
INDEXES: dict[str, list[IndexModel]] = {
    CUSTOMERS: [
        IndexModel([("searchKeys", ASCENDING), ("_id", ASCENDING)], name="searchKeys_id"),
        IndexModel([("emailKey", ASCENDING), ("_id", ASCENDING)], name="emailKey_id"),
        IndexModel([("countryKey", ASCENDING), ("_id", ASCENDING)], name="countryKey_id"),
    ],
    IMPORT_STATE: [
        # MongoDB itself enforces one RUNNING job: a second insert/update to RUNNING fails with E11000.
        IndexModel(
            [("status", ASCENDING)], name=RUNNING_INDEX, unique=True, partialFilterExpression={"status": "RUNNING"}
        ),
        IndexModel([("startedAt", DESCENDING)], name="startedAt"),
        IndexModel([("updatedAt", DESCENDING)], name="updatedAt"),  # the latest job: the one that ran last
    ],
    IMPORT_ERRORS: [
        IndexModel([("jobId", ASCENDING), ("line", ASCENDING)], name="job_line"),
    ],
}
# What earlier versions kept and this one migrates away from (app/customers/repository.migrate_customers): one
# multikey index for every filter, and a census of customers for SecantusDB's Python server.
LEGACY_INDEXES = ("searchKeys",)
LEGACY_COLLECTIONS = ("service_meta",)
# The version of the customers' keys a database holds, recorded by the migration in MIGRATIONS: 1, one tagged
# multikey array; 2, per-filter keys with every prefix of 1 to 3 characters in `searchKeys`; 3, the first 3.
MIGRATIONS = "migrations"
KEYS_VERSION = 3


def make_client(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient[dict[str, Any]]:
    """One client per app (it belongs to one event loop), identified to the server. Its writes are journaled
    (j:true) before they are acknowledged: an import goes on from what was acknowledged, so a server that loses
    an acknowledged write in a crash (a standalone mongod's default, j:false, can) would lose rows for good
    (docs/performance.md, issue 22: tests/system/test_database_crash.py)."""
    return AsyncMongoClient(
        uri,
        journal=True,
        driver=DriverInfo(name="customer-import", version=version("customer-import")),
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="customer-import",
    )


async def ensure_indexes(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Create all indexes; idempotent (an existing identical index is a no-op)."""
    for collection, models in INDEXES.items():
        await db[collection].create_indexes(models)


async def ping(client: AsyncMongoClient[dict[str, Any]]) -> bool:
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True


class WriteFailed(Exception):
    """A write error that is not a duplicate key, or an outage longer than the retry budget."""


async def retry(operation: Callable[[], Awaitable[T]], *, seconds: float, what: str) -> T:
    """Run `operation`, retrying transient database errors with capped exponential backoff for `seconds`."""
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
