"""The MongoDB client, collection names and every index, in one place."""

from __future__ import annotations

from importlib.metadata import version

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.driver_info import DriverInfo
from pymongo.errors import PyMongoError

from app.customers.document import SEARCH_KEYS_VERSION

CUSTOMERS = "customers"
IMPORT_STATE = "import_state"
IMPORT_ERRORS = "import_errors"
META = "app_meta"  # {_id: "searchKeys", version}: every stored customer's searchKeys are of this version

# Every secondary index costs ingest throughput (each insert updates each index, see the README's Performance
# section), so customers carry ONE everywhere: customerId is stored as _id (no second unique index; the
# default order), and the multikey (`searchKeys`, `_id`) holds the lower-cased first/last name, company and
# email plus the tagged country and the sample keys (app/customers/document.py), each with the customer's
# _id: it serves the `q` prefix search, the exact `email` filter and the `country` filter, the last two in
# _id order (a page of a country is an index range, on MongoDB and, in _id windows, on SecantusDB).
INDEXES: dict[str, list[IndexModel]] = {
    CUSTOMERS: [
        IndexModel([("searchKeys", ASCENDING), ("_id", ASCENDING)], name="searchKeys_id"),
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


# SecantusDB only: its planner reads an `_id` range through the `_id_` index never, but through a secondary
# index whose first field is `_id` (app/customers/listing.py); MongoDB needs no such index. Compound and
# ascending on purpose: SecantusDB 0.7 range scans of a descending string index skip ids (e.g. "" and "10" in
# ["", "10"]), and it will not create a second ascending index on `_id` alone.
SECANTUS_INDEXES: dict[str, list[IndexModel]] = {
    CUSTOMERS: [IndexModel([("_id", ASCENDING), ("createdAt", ASCENDING)], name="id_order")],
}
# Indexes an earlier version created and this one replaced: dropped at start.
OBSOLETE_INDEXES: dict[str, list[str]] = {CUSTOMERS: ["searchKeys"]}


async def is_secantus(db: AsyncDatabase) -> bool:
    return "secantusVersion" in await db.client.admin.command("buildInfo")


async def ensure_indexes(db: AsyncDatabase) -> None:
    """Create all indexes, drop replaced ones; idempotent (an existing identical index is a no-op). A database
    without customers has current search keys; one written by an older version needs them rewritten
    (CustomerRepository.refresh_search_keys, which the app runs in the background)."""
    extra = SECANTUS_INDEXES if await is_secantus(db) else {}
    for collection in INDEXES.keys() | extra.keys():
        await db[collection].create_indexes([*INDEXES.get(collection, []), *extra.get(collection, [])])
    for collection, names in OBSOLETE_INDEXES.items():
        existing = [index["name"] async for index in await db[collection].list_indexes()]
        for name in names:
            if name in existing:
                await db[collection].drop_index(name)
    if not await search_keys_current(db) and await db[CUSTOMERS].estimated_document_count() == 0:
        await mark_search_keys_current(db)


async def search_keys_current(db: AsyncDatabase) -> bool:
    marker = await db[META].find_one({"_id": "searchKeys"})
    return marker is not None and marker.get("version", 0) >= SEARCH_KEYS_VERSION


async def mark_search_keys_current(db: AsyncDatabase) -> None:
    await db[META].update_one({"_id": "searchKeys"}, {"$max": {"version": SEARCH_KEYS_VERSION}}, upsert=True)


async def ping(client: AsyncMongoClient) -> bool:
    try:
        await client.admin.command("ping")
    except PyMongoError:
        return False
    return True
