"""Queries on the `customers` collection. The customerId <-> _id mapping lives here only."""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import logging
import uuid
from typing import Any

import msgspec
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.customers import census
from app.customers.document import ID_TAG, ID_TAG_END, INDEXED, country_key, search_keys
from app.customers.schemas import Customer, CustomerCreate, CustomerPage, CustomerUpdate
from app.db import CUSTOMERS, SERVICE_META, Planner
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


async def prepare_customers(db: AsyncDatabase, planner: Planner) -> None:
    """At start, after the indexes: what the list needs from the stored customers on this server."""
    if planner is Planner.SECANTUS:
        await CustomerRepository(db[CUSTOMERS], planner, db[SERVICE_META]).prepare_listing()


class CustomerRepository:
    def __init__(self, collection: AsyncCollection, planner: Planner = Planner.MONGODB,
                 meta: AsyncCollection | None = None):
        self.collection = collection
        self.planner = planner
        self.meta = meta  # service_meta, for the census (SecantusDB's unfiltered total)

    async def prepare_listing(self) -> None:
        """Give every stored customer its id entry in `searchKeys` (documents written before it existed), then
        record that they all have one, with their exact number (app/customers/census.py). One server-side
        update: instant on a new database, one pass over an old one. Done once; the service's writes keep it."""
        if self.meta is None or await census.read(self.meta) is not None:
            return
        own_entries = {"$ne": [{"$substrCP": ["$$this", 0, len(ID_TAG)]}, ID_TAG]}
        result = await self.collection.update_many({}, [{"$set": {"searchKeys": {"$concatArrays": [
            {"$filter": {"input": {"$ifNull": ["$searchKeys", []]}, "cond": own_entries}},
            {"$cond": [{"$eq": [{"$type": "$_id"}, "string"]}, [{"$concat": [ID_TAG, "$_id"]}], []]}]}}}])
        await self.meta.update_one({"_id": census.CUSTOMERS_ID},
                                   {"$set": {"idKeys": True, "count": result.matched_count}}, upsert=True)
        log.info("customers: id entries written for %d customers", result.matched_count)

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
        if self.meta is not None:
            await census.add(self.meta, 1)
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
        if self.meta is not None:
            await census.add(self.meta, -1)

    async def list(self, *, limit: int, page: int | None, after: str | None, email: str | None = None,
                   country: str | None = None, q: str | None = None) -> CustomerPage:
        """A page in _id order: by page number (skip) or, faster on big collections, after a cursor."""
        if self.planner is Planner.SECANTUS and (email is not None or country is not None or q):
            return await self._list_one_clause(limit=limit, page=page, after=after, email=email, country=country, q=q)
        if self.planner is Planner.SECANTUS and self.meta is not None and (known := await census.read(self.meta)):
            return await self._list_windows(limit=limit, page=page, after=after, count=known.get("count", 0))
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

    async def _list_windows(self, *, limit: int, page: int | None, after: str | None, count: int) -> CustomerPage:
        """An unfiltered page on SecantusDB, where `find().sort(_id).limit(n)` decodes the whole collection: the
        ids that follow are read as successive ranges of id entries in `searchKeys`, each an index range that
        costs what it holds, sized to hold about what is still needed (`IdWindows`)."""
        after_id = decode_cursor(after) if after is not None else None
        skip = 0 if after is not None else ((page or 1) - 1) * limit
        need = skip + limit + 1  # +1: whether another customer follows
        windows = IdWindows.of(self.collection, count)
        low, inclusive = after_id or "", after_id is None
        docs: list[dict[str, Any]] = []
        while len(docs) < need:
            high = windows.next_bound(low, need - len(docs))
            keys = {"$gte" if inclusive else "$gt": ID_TAG + low, "$lt": ID_TAG + high if high else ID_TAG_END}
            found = [doc async for doc in self.collection.find({"searchKeys": keys})]
            windows.saw(low, high, len(found))
            docs += sorted(found, key=lambda doc: doc["_id"])  # string ids only: only they have id entries
            if high is None:
                break
            low, inclusive = high, True
        items = [to_customer(doc) for doc in docs[skip:skip + limit]]
        more = len(docs) > skip + limit
        next_cursor = encode_cursor(items[-1].customer_id) if more and items else None
        # Read to the end from the first id: exact; else the census, but never fewer than were seen.
        exact = after_id is None and len(docs) < need
        total = len(docs) if exact else max(count, skip + len(items) + more)
        return CustomerPage(items=items, limit=limit, total=total,
                            page=None if after is not None else (page or 1), next_cursor=next_cursor)


class IdWindows:
    """Picks the upper bound of the next id range so that it holds about the ids still needed.

    An id's position in the id space is its first DIGITS characters read as base-127 digits (code points
    1..127; others count as 127); the density (ids per unit of position) is learnt from every range read
    and kept per collection, so a page usually takes one or two ranges. Any bound is correct: the ranges
    are contiguous and the last is open; a bad guess only costs a range that holds too much or too little."""

    DIGITS = 8
    SPACE = 127 ** DIGITS
    _density: dict[str, float] = {}  # shared on purpose: one estimate per collection, for every request

    def __init__(self, name: str, count: int):
        self.name = name
        # Before any range was read: the census spread over the printable ASCII part of the space.
        self.density = self._density.get(name) or max(count, 1) / (self.SPACE * 95 / 127)

    @classmethod
    def of(cls, collection: AsyncCollection, count: int) -> IdWindows:
        return cls(collection.full_name, count)

    @classmethod
    def position(cls, customer_id: str) -> int:
        digits = [min(max(ord(char), 1), 127) - 1 for char in customer_id[:cls.DIGITS]]
        digits += [0] * (cls.DIGITS - len(digits))
        value = 0
        for digit in digits:
            value = value * 127 + digit
        return value

    @classmethod
    def at(cls, position: int) -> str:
        chars = []
        for _ in range(cls.DIGITS):
            position, digit = divmod(position, 127)
            chars.append(chr(digit + 1))
        return "".join(reversed(chars)).rstrip("\x01")

    def next_bound(self, low: str, wanted: int) -> str | None:
        """The bound of a range starting at `low` meant to hold `wanted` ids (1.25x for luck), None when it
        reaches the end of the space."""
        width = max(1, int(wanted * 1.25 / self.density))
        end = self.position(low) + width
        if end >= self.SPACE:
            return None
        high = self.at(end)
        return high if high > low else None  # `low` beyond the digits' reach (non-ASCII): read to the end

    def saw(self, low: str, high: str | None, found: int) -> None:
        width = (self.SPACE if high is None else self.position(high)) - self.position(low)
        if width <= 0:
            return
        if found:
            self.density = found / width
        else:  # an empty range: the ids are sparser here than assumed; widen the next one 8x
            self.density /= 8
        self._density[self.name] = self.density
