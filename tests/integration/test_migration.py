"""The start-up migration of customers written by earlier versions: every customer rekeyed in bounded batches
with logged progress, lists right meanwhile, the old indexes dropped and the keys' version recorded last, a
crash part way resumed by the next start, a customer changed meanwhile left alone."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from app.customers.document import KEYS, index_keys
from app.customers.repository import MIGRATION_BATCH, CustomerRepository, migrate_customers
from app.customers.schemas import CustomerUpdate
from app.db import KEYS_VERSION, LEGACY_INDEXES, MIGRATIONS, ensure_indexes

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
SEARCHED = ("firstName", "lastName", "company", "email")
Version = Callable[[str, dict[str, Any]], dict[str, Any]]


def every_prefix_version(customer_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A customer as the version before issue 22 (ab7dd32) stored it: `searchKeys` with every prefix of 1 to 3
    characters of each lower-cased term, `searchTerms`, `emailKey` and `countryKey`."""
    terms = list(dict.fromkeys(value.lower()[:256] for name in SEARCHED if (value := fields.get(name))))
    keys = list(dict.fromkeys(term[:n] for term in terms for n in range(1, min(len(term), 3) + 1)))
    doc = {"_id": customer_id, **fields, "createdAt": NOW, "updatedAt": NOW, "searchKeys": keys, "searchTerms": terms}
    if email := fields.get("email"):
        doc["emailKey"] = email.lower()
    if country := fields.get("country"):
        doc["countryKey"] = country.lower()
    return doc


