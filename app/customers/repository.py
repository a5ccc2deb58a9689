"""Queries on the `customers` collection. The customerId <-> _id mapping lives here only."""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import uuid
from typing import Any

import msgspec
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from app.customers.document import INDEXED, country_key, search_keys
from app.customers.schemas import Customer, CustomerCreate, CustomerPage, CustomerUpdate
from app.db import Planner
from app.errors import Conflict, InvalidInput, NotFound

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


def _prefix_range(q: str) -> tuple[str, str]:
    prefix = q.lower()
    return prefix, prefix + "\U0010ffff"


def _filter(*, email: str | None, country: str | None, q: str | None) -> dict[str, Any]:
    """Each filter is a condition on the one multikey index `searchKeys` (see app/db.py)."""
    keys: list[dict[str, Any]] = []
    query: dict[str, Any] = {}
    if email is not None:
        keys.append({"searchKeys": email.lower()})
        query["email"] = email
    if country is not None:
        keys.append({"searchKeys": country_key(country)})
    if q:
        low, high = _prefix_range(q)
        # $elemMatch: ONE key must be in the range. A bare range on an array matches when some key is >= the
        # prefix and another (e.g. the "\x1ecountry:" one) is below the bound: q=ann matched "Joann" in France.
        keys.append({"searchKeys": {"$elemMatch": {"$gte": low, "$lt": high}}})
    if keys:
        query["$and"] = keys
    return query


def _one_clause_filter(*, email: str | None, country: str | None, q: str | None) -> dict[str, Any]:
    """For SecantusDB (Planner.SECANTUS): the filter's most selective condition alone, as the single top-level
    clause it runs on the `searchKeys` index. `_matches` then applies all of `_filter`'s meaning in Python."""
    if email is not None:
        return {"searchKeys": email.lower()}
    if q:
        # A bare range: the index hands over only documents with one key inside it; `_matches` re-checks.
        low, high = _prefix_range(q)
        return {"searchKeys": {"$gte": low, "$lt": high}}
    assert country is not None
    return {"searchKeys": country_key(country)}


def _matches(doc: dict[str, Any], *, email: str | None, country: str | None, q: str | None) -> bool:
    """What `_filter` means, for one document with its `_id`, `email` and `searchKeys`."""
    keys = doc.get("searchKeys")
    keys = [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []
    if email is not None and not (doc.get("email") == email and email.lower() in keys):
        return False
    if country is not None and country_key(country) not in keys:
        return False
    if q:
        low, high = _prefix_range(q)
        return any(low <= key < high for key in keys)
    return True


def _id_order(value: Any) -> tuple[int, Any]:
    """Sorts `_id`s as MongoDB does (numbers, then strings by UTF-8 bytes, i.e. by code points); customer ids are
    strings, this only keeps an operator's odd document from breaking the sort."""
    if isinstance(value, str):
        return 1, value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return 0, value
    return 2, repr(value)


class CustomerRepository:
    def __init__(self, collection: AsyncCollection, planner: Planner = Planner.MONGODB):
        self.collection = collection
        self.planner = planner

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
                # {field: None} also matches a missing field, which is how an absent optional field is stored.
                guard = {"_id": customer_id, **{name: current.get(name) for name in INDEXED}}
                merged = {**current, **to_set}
                for name in to_unset:
                    merged.pop(name, None)
                if keys := search_keys(merged):
                    update["$set"]["searchKeys"] = keys
                else:
                    unset["searchKeys"] = ""
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

    async def list(self, *, limit: int, page: int | None, after: str | None, email: str | None = None,
                   country: str | None = None, q: str | None = None) -> CustomerPage:
        """A page in _id order: by page number (skip) or, faster on big collections, after a cursor."""
        if self.planner is Planner.SECANTUS and (email is not None or country is not None or q):
            return await self._list_one_clause(limit=limit, page=page, after=after, email=email, country=country, q=q)
        query = _filter(email=email, country=country, q=q)
        counted = dict(query)
        if after is not None:
            query["_id"] = {"$gt": decode_cursor(after)}
        skip = 0 if after is not None else ((page or 1) - 1) * limit
        # One more than the page: whether another customer follows, so a keyset walk never ends on an empty page.
        cursor = self.collection.find(query).sort("_id", ASCENDING).skip(skip).limit(limit + 1)
        items = [to_customer(doc) async for doc in cursor]
        more = len(items) > limit
        del items[limit:]
        # An unfiltered total comes from collection metadata: counting 2 M documents per request is slow.
        total = (await self.collection.count_documents(counted) if counted
                 else await self.collection.estimated_document_count())
        next_cursor = encode_cursor(items[-1].customer_id) if more else None
        return CustomerPage(items=items, limit=limit, total=total,
                            page=None if after is not None else (page or 1), next_cursor=next_cursor)


    async def _list_one_clause(self, *, limit: int, page: int | None, after: str | None, email: str | None,
                               country: str | None, q: str | None) -> CustomerPage:
        """A filtered page on SecantusDB, where `_filter`'s `$and` would decode the whole collection, and so would a
        `count` of any filter. One indexed clause reads the matching ids (it costs what it matches, as any query
        there does: no limit stops a scan early), which gives the total; then the page is read by `_id`."""
        after_id = decode_cursor(after) if after is not None else None
        flags = {"email": email, "country": country, "q": q}
        projection = {"_id": 1, "email": 1, "searchKeys": 1}
        ids = [doc["_id"] async for doc in self.collection.find(_one_clause_filter(**flags), projection)
               if _matches(doc, **flags)]
        ids.sort(key=_id_order)
        if after_id is not None:
            start = bisect.bisect_right(ids, _id_order(after_id), key=_id_order)
        else:
            start = ((page or 1) - 1) * limit
        wanted = ids[start:start + limit]
        found = {doc["_id"]: doc async for doc in self.collection.find({"_id": {"$in": wanted}})} if wanted else {}
        # A customer deleted between the two reads is left out; the page is then short by one.
        items = [to_customer(found[customer_id]) for customer_id in wanted if customer_id in found]
        # The ids say whether another customer follows, so a keyset walk never ends on an empty page here.
        next_cursor = encode_cursor(wanted[-1]) if wanted and start + limit < len(ids) else None
        return CustomerPage(items=items, limit=limit, total=len(ids),
                            page=None if after is not None else (page or 1), next_cursor=next_cursor)
