"""Queries on the `customers` collection. The customerId <-> _id mapping lives here only."""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
from pymongo import ASCENDING, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.cursor import AsyncCursor
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.customers.document import INDEXED, KEYS, PREFIX_CHARS, index_keys, text_key
from app.customers.schemas import Customer, CustomerCreate, CustomerPage, CustomerUpdate
from app.db import CUSTOMERS, LEGACY_COLLECTIONS, LEGACY_INDEXES
from app.errors import Conflict, InvalidInput, NotFound

log = logging.getLogger(__name__)

# Read only the fields a Customer has: another field in a stored document (a newer version's, an operator's)
# must not turn every read of it into a 500 (Customer forbids unknown fields).
_READ = frozenset(field.encode_name for field in msgspec.structs.fields(Customer))


UPDATE_ATTEMPTS = 5  # compare-and-set rounds of a PATCH before 409


def encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    # validate=True: the lenient decoder drops unknown characters, so a mangled cursor restarted at the first page.
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"after={cursor!r} is not a cursor returned by this API") from None


def stored_field(field: str) -> str:
    """A customer field's name in a stored document (the API's customerId is _id)."""
    return "_id" if field == "customerId" else field


def to_customer(doc: dict[str, Any]) -> Customer:
    fields = {k: v for k, v in doc.items() if k in _READ}
    if isinstance(fields.get("subscriptionDate"), dt.datetime):
        fields["subscriptionDate"] = fields["subscriptionDate"].date()
    fields["customerId"] = doc["_id"]
    fields["handEdited"] = bool(doc.get("handEdited"))
    return msgspec.convert(fields, Customer, from_attributes=False)


def _now() -> dt.datetime:
    """Now, truncated to what a BSON date holds, so a write's response equals what a later read returns."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _to_stored(values: dict[str, Any]) -> dict[str, Any]:
    """API values -> stored values: dates become BSON dates (UTC midnight)."""
    date = values.get("subscriptionDate")
    if isinstance(date, dt.date):
        values["subscriptionDate"] = dt.datetime(date.year, date.month, date.day, tzinfo=dt.UTC)
    return values


def _q_filter(q: str) -> dict[str, Any]:
    """Some searched term starts with `q`, in any case (app/customers/document.py: what `searchKeys` holds)."""
    prefix = text_key(q)
    if len(prefix) <= PREFIX_CHARS:
        return {"searchKeys": prefix}
    # The equality is the index range; the range over the (unindexed) whole terms keeps those that start with q.
    return {
        "searchKeys": prefix[:PREFIX_CHARS],
        "searchTerms": {"$elemMatch": {"$gte": prefix, "$lt": prefix + "\U0010ffff"}},
    }


def _filter(*, email: str | None, country: str | None, q: str | None) -> dict[str, Any]:
    """Each filter is an equality on a key whose index continues with `_id` (app/db.py), so any of them walks its
    matches in the list's order."""
    query: dict[str, Any] = {}
    if email is not None:
        query["emailKey"] = text_key(email)
    if country is not None:
        query["countryKey"] = text_key(country)
    if q:
        query.update(_q_filter(q))
    return query


TOTAL_CAP = 10_000  # how far a filtered total is counted (a 1-letter `q` can match most customers)
MIGRATION_BATCH = 1000  # customers rewritten per bulk_write by the start-up migration


async def migrate_customers(db: AsyncDatabase[dict[str, Any]]) -> None:
    """Bring a database written by a version before the per-filter keys up to date, once, at start: every
    customer gets today's keys (its `searchKeys` lose the tagged country and id entries), in batches, then the
    old index and the old census collection are dropped. A crash part way leaves the old index, so the next
    start goes over every customer again (the writes are idempotent)."""
    customers = db[CUSTOMERS]
    stale = [name for name in await customers.index_information() if name in LEGACY_INDEXES]
    if not stale:
        return
    total = await customers.estimated_document_count()
    log.info("migrating %d customers to this version's index keys (once)", total)
    done, ops = 0, []
    async for doc in customers.find({}, dict.fromkeys(INDEXED, 1), batch_size=MIGRATION_BATCH):
        ops.append(_rekey(doc))
        if len(ops) == MIGRATION_BATCH:
            done += await _write_keys(customers, ops)
            ops = []
            log.info("migrated %d of about %d customers", done, total)
    done += await _write_keys(customers, ops)
    for name in stale:
        await customers.drop_index(name)
    for name in LEGACY_COLLECTIONS:
        await db.drop_collection(name)
    log.info("migration done: %d customers rekeyed", done)


