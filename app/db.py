"""The MongoDB client, collection names and every index, in one place."""

from __future__ import annotations

from importlib.metadata import version

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.errors import PyMongoError

CUSTOMERS = "customers"
IMPORT_STATE = "import_state"
IMPORT_ERRORS = "import_errors"

# Every secondary index costs ingest throughput (each insert updates each index; on SecantusDB a second
# index roughly halves the insert rate, see the README's Performance section), so customers carry ONE:
# customerId is stored as _id (no second unique index; the default order), and the multikey `searchKeys`
# holds the lower-cased first/last name, company and email plus the tagged country, which serves the
# `q` prefix search, the exact `email` filter and the `country` filter.
INDEXES: dict[str, list[IndexModel]] = {
    CUSTOMERS: [
        IndexModel([("searchKeys", ASCENDING)], name="searchKeys"),
    ],
    IMPORT_STATE: [
        # MongoDB itself enforces one RUNNING job: a second insert/update to RUNNING fails with E11000.
        IndexModel([("status", ASCENDING)], name="one_running_job", unique=True,
                   partialFilterExpression={"status": "RUNNING"}),
        IndexModel([("startedAt", DESCENDING)], name="startedAt"),
    ],
    IMPORT_ERRORS: [
        IndexModel([("jobId", ASCENDING), ("line", ASCENDING)], name="job_line"),
    ],
}


def make_client(uri: str, *, timeout_ms: int = 5000) -> AsyncMongoClient:
    """One client per app (it belongs to one event loop), identified to the server."""
    return AsyncMongoClient(
        uri,
        driver=DriverInfo(name="customer-import", version=version("customer-import")),
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        appname="customer-import",
    )


async def ensure_indexes(db: AsyncDatabase) -> None:
    """Create all indexes; idempotent (an existing identical index is a no-op)."""
    for collection, models in INDEXES.items():
        await db[collection].create_indexes(models)


async def ping(client: AsyncMongoClient) -> bool:
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
