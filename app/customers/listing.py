"""How a page of customers is read: one query on MongoDB, successive `_id` windows on SecantusDB.

Both return the same customers in the same order (`_id` ascending). They differ in what the server does
with a query. MongoDB stops an index scan at the limit and counts from metadata or the index, so a page is
one `find(...).sort({_id: 1}).limit(n + 1)`. SecantusDB (its Python server, 0.7) does not: every query
fetches and decodes every document of the index range it picked (~30 µs each) and applies sort, skip and
limit afterwards; it uses an index for an `_id` range only through a secondary index whose first field is
`_id`, for one top-level clause (the first one it can, in the filter's order; `$and`/`$or` scan the
collection), never for `$elemMatch`; and `count`/`estimatedDocumentCount`/`collStats` read every document.
So on SecantusDB a page is read as `_id` ranges ("windows") sized to hold about the customers still wanted,
each an index range scan that costs what it returns: `{_id: range}` on the `id_order` index, or
`{searchKeys: key, _id: range}` on the compound `searchKeys_id` index. Windows are sized from a sample of
the ids (the sample keys, see app/customers/document.py) and corrected by what each page finds; a badly
sized window costs time, never results.

A filter is applied in Python, with the exact meaning of the MongoDB query (`Filters.mongo_query`), to what
the index part of a query returns, so a query sent to either server only has to be a superset.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection

from app.customers.document import (
    PREFIX_CHARS,
    SAMPLE_BASE,
    SAMPLE_LEVELS,
    country_key,
    prefix_key,
    sample_key,
)
from app.customers.keyset import Model

log = logging.getLogger(__name__)

Q_END = "\U0010ffff"  # a `q` prefix p matches keys in [p, p + Q_END)


@dataclass(frozen=True)
class Filters:
    email: str | None = None
    country: str | None = None
    q: str | None = None

    @property
    def active(self) -> bool:
        return self.email is not None or self.country is not None or bool(self.q)

    def mongo_query(self) -> dict[str, Any]:
        """The filter as one MongoDB query: each condition on the multikey `searchKeys` (see app/db.py)."""
        keys: list[dict[str, Any]] = []
        query: dict[str, Any] = {}
        if self.email is not None:
            keys.append({"searchKeys": self.email.lower()})
            query["email"] = self.email
        if self.country is not None:
            keys.append({"searchKeys": country_key(self.country)})
        if self.q:
            prefix = self.q.lower()
            # $elemMatch: ONE key must be in the range. A bare range on an array matches when some key is >= the
            # prefix and another (e.g. the "\x1ecountry:" one) is below the bound: q=ann matched "Joann" in France.
            keys.append({"searchKeys": {"$elemMatch": {"$gte": prefix, "$lt": prefix + Q_END}}})
        if keys:
            query["$and"] = keys
        return query

    def matches(self, doc: dict[str, Any]) -> bool:
        """`mongo_query` evaluated in Python (strings compare by code point, as MongoDB's binary UTF-8 order)."""
        keys = doc.get("searchKeys")
        elements = keys if isinstance(keys, list) else [keys]
        if self.email is not None and (doc.get("email") != self.email or self.email.lower() not in elements):
            return False
        if self.country is not None and country_key(self.country) not in elements:
            return False
        if self.q:
            prefix = self.q.lower()
            end = prefix + Q_END
            if not isinstance(keys, list) or not any(isinstance(k, str) and prefix <= k < end for k in keys):
                return False
        return True


@dataclass
class Page:
    docs: list[dict[str, Any]]  # at most `limit`, in _id order
    more: bool  # a next page exists
    total: int
    exact: bool  # False: `total` is an estimate (rounded to two significant digits)
    queries: int = 1  # finds sent (diagnostics: scripts/bench_list.py)
    read: int = 0  # documents they returned: what SecantusDB fetched through its index
    abandoned: bool = False  # a walk that ran out of budget: no page, read it another way


class Listing(Protocol):
    async def page(self, collection: AsyncCollection, filters: Filters, *, limit: int, skip: int,
                   after: str | None) -> Page: ...


class DirectListing:
    """MongoDB: one index-backed query per page; exact totals (metadata count unfiltered, index count filtered)."""

    async def page(self, collection: AsyncCollection, filters: Filters, *, limit: int, skip: int,
                   after: str | None) -> Page:
        query = filters.mongo_query()
        if after is not None:
            query["_id"] = {"$gt": after}
        cursor = collection.find(query).sort("_id", ASCENDING).skip(skip).limit(limit + 1)
        docs = [doc async for doc in cursor]
        counted = filters.mongo_query()
        total = (await collection.count_documents(counted) if counted
                 else await collection.estimated_document_count())
        return Page(docs[:limit], len(docs) > limit, total, True)


# --- SecantusDB ----------------------------------------------------------------------------------------------

SAMPLE_MIN = 48  # sample ids wanted: the sparsest level holding at least this many is read (at most ~8x more)
REFRESH_SECONDS = 10.0  # a sample older than this is re-read in the background (an import grows the collection)
DRIFT_SECONDS = 1.0  # ... or one this old, once unfiltered pages find twice or half the customers it predicts
STALE_SECONDS = 60.0  # ... and one older than this first: a model of a smaller collection over-sizes windows
HARVEST_MIN = 256  # an unfiltered read of the whole collection this large becomes the model (no sample keys)
ONE_SHOT_MAX = 500  # a `q` expected to match at most this many customers is read in one query
Q_WINDOW_BUDGET = 1500  # index entries `q` windows may read before the rest of the page is read in one query
WINDOW_MAX = 1000  # most index entries a window is sized to hold
SLACK = 1.3  # a window is sized for this many times the customers still wanted
GROWTH = 4  # a window that found less than half its expectation makes the next one this much larger
MAX_PROBES = 32  # after this many windows the rest is read in one
LEARNED_KEYS = 512
LEARNING_RATE = 0.3  # how far (in log scale) one walk moves a learned share: windows see local density too
SAMPLE_HITS = 16  # sample customers a filter must match for the sample's share to be trusted as is


@dataclass
class Sample:
    ids: list[str]  # sorted
    keys: list[list[Any]]  # each sample customer's searchKeys
    weight: float  # customers per sample customer
    model: Model | None
    taken: float = field(default_factory=time.monotonic)

    def hits(self, filters: Filters | None, index_key: str = "") -> int:
        """Sample customers matching `filters`, or holding `index_key`."""
        if filters is None:
            return sum(index_key in keys for keys in self.keys)
        return sum(filters.matches({"searchKeys": keys, "email": filters.email}) for keys in self.keys)

    def selectivity(self, filters: Filters | None, index_key: str = "") -> float:
        """Share of customers matching, from the sample (add-half smoothing: never 0)."""
        return (self.hits(filters, index_key) + 0.5) / (len(self.keys) + 1)


def _round(estimate: float) -> int:
    """Two significant digits: an estimate does not pretend to be exact."""
    value = round(estimate)
    if value < 100:
        return value
    scale = 10 ** (len(str(value)) - 2)
    return round(value / scale) * scale


class WindowedListing:
    """SecantusDB: `_id` windows sized from the sample model; state is per process and only ever a hint.
    `prefix_keys`: every stored customer has the prefix keys (app.db.search_keys_current), so a `q` may be read
    through its prefix key; otherwise only through the whole `q` range or every customer."""

    def __init__(self, *, prefix_keys: bool = True) -> None:
        self.prefix_keys = prefix_keys
        self._sample: Sample | None = None
        self._level = SAMPLE_LEVELS
        self._harvested: Model | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._ids_factor = 1.0  # customers found / customers the model expected, learned by unfiltered walks
        self._selectivity: OrderedDict[tuple[Any, ...], float] = OrderedDict()  # learned share per filter
        self._sizes: OrderedDict[tuple[Any, ...], int] = OrderedDict()  # candidates a one-shot read returned

    # -- the model -------------------------------------------------------------------------------------------

    async def _take_sample(self, collection: AsyncCollection) -> None:
        """Read the sparsest sample level holding SAMPLE_MIN customers, from the sparsest down: each level read
        holds ~8x the one before, so this costs a few hundred documents at most, whatever the collection size."""
        # From two levels above the last one (the collection grew less than 64x since), or the top after a while.
        recent = self._sample is not None and time.monotonic() - self._sample.taken < STALE_SECONDS
        level = min(self._level + 2, SAMPLE_LEVELS) if recent else SAMPLE_LEVELS
        while True:
            rows = [row async for row in collection.find({"searchKeys": sample_key(level)},
                                                          {"_id": 1, "searchKeys": 1}).batch_size(10_000)]
            if len(rows) >= SAMPLE_MIN or level == 1:
                break
            level -= 1
        self._level = level
        rows = sorted((row for row in rows if isinstance(row["_id"], str)), key=lambda row: row["_id"])
        weight = float(SAMPLE_BASE ** level)
        model = Model([row["_id"] for row in rows], weight) if len(rows) >= SAMPLE_MIN else None
        self._sample = Sample([row["_id"] for row in rows], [row.get("searchKeys") or [] for row in rows],
                              weight, model)
        if model is not None:
            self._ids_factor = 1.0

    async def _current(self, collection: AsyncCollection) -> Sample:
        sample = self._sample
        age = math.inf if sample is None else time.monotonic() - sample.taken
        drifted = abs(math.log(self._ids_factor)) > math.log(2) and sample is not None and sample.model is not None
        if age > REFRESH_SECONDS or (drifted and age > DRIFT_SECONDS):
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._take_sample(collection))
                self._refresh.add_done_callback(_log_failure)
            if age > STALE_SECONDS:
                await asyncio.shield(self._refresh)
        assert self._sample is not None
        return self._sample

    def _model(self, sample: Sample) -> Model | None:
        return sample.model or self._harvested

    def _learned(self, table: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
        value = table.get(key)
        if value is not None:
            table.move_to_end(key)
        return value

    @staticmethod
    def _remember(table: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > LEARNED_KEYS:
            table.popitem(last=False)

    # -- a page ----------------------------------------------------------------------------------------------

    async def page(self, collection: AsyncCollection, filters: Filters, *, limit: int, skip: int,
                   after: str | None) -> Page:
        sample = await self._current(collection)
        model = self._model(sample)
        if filters.email is not None:  # an email has a handful of customers at most: read them all
            return await self._whole(collection, {"searchKeys": filters.email.lower(), "email": filters.email},
                                     filters, limit=limit, skip=skip, after=after)
        if model is None:  # a small collection, or one written before the sample keys existed
            # Unfiltered, read the ids first (they become the model) unless the sample says it is small.
            small = self.prefix_keys and sample.weight * (len(sample.ids) + 1) < HARVEST_MIN / 2
            return await self._whole(collection, self._index_query(filters), filters, limit=limit, skip=skip,
                                     after=after, harvest=not filters.active and not small)
        key = (filters.country, filters.q.lower() if filters.q else None)
        size = model.size * self._ids_factor
        share = self._share(sample, key, filters) if filters.active else 1.0
        # Windows can read one index key in _id order: the country's, the `q` prefix key, or every customer
        # (id_order); a page then reads about (page size / share of matches) x (share of that key) entries.
        need = skip + limit + 1
        index_key, index_share = None, 1.0
        choices = []
        if filters.country is not None:
            choices.append(country_key(filters.country))
        if filters.q and len(filters.q) >= PREFIX_CHARS and self.prefix_keys:
            choices.append(prefix_key(filters.q.lower()))
        for choice in choices:
            choice_share = self._share(sample, ("key", choice), None, choice)
            if choice_share < index_share:
                index_key, index_share = choice, choice_share
        per_page = need / share * index_share
        # Reading the filter's whole index range costs what it holds and gives an exact total.
        if filters.q:
            whole = self._learned(self._sizes, key)
            if whole is None:
                whole = size * sample.selectivity(Filters(q=filters.q))
        else:
            whole = size * index_share
        if whole <= ONE_SHOT_MAX or whole <= per_page:
            return await self._whole(collection, self._index_query(filters), filters, limit=limit, skip=skip,
                                     after=after, size_key=key)
        # The sample is too small to tell a rare `q` from a 1 % one: `q` windows get a budget, and the page
        # falls back to the whole `q` range once they have used it up.
        budget = max(Q_WINDOW_BUDGET, int(4 * per_page)) if filters.q else None
        page = await self._walk(collection, model, index_key, filters, key, share, index_share, limit=limit,
                                skip=skip, after=after, budget=budget)
        if not page.abandoned:
            return page
        whole_page = await self._whole(collection, self._index_query(filters), filters, limit=limit, skip=skip,
                                       after=after, size_key=key)
        whole_page.queries += page.queries
        whole_page.read += page.read
        return whole_page

    def _share(self, sample: Sample, key: tuple[Any, ...], filters: Filters | None, index_key: str = "") -> float:
        """Share of customers matching `filters` (or holding `index_key`): from the sample when it holds enough
        of them (unbiased), else what earlier pages learned, else the sample's rough figure."""
        if sample.hits(filters, index_key) >= SAMPLE_HITS:
            return sample.selectivity(filters, index_key)
        learned = self._learned(self._selectivity, key)
        return float(learned) if learned is not None else sample.selectivity(filters, index_key)

    @staticmethod
    def _index_query(filters: Filters) -> dict[str, Any]:
        """The part of the filter SecantusDB reads through an index (a superset of the matches)."""
        if filters.q:
            prefix = filters.q.lower()
            return {"searchKeys": {"$gte": prefix, "$lt": prefix + Q_END}}  # a bare range: one index range scan
        if filters.country is not None:
            return {"searchKeys": country_key(filters.country)}
        return {}

    async def _whole(self, collection: AsyncCollection, query: dict[str, Any], filters: Filters, *, limit: int,
                     skip: int, after: str | None, harvest: bool = False,
                     size_key: tuple[Any, ...] | None = None) -> Page:
        """Every candidate of `query` in one read: an exact total. Unfiltered, the ids only, then the page."""
        if harvest:
            rows = [row async for row in collection.find(query, {"_id": 1}).sort("_id", ASCENDING)
                    .batch_size(100_000)]
            ids = [row["_id"] for row in rows if isinstance(row["_id"], str)]
            if len(ids) >= HARVEST_MIN:
                step = max(len(ids) // 1024, 1)
                self._harvested = Model(ids[step - 1::step], float(step))
                self._ids_factor = 1.0
            start = bisect.bisect_right(ids, after) if after is not None else skip
            wanted = ids[start:start + limit + 1]
            docs = []
            if wanted:
                window = {"_id": {"$gte": wanted[0], "$lte": wanted[-1]}}
                members = set(wanted)
                docs = [doc async for doc in collection.find(window).sort("_id", ASCENDING).batch_size(1000)
                        if doc["_id"] in members]
            return Page(docs[:limit], len(docs) > limit, len(rows), True, 2, len(rows) + len(docs))
        # A `q` range can hold thousands: read what the filter needs, then the page's documents by _id.
        projection = {"_id": 1, "searchKeys": 1, "email": 1} if filters.q else None
        candidates = [doc async for doc in collection.find(query, projection).sort("_id", ASCENDING)
                      .batch_size(10_000)]
        matched = [doc for doc in candidates if filters.matches(doc)]
        model = self._model(self._sample) if self._sample else None
        if size_key is not None:
            self._remember(self._sizes, size_key, len(candidates))
        if size_key is not None and model is not None:  # an exact count: what the estimates should have said
            modelled = max(model.size * self._ids_factor, 1.0)
            if filters.active:
                self._remember(self._selectivity, size_key, min(max(len(matched) / modelled, 1e-9), 1.0))
            else:
                self._ids_factor = min(max(self._ids_factor * max(len(matched), 1) / modelled, 1e-3), 1e3)
        start = bisect.bisect_right([doc["_id"] for doc in matched], after) if after is not None else skip
        docs = matched[start:start + limit + 1]
        queries = 1
        if projection is not None and docs:
            wanted = {doc["_id"] for doc in docs}
            docs = [doc async for doc in collection.find({"_id": {"$in": list(wanted)}}).sort("_id", ASCENDING)
                    if filters.matches(doc)]  # changed since the first read: still exact, the page may be short
            queries += 1
        return Page(docs[:limit], len(docs) > limit, len(matched), True, queries, len(candidates) + len(docs))

    async def _walk(self, collection: AsyncCollection, model: Model, index_key: str | None, filters: Filters,
                    key: tuple[Any, ...], share: float, index_share: float, *, limit: int, skip: int,
                    after: str | None, budget: int | None = None) -> Page:
        """Windows from `after` (or the first id) until skip + limit + 1 matches or the end; abandoned once more
        than `budget` index entries were read."""
        space = model.space
        need = skip + limit + 1
        low, inclusive = (after, False) if after is not None else ("", True)
        position = space.pos(low)
        rate = max(share * self._ids_factor, 1e-12)  # matching customers per modelled customer
        kept: list[dict[str, Any]] = []
        matched = skipped = windows = read = 0
        boost, expected, expected_read = 1.0, 0.0, 0.0
        while True:
            wanted = need - skipped - len(kept)
            count = min(wanted * SLACK * boost / rate, WINDOW_MAX / max(index_share * self._ids_factor, 1e-12))
            end = model.advance(position, count) if windows < MAX_PROBES else space.top
            high = space.string(end)
            if high is not None and high <= low:  # pos() is monotone, so this cannot be; stay correct anyway
                high, end = None, space.top
            bounds: dict[str, str] = {"$gte" if inclusive else "$gt": low}
            if high is not None:
                bounds["$lt"] = high
            query: dict[str, Any] = {"_id": bounds} if index_key is None else {"searchKeys": index_key,
                                                                               "_id": bounds}
            found = 0
            async for doc in collection.find(query).sort("_id", ASCENDING).batch_size(WINDOW_MAX * 2):
                read += 1
                if not filters.matches(doc):
                    continue
                found += 1
                if skipped < skip:
                    skipped += 1
                elif len(kept) < need - skip:
                    kept.append(doc)
            windows += 1
            matched += found
            modelled = model.expected(position, end) * self._ids_factor
            window_expected = modelled * share
            expected += window_expected
            expected_read += modelled * index_share
            if skipped + len(kept) >= need or high is None:
                break
            if budget is not None and read > budget:
                self._learn(key, filters, share, index_key, index_share, matched, expected, read, expected_read)
                return Page([], False, 0, False, windows, read, abandoned=True)
            if found < window_expected / 2:
                boost *= GROWTH
            low, inclusive, position = high, True, space.pos(high)
        self._learn(key, filters, share, index_key, index_share, matched, expected, read, expected_read)
        docs = kept[:limit]
        more = len(kept) > limit
        if after is None and high is None:
            return Page(docs, more, matched, True, windows, read)  # from the first id to the end: all seen
        seen = (skip if after is None else 0) + len(docs) + more
        # The sample's count, not the windows' (they see local density); a harvested model only ages.
        customers = model.size * (self._ids_factor if model is self._harvested else 1.0)
        return Page(docs, more, max(_round(customers * share), seen), False, windows, read)

    def _learn(self, key: tuple[Any, ...], filters: Filters, share: float, index_key: str | None,
               index_share: float, matched: int, expected: float, read: int, expected_read: float) -> None:
        """Move the shares a walk used halfway (in log scale) to what it found: unfiltered, the number of
        customers; filtered, the share of matches and the share of the index key it read."""
        def moved(value: float, seen: int, wanted: float) -> float:
            ratio = (seen + 1) / (wanted + 1)  # a walk that expected and saw little moves it little
            return value * max(min(ratio, 64.0), 1 / 64) ** LEARNING_RATE

        if not filters.active:
            self._ids_factor = min(max(moved(self._ids_factor, matched, expected), 1e-3), 1e3)
            return
        self._remember(self._selectivity, key, min(max(moved(share, matched, expected), 1e-9), 1.0))
        if index_key is not None:
            self._remember(self._selectivity, ("key", index_key),
                           min(max(moved(index_share, read, expected_read), 1e-9), 1.0))


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("reading the customer id sample failed: %r", task.exception())


async def listing_for(collection: AsyncCollection) -> Listing:
    """WindowedListing on SecantusDB (see the module docstring), DirectListing on MongoDB."""
    from app.db import is_secantus, search_keys_current

    if not await is_secantus(collection.database):
        return DirectListing()
    return WindowedListing(prefix_keys=await search_keys_current(collection.database))