def _keys_of(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """($set, $unset) that give a stored customer the keys of these fields (a key of empty fields is removed)."""
    keys = index_keys(doc)
    return keys, {name: "" for name in KEYS if name not in keys}


def _unchanged(customer_id: Any, doc: dict[str, Any]) -> dict[str, Any]:
    """A filter matching the customer only while its indexed fields are still those of `doc` (compare-and-set;
    {field: None} also matches a missing field, which is how an absent optional field is stored)."""
    return {"_id": customer_id, **{name: doc.get(name) for name in INDEXED}}


def _rekey(doc: dict[str, Any]) -> UpdateOne:
    """Today's keys for a stored customer, written only if its indexed fields are still the ones read (a
    concurrent PATCH or import writes the keys itself)."""
    to_set, to_unset = _keys_of(doc)
    update: dict[str, Any] = {"$set": to_set} if to_set else {}
    if to_unset:
        update["$unset"] = to_unset
    return UpdateOne(_unchanged(doc["_id"], doc), update)


async def _write_keys(customers: AsyncCollection[dict[str, Any]], ops: list[UpdateOne]) -> int:
    if ops:
        await customers.bulk_write(ops, ordered=False)
    return len(ops)


class CustomerRepository:
    def __init__(
        self,
        collection: AsyncCollection[dict[str, Any]],
        *,
        total_cap: int = TOTAL_CAP,
        total_ttl: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.collection = collection
        self.total_cap = total_cap  # a filtered total above this is reported as the cap, with totalCapped
        self.total_ttl = total_ttl  # how long the unfiltered total is reused (0: counted for every page)
        self.clock = clock
        self._total: tuple[float, int] | None = None  # (when counted, the count)

    async def get(self, customer_id: str) -> Customer:
        doc = await self.collection.find_one({"_id": customer_id})
        if doc is None:
            raise NotFound(f"customer {customer_id!r} does not exist")
        return to_customer(doc)

    async def create(self, data: CustomerCreate) -> Customer:
        now = _now()
        values = _to_stored(msgspec.to_builtins(data, builtin_types=(dt.date,)))
        customer_id = values.pop("customerId", None) or uuid.uuid4().hex[:16]
        doc = {"_id": customer_id, **values, "createdAt": now, "updatedAt": now, "handEdited": True}
        doc.update(index_keys(doc))
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"customer {customer_id!r} already exists", customerId=customer_id) from None
        return to_customer(doc)

    async def update(self, customer_id: str, data: CustomerUpdate) -> Customer:
        """One write with the fields and the search keys they give. When an indexed field changes, the keys are
        computed from the stored document and written only if its indexed fields are still the ones read
        (compare-and-set); a concurrent change to them makes this read again."""
        changes = _to_stored(msgspec.to_builtins(data, builtin_types=(dt.date,)))
        to_set = {k: v for k, v in changes.items() if v is not None}
        to_unset = {k: "" for k, v in changes.items() if v is None}
        guard: dict[str, Any] = {"_id": customer_id}
        for _ in range(UPDATE_ATTEMPTS):
            update: dict[str, Any] = {"$set": {**to_set, "updatedAt": _now(), "handEdited": True}}
            unset = dict(to_unset)
            if any(name in changes for name in INDEXED):
                current = await self.collection.find_one({"_id": customer_id}, {name: 1 for name in INDEXED})
                if current is None:
                    break
                guard = _unchanged(customer_id, current)
                merged = {**current, **to_set}
                for name in to_unset:
                    merged.pop(name, None)
                keys, stale = _keys_of(merged)
                update["$set"].update(keys)
                unset.update(stale)
            if unset:
                update["$unset"] = unset
            doc = await self.collection.find_one_and_update(guard, update, return_document=ReturnDocument.AFTER)
            if doc is not None:
                return to_customer(doc)
            if len(guard) == 1:
                break
        else:
            raise Conflict(f"customer {customer_id!r} kept changing during the update; retry", customerId=customer_id)
        raise NotFound(f"customer {customer_id!r} does not exist")

    async def delete(self, customer_id: str) -> None:
        result = await self.collection.delete_one({"_id": customer_id})
        if result.deleted_count == 0:
            raise NotFound(f"customer {customer_id!r} does not exist")

    async def list(
        self,
        *,
        limit: int,
        page: int | None,
        after: str | None,
        email: str | None = None,
        country: str | None = None,
        q: str | None = None,
    ) -> CustomerPage:
        """A page in _id order: by page number (skip) or, faster on big collections, after a cursor. Every shape
        is one index walk in _id order that stops at the limit (tests/integration/test_listing.py checks the
        plans); the total is counted alongside."""
        query = _filter(email=email, country=country, q=q)
        counted = dict(query)
        if after is not None:
            query["_id"] = {"$gt": decode_cursor(after)}
        skip = 0 if after is not None else ((page or 1) - 1) * limit
        # One more than the page: whether another customer follows, so a keyset walk never ends on an empty page.
        cursor = self.collection.find(query).sort("_id", ASCENDING).skip(skip).limit(limit + 1)
        docs, (total, capped) = await asyncio.gather(cursor.to_list(), self._count(counted))
        items = [to_customer(doc) for doc in docs[:limit]]
        next_cursor = encode_cursor(items[-1].customer_id) if len(docs) > limit else None
        return CustomerPage(
            items=items,
            limit=limit,
            total=total,
            total_capped=capped,
            page=None if after is not None else (page or 1),
            next_cursor=next_cursor,
        )

    async def _count(self, query: dict[str, Any]) -> tuple[int, bool]:
        """(total, whether it is capped). Unfiltered: the collection's metadata count, as counting millions per
        request would be slow; filtered: counted, but no further than the cap."""
        if not query:
            return await self._estimated_total(), False
        counted = await self.collection.count_documents(query, limit=self.total_cap + 1)
        return min(counted, self.total_cap), counted > self.total_cap

    async def _estimated_total(self) -> int:
        """The collection's count, reused for `total_ttl` seconds: every unfiltered page asks for it, it changes
        slowly, and on some servers it is a scan (docs/architecture.md, the cheapest correct answer)."""
        if self._total is not None and self.clock() - self._total[0] < self.total_ttl:
            return self._total[1]
        total = await self.collection.estimated_document_count()
        self._total = (self.clock(), total)
        return total

    def export_cursor(
        self, *, fields: tuple[str, ...], batch_size: int, email: str | None, country: str | None, q: str | None
    ) -> AsyncCursor[dict[str, Any]]:
        """Every customer matching the list's filters, in _id order, with only `fields` (API names): one cursor
        read `batch_size` at a time, the same index walk as a page of GET /customers without its limit."""
        query = _filter(email=email, country=country, q=q)
        projection = {stored_field(field): 1 for field in fields}
        return self.collection.find(query, projection).sort("_id", ASCENDING).batch_size(batch_size)
