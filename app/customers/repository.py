"""Queries on the `customers` collection. The customerId <-> _id mapping lives here only."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Any

import msgspec
from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from app.customers.document import INDEXED, search_keys
from app.customers.listing import DirectListing, Filters, Listing
from app.customers.schemas import Customer, CustomerCreate, CustomerPage, CustomerUpdate
from app.errors import Conflict, InvalidInput, NotFound

# Read only the fields a Customer has: another field in a stored document (a newer version's, an operator's)
# must not turn every read of it into a 500 (Customer forbids unknown fields).
_READ = frozenset(field.encode_name for field in msgspec.structs.fields(Customer))


def encode_cursor(customer_id: str) -> str:
    return base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    # validate=True: the lenient decoder drops unknown characters, so a mangled cursor restarted at the first page.
    try:
        return base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"after={cursor!r} is not a cursor returned by this API") from None


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


class CustomerRepository:
    def __init__(self, collection: AsyncCollection, listing: Listing | None = None):
        self.collection = collection
        self.listing = listing or DirectListing()

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
        doc["searchKeys"] = search_keys(doc)
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict(f"customer {customer_id!r} already exists", customerId=customer_id) from None
        return to_customer(doc)

    async def update(self, customer_id: str, data: CustomerUpdate) -> Customer:
        changes = _to_stored(msgspec.to_builtins(data, builtin_types=(dt.date,)))
        to_set = {k: v for k, v in changes.items() if v is not None}
        to_unset = {k: "" for k, v in changes.items() if v is None}
        update: dict[str, Any] = {"$set": {**to_set, "updatedAt": dt.datetime.now(dt.UTC), "handEdited": True}}
        if to_unset:
            update["$unset"] = to_unset
        doc = await self.collection.find_one_and_update(
            {"_id": customer_id}, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise NotFound(f"customer {customer_id!r} does not exist")
        if any(name in changes for name in INDEXED):
            doc["searchKeys"] = search_keys(doc)
            await self.collection.update_one({"_id": customer_id}, {"$set": {"searchKeys": doc["searchKeys"]}})
        return to_customer(doc)

    async def delete(self, customer_id: str) -> None:
        result = await self.collection.delete_one({"_id": customer_id})
        if result.deleted_count == 0:
            raise NotFound(f"customer {customer_id!r} does not exist")

    async def refresh_search_keys(self, batch: int = 1000) -> int:
        """Rewrite the searchKeys of every customer whose keys are not what search_keys() gives now (a database
        written by an older version); returns how many. Pages through the collection as the list endpoint does;
        a customer changed meanwhile keeps its new keys (the rewrite is conditional on the old ones)."""
        rewritten = 0
        after: str | None = None
        while True:
            result = await self.listing.page(self.collection, Filters(), limit=batch, skip=0, after=after)
            writes = []
            for doc in result.docs:
                old, new = doc.get("searchKeys"), search_keys(doc)
                if old != new and (old is not None or new):
                    unchanged = {"_id": doc["_id"], "searchKeys": old if old is not None else {"$exists": False}}
                    writes.append(UpdateOne(unchanged, {"$set": {"searchKeys": new}} if new
                                            else {"$unset": {"searchKeys": ""}}))
            if writes:
                rewritten += (await self.collection.bulk_write(writes, ordered=False)).modified_count
            if not result.more or not result.docs:
                return rewritten
            after = result.docs[-1]["_id"]

    async def list(self, *, limit: int, page: int | None, after: str | None, email: str | None = None,
                   country: str | None = None, q: str | None = None) -> CustomerPage:
        """A page in _id order: by page number (skip) or, faster on big collections, after a cursor. nextCursor is
        set only when another customer follows, so a keyset walk never ends on an empty page."""
        after_id = decode_cursor(after) if after is not None else None
        skip = 0 if after is not None else ((page or 1) - 1) * limit
        result = await self.listing.page(self.collection, Filters(email=email, country=country, q=q or None),
                                         limit=limit, skip=skip, after=after_id)
        items = [to_customer(doc) for doc in result.docs]
        next_cursor = encode_cursor(items[-1].customer_id) if result.more and items else None
        return CustomerPage(items=items, limit=limit, total=result.total, total_exact=result.exact,
                            page=None if after is not None else (page or 1), next_cursor=next_cursor)
