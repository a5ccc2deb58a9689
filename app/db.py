"""The MongoDB client, collection names and every index, in one place."""

from __future__ import annotations

import enum
from importlib.metadata import version

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.errors import PyMongoError

CUSTOMERS = "customers"
IMPORT_STATE = "import_state"
IMPORT_ERRORS = "import_errors"
SERVICE_META = "service_meta"  # small documents about the data, by _id (app/customers/census.py)

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


class Planner(enum.Enum):
    """How the server plans a `find`, which decides the query shapes that stay on an index.

    MONGODB: any MongoDB server. SECANTUS: SecantusDB 0.7's Python server, which uses an index only for a filter
    whose single top-level clause is an equality, a range or an `$in` on an indexed field (`$and`, `$or` and
    `$elemMatch` scan the collection), and whose `count` decodes every document whatever the filter."""

    MONGODB = "mongodb"
    SECANTUS = "secantus"


async def query_planner(db: AsyncDatabase) -> Planner:
    """SecantusDB says who it is in buildInfo (`secantusVersion`); every other server is planned as MongoDB."""
    info = await db.client.admin.command("buildInfo")
    return Planner.SECANTUS if "secantusVersion" in info else Planner.MONGODB


async def ping(client: AsyncMongoClient) -> bool:
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