def tagged_version(customer_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A customer as the version before the per-filter keys stored it: one `searchKeys` array with the
    lower-cased terms, the country tagged "\\x1ecountry:" and the id tagged "\\x1did:"."""
    terms = [value.lower() for name in SEARCHED if (value := fields.get(name))]
    tags = ([f"\x1ecountry:{fields['country']}"] if fields.get("country") else []) + [f"\x1did:{customer_id}"]
    return {"_id": customer_id, **fields, "createdAt": NOW, "updatedAt": NOW, "searchKeys": terms + tags}


# Each earlier version: how it stored a customer and the index it kept for that.
VERSIONS: dict[str, tuple[Version, list[tuple[str, int]], str]] = {
    "every-prefix (ab7dd32)": (every_prefix_version, [("searchKeys", 1), ("_id", 1)], "searchKeys_id"),
    "tagged": (tagged_version, [("searchKeys", 1)], "searchKeys"),
}


async def written_by(db: AsyncDatabase, version: str, count: int) -> list[dict[str, Any]]:
    """`count` customers as `version` stored them (half in France), its index, and one operator's document."""
    build, keys, name = VERSIONS[version]
    await db.customers.drop()
    await db[MIGRATIONS].drop()
    await db.customers.create_index(keys, name=name)
    await db.service_meta.insert_one({"_id": "customers", "idKeys": True, "count": count})
    old = [
        build(
            f"m{i:04d}",
            {
                "firstName": f"Ann{i}",
                "lastName": "Lee",
                "email": f"M{i}@X.org",
                **({"country": "France"} if i % 2 else {}),
            },
        )
        for i in range(count)
    ]
    await db.customers.insert_many([*old, {"_id": 7, "note": "an operator's document without customer fields"}])
    await ensure_indexes(db)
    return old


async def assert_migrated(db: AsyncDatabase, count: int) -> None:
    indexes = await db.customers.index_information()
    assert not set(LEGACY_INDEXES) & set(indexes) and "searchKeys_id" in indexes
    assert "service_meta" not in await db.list_collection_names()
    assert await db[MIGRATIONS].find_one({"_id": "customers"}) == {"_id": "customers", "keys": KEYS_VERSION}
    async for doc in db.customers.find():
        fields = {name: doc[name] for name in ("firstName", "lastName", "email", "country") if name in doc}
        assert {name: doc[name] for name in KEYS if name in doc} == index_keys(fields), doc["_id"]
    await assert_lists(db, count)


async def assert_lists(db: AsyncDatabase, count: int) -> None:
    """What a few lists of the customers `written_by` stored give, whatever their keys' version."""
    repository = CustomerRepository(db.customers)
    assert (await repository.list(limit=5, page=None, after=None, country="FRANCE")).total == count // 2
    found = await repository.list(limit=5, page=None, after=None, q="ann12")
    assert [c.customer_id for c in found.items] == ["m0012", "m0120", "m0121", "m0122", "m0123"]
    assert [c.customer_id for c in (await repository.list(limit=5, page=None, after=None, q="A")).items] == [
        "m0000",
        "m0001",
        "m0002",
        "m0003",
        "m0004",
    ]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_migration_rekeys_every_customer_once(
    db: AsyncDatabase, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    await written_by(db, version, 2500)
    caplog.set_level(logging.INFO, logger="app.customers.repository")
    await migrate_customers(db)

    await assert_migrated(db, 2500)
    progress = [r.message for r in caplog.records if r.message.startswith("migrated ")]
    assert progress == [f"migrated {n} of about 2501 customers" for n in range(MIGRATION_BATCH, 2501, MIGRATION_BATCH)]
    caplog.clear()
    await migrate_customers(db)  # done once: the next start finds nothing to do
    assert not caplog.records


async def test_a_migration_cut_short_is_finished_by_the_next_start(db: AsyncDatabase) -> None:
    """A crash after the first batch leaves the old index (its marker): the next start goes over every customer
    again, the rekeyed ones included (the writes are idempotent)."""
    await written_by(db, "every-prefix (ab7dd32)", 2500)

    class CrashAfterOneBatch:
        def __init__(self) -> None:
            self.collection, self.writes = db.customers, 0

        def __getattr__(self, name: str) -> Any:
            return getattr(self.collection, name)

        async def bulk_write(self, ops: list[Any], **kwargs: Any) -> Any:
            self.writes += 1
            if self.writes > 1:
                raise ConnectionResetError("the app was killed here")
            return await self.collection.bulk_write(ops, **kwargs)

    crashing = CrashAfterOneBatch()
    with pytest.raises(ConnectionResetError):
        await migrate_customers(Database(db, crashing))  # type: ignore[arg-type]
    assert crashing.writes == 2 and await db[MIGRATIONS].find_one() is None
    old = await db.customers.count_documents({"searchKeys": "a"})  # a 1-character prefix: the old keys
    assert 2500 - MIGRATION_BATCH <= old < 2500  # the first batch was written (the operator's document in it or not)
    await assert_lists(db, 2500)  # right on a half-migrated database
    await migrate_customers(db)
    await assert_migrated(db, 2500)


class Database:
    """The test database, with `customers` replaced by a wrapper the test controls."""

    def __init__(self, db: AsyncDatabase, customers: Any) -> None:
        self.db, self.customers = db, customers

    def __getitem__(self, name: str) -> Any:
        return self.customers if name == "customers" else self.db[name]

    async def drop_collection(self, name: str) -> None:
        await self.db.drop_collection(name)


async def test_the_migration_leaves_a_customer_changed_meanwhile_alone(db: AsyncDatabase) -> None:
    """A PATCH between the migration's read and its write already wrote the right keys: the guarded write
    must not put back keys of the old values."""
    await db.customers.drop()
    await db[MIGRATIONS].drop()
    fields = {"firstName": "Ann", "lastName": "Lee", "email": "a@b.c"}
    await db.customers.insert_one(every_prefix_version("p1", fields))
    await ensure_indexes(db)
    repository = CustomerRepository(db.customers)

    class PatchFirst:
        """The customers collection, whose migration read is followed by a PATCH before the write."""

        def __getattr__(self, name: str) -> Any:
            return getattr(db.customers, name)

        async def bulk_write(self, ops: list[Any], **kwargs: Any) -> Any:
            await repository.update("p1", CustomerUpdate(first_name="Zed"))
            return await db.customers.bulk_write(ops, **kwargs)

    await migrate_customers(Database(db, PatchFirst()))  # type: ignore[arg-type]
    stored = await db.customers.find_one({"_id": "p1"})
    assert stored is not None and stored["firstName"] == "Zed"
    assert {name: stored[name] for name in KEYS if name in stored} == index_keys(stored)
    assert "ann" not in stored["searchTerms"] and stored["searchKeys"] == ["zed", "lee", "a@b"]
