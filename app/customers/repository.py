"""Queries on the `customers` collection. The customerId <-> _id mapping lives here only."""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import datetime as dt
import logging
import time
import uuid
from typing import Any

import msgspec
from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from app.customers import census
from app.customers.document import ID_TAG, ID_TAG_END, INDEXED, country_key, search_keys, text_key
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
        keys.append({"searchKeys": text_key(email)})
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
        return {"searchKeys": text_key(email)}
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
    if email is not None and not (doc.get("email") == email and text_key(email) in keys):
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


def census_of(db: AsyncDatabase, planner: Planner) -> AsyncCollection | None:
    """Where the census lives (census.py), on the server that needs one: SecantusDB. None elsewhere, so writes on
    MongoDB pay no census update."""
    return db[SERVICE_META] if planner is Planner.SECANTUS else None


async def prepare_customers(db: AsyncDatabase, planner: Planner) -> None:
    """At start, after the indexes: what the list needs from the stored customers on this server."""
    if (meta := census_of(db, planner)) is not None:
        await CustomerRepository(db[CUSTOMERS], planner, meta).prepare_listing()


class CustomerRepository:
    def __init__(self, collection: AsyncCollection, planner: Planner = Planner.MONGODB,
                 meta: AsyncCollection | None = None, lists: asyncio.Semaphore | None = None):
        self.collection = collection
        self.planner = planner
        self.meta = meta  # service_meta, for the census (SecantusDB's unfiltered total)
        # SecantusDB: how many list reads may run at once. Its reads and writes share one lock that readers
        # win: with tens of list reads in flight an import's writes starved (60 concurrent range readers: 5
        # batches in a minute), its pace fell, requests piled up. Excess lists wait here instead.
        self.lists = lists or contextlib.nullcontext()

    async def prepare_listing(self) -> None:
        """Give every stored customer its id entry in `searchKeys` (documents written before it existed, in one
        server-side update), read every id once for the exact count and the sample, then record the census
        (app/customers/census.py). Instant on a new database, one pass over an old one; done once, the
        service's writes keep it."""
        if self.meta is None or await census.read(self.meta) is not None:
            return
        stored = {"$cond": [{"$isArray": "$searchKeys"}, "$searchKeys",
                            {"$cond": [{"$in": [{"$type": "$searchKeys"}, ["missing", "null"]]}, [], ["$searchKeys"]]}]}
        not_an_id_entry = {"$ne": [{"$substrCP": ["$$this", 0, len(ID_TAG)]}, ID_TAG]}
        own_entry = {"$cond": [{"$eq": [{"$type": "$_id"}, "string"]}, [{"$concat": [ID_TAG, "$_id"]}], []]}
        await self.collection.update_many({}, [{"$set": {"searchKeys": {"$concatArrays": [
            {"$filter": {"input": stored, "cond": not_an_id_entry}}, own_entry]}}}])
        count, chosen = 0, []
        async for doc in self.collection.find({"searchKeys": {"$gte": ID_TAG, "$lt": ID_TAG_END}}, {"_id": 1},
                                              batch_size=10_000):
            if isinstance(doc["_id"], str):
                count += 1
                if census.sampled(doc["_id"]):
                    chosen.append(doc["_id"])
        await self.meta.replace_one({"_id": census.SAMPLE_ID}, {"ids": chosen}, upsert=True)
        await self.meta.replace_one({"_id": census.CUSTOMERS_ID}, {"idKeys": True, "count": count}, upsert=True)
        log.info("customers: id entries and census written for %d customers", count)

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
            await census.add_quietly(self.meta, 1, [customer_id])
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
            await census.add_quietly(self.meta, -1, [customer_id])

    async def list(self, *, limit: int, page: int | None, after: str | None, email: str | None = None,
                   country: str | None = None, q: str | None = None) -> CustomerPage:
        """A page in _id order: by page number (skip) or, faster on big collections, after a cursor."""
        if self.planner is Planner.SECANTUS:
            async with self.lists:
                if email is not None or country is not None or q:
                    return await self._list_one_clause(limit=limit, page=page, after=after, email=email,
                                                       country=country, q=q)
                if self.meta is not None and (known := await census.read(self.meta)):
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
        costs what it holds, ended where the sample of ids says it holds about what is still needed
        (`IdRanges`). The ranges are contiguous and the last is open, so any bound is correct; a bad one only
        costs a range that holds too much (at most about one bucket of the sample) or too little."""
        after_id = decode_cursor(after) if after is not None else None
        skip = 0 if after is not None else ((page or 1) - 1) * limit
        need = skip + limit + 1  # +1: whether another customer follows
        ranges = IdRanges(await _id_sample(self.meta)) if self.meta is not None else IdRanges([])
        low, inclusive = after_id or "", after_id is None
        seen, docs = 0, []
        while seen < need:
            high = ranges.bound(low, min(need - seen, RANGE_IDS))
            keys = {"$gte" if inclusive else "$gt": ID_TAG + low, "$lt": ID_TAG + high if high else ID_TAG_END}
            # A document is listed at its own id entry only (a forged one in a name would list it twice).
            found = sorted([doc async for doc in self.collection.find({"searchKeys": keys})
                            if isinstance(doc["_id"], str) and ID_TAG + doc["_id"] in doc.get("searchKeys", ())
                            and (doc["_id"] >= low if inclusive else doc["_id"] > low)
                            and (high is None or doc["_id"] < high)], key=lambda doc: doc["_id"])
            for doc in found[:need - seen]:  # keep only the page's part: a deep page= holds little memory
                if seen >= skip:
                    docs.append(doc)
                seen += 1
            if high is None:
                break
            low, inclusive = high, True
        items = [to_customer(doc) for doc in docs[:limit]]
        more = len(docs) > limit
        next_cursor = encode_cursor(items[-1].customer_id) if more and items else None
        # Read to the end from the first id: exact; else the census, but never fewer than were seen.
        exact = after_id is None and seen < need
        total = seen if exact else max(count, skip + len(items) + more)
        return CustomerPage(items=items, limit=limit, total=total,
                            page=None if after is not None else (page or 1), next_cursor=next_cursor)


RANGE_IDS = 2000  # most ids one range is planned to hold, so a deep page= is read in bounded steps
SAMPLE_SECONDS = 10.0  # how long a process reuses the sample of ids
_samples: dict[str, tuple[float, list[str]]] = {}


async def _id_sample(meta: AsyncCollection) -> list[str]:
    key = meta.full_name
    cached = _samples.get(key)
    if cached is None or cached[0] < time.monotonic():
        cached = time.monotonic() + SAMPLE_SECONDS, await census.sample(meta)
        _samples[key] = cached
    return cached[1]


class IdRanges:
    """Where to end the next id range so that it holds about the ids still needed.

    The sorted sample (census.py: 1 id in SAMPLE_RATE) splits the id order into buckets of about SAMPLE_RATE
    ids each. Inside a bucket, ids are assumed spread evenly over positions: an id's first DIGITS characters
    read as digits in the alphabet of the sampled ids (a character's digit is how many of the alphabet's are
    <= it), so hex, base-62 or numeric ids all spread evenly. With no sample (a small or new collection) the
    range is left open."""

    DIGITS = 12
    PER_BUCKET = census.SAMPLE_RATE

    def __init__(self, sample: list[str]):
        self.sample = sample
        chars = {char for customer_id in sample for char in customer_id[:self.DIGITS]}
        self.alphabet = sorted(chars - {"\x00", "\x01"})
        self.base = len(self.alphabet) + 1

    def position(self, customer_id: str) -> int:
        value = 0
        for index in range(self.DIGITS):
            digit = bisect.bisect_right(self.alphabet, customer_id[index]) if index < len(customer_id) else 0
            value = value * self.base + digit
        return value

    def at(self, position: int) -> str:
        """A string at `position`. Digit 0 (below the alphabet) is written as \\x01 and dropped at the end; no
        \\x00 in a bound. Only an id alphabet reaching \\x01 makes it inexact, which `bound` checks."""
        chars = []
        for _ in range(self.DIGITS):
            position, digit = divmod(position, self.base)
            chars.append(self.alphabet[digit - 1] if digit else "\x01")
        return "".join(reversed(chars)).rstrip("\x01")

    def bound(self, low: str, wanted: int) -> str | None:
        """The end of a range from `low` meant to hold `wanted` ids (1.25x and 4 more, for luck); None: open."""
        sample, remaining = self.sample, wanted * 1.25 + 4
        bucket = bisect.bisect_right(sample, low)  # low lies in [sample[bucket - 1], sample[bucket])
        if bucket >= len(sample):
            return None
        if bucket == 0:  # before the first sampled id: no lower edge to interpolate from; about one bucket
            start, here = None, float(self.PER_BUCKET)
        else:
            start, here = low, self.PER_BUCKET * self._fraction(sample[bucket - 1], low, sample[bucket])
        while here < remaining:  # whole buckets until the one where the range should end
            remaining -= here
            bucket += 1
            if bucket >= len(sample):
                return None
            start, here = sample[bucket - 1], float(self.PER_BUCKET)
        if start is None:
            return sample[bucket]
        left, right = self.position(start), self.position(sample[bucket])
        end = self.at(left + int((right - left) * remaining / here))
        return end if start < end < sample[bucket] else sample[bucket]

    def _fraction(self, left: str, low: str, right: str) -> float:
        """The share of bucket [left, right) that lies after `low`."""
        span = self.position(right) - self.position(left)
        return (self.position(right) - self.position(low)) / span if span > 0 else 1.0
