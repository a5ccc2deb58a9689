"""Listing customers through both strategies against the SecantusDB server: every page, cursor walk, filter and
total must be what the plain MongoDB query says, whatever size the windows turn out to be."""

from __future__ import annotations

import asyncio
import bisect
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

import app.customers.listing as listing
from app.asgi import create_app
from app.customers.document import PREFIX_TAG, SAMPLE_TAG, search_keys
from app.customers.keyset import KeySpace
from app.customers.listing import DirectListing, Filters, WindowedListing, listing_for
from app.customers.repository import CustomerRepository, encode_cursor
from app.db import CUSTOMERS, ensure_indexes, search_keys_current
from app.settings import Settings
from tests.conftest import with_settings

FIRST = ["Ann", "Anna", "Annabel", "Bob", "Zoë", "Jürgen", "Joann", "Li", "Ángel", "Åsa"]
LAST = ["Lee", "Annan", "Smith", "Smithson", "Öztürk", "Berg", "O'Brien", "Ng"]
COUNTRIES = ["France", "Spain", "Sweden", "Åland", None]
NOW = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ODD_IDS = ["a", "a-1", "a.1", "A", "Z9", "10", "9", "é", "ü-2", "aa", "a\U0010ffff", "~", "0", "00", "000"]


SIZE = 900


def dataset(size: int) -> list[dict[str, Any]]:
    """Customers with ids of several schemes (prefixes of each other included), a few shared emails, names and
    companies that share prefixes, and customers without country or without any searchable value."""
    rnd = random.Random(11)
    ids = set(ODD_IDS)
    while len(ids) < size:
        scheme = rnd.random()
        if scheme < 0.6:
            ids.add("".join(rnd.choice("0123456789abcdefABCDEF") for _ in range(15)))
        elif scheme < 0.9:
            ids.add(f"CUST-{rnd.randrange(10**6):06d}")
        else:
            ids.add(rnd.choice("abcxyz") + str(rnd.randrange(1000)))
    docs = []
    for n, customer_id in enumerate(sorted(ids)):
        doc: dict[str, Any] = {"firstName": rnd.choice(FIRST), "lastName": rnd.choice(LAST),
                               "email": f"{rnd.choice(FIRST).lower()}.{n % 400}@example.com"}
        if n % 97 == 0:
            doc["email"] = rnd.choice(["Shared@Example.com", "shared@example.com"])
        if rnd.random() < 0.3:
            doc["company"] = rnd.choice(["Annex Ltd", "Smith & Co", "Öl AB", "Li"])
        if country := rnd.choice(COUNTRIES):
            doc["country"] = country
        if n % 211 == 0:
            doc = {}  # only an id: no search keys at all
        doc["searchKeys"] = search_keys(doc)
        docs.append({"_id": customer_id, **doc, "createdAt": NOW, "updatedAt": NOW})
    return docs


@pytest.fixture(scope="module")
async def customers(mongo: AsyncMongoClient) -> AsyncIterator[AsyncCollection]:
    """SIZE customers, enough for the windowed listing to have a sample model (its own database)."""
    db = mongo["listing_test"]
    await db.drop_collection(CUSTOMERS)
    await ensure_indexes(db)
    await db[CUSTOMERS].insert_many(dataset(SIZE))
    yield db[CUSTOMERS]
    await mongo.drop_database("listing_test")


@pytest.fixture(params=["direct", "windows", "tiny windows", "windows end on ids", "q budget"])
def repository(request: pytest.FixtureRequest, customers: AsyncCollection,
               monkeypatch: pytest.MonkeyPatch) -> CustomerRepository:
    """DirectListing (the MongoDB one: correct on SecantusDB, but each page reads the whole collection there),
    and WindowedListing as it is; with windows of a few entries (many per page, nothing read whole); with
    every window ending exactly on a customer's id (the next window must include it); and with `q` windows
    that give up at once (the fall back to the whole `q` range)."""
    if request.param == "direct":
        return CustomerRepository(customers, DirectListing())
    if request.param != "windows":
        monkeypatch.setattr(listing, "ONE_SHOT_MAX", 0)
        monkeypatch.setattr(listing, "WINDOW_MAX", 7)
        monkeypatch.setattr(listing, "Q_WINDOW_BUDGET", 0 if request.param == "q budget" else 10**9)
    if request.param == "windows end on ids":
        ids = sorted(doc["_id"] for doc in dataset(SIZE))
        string = KeySpace.string

        def on_an_id(self: KeySpace, position: int) -> str | None:
            bound = string(self, position)  # the next id at or above it: still a bound at or above `position`
            return None if bound is None or bound > ids[-1] else ids[bisect.bisect_left(ids, bound)]

        monkeypatch.setattr(KeySpace, "string", on_an_id)
    return CustomerRepository(customers, WindowedListing())


FILTERS = [
    {}, {"country": "France"}, {"country": "Åland"}, {"country": "Nowhere"}, {"q": "ann"}, {"q": "a"},
    {"q": "smith"}, {"q": "ö"}, {"q": "zzz"}, {"q": "cust"}, {"email": "shared@example.com"},
    {"email": "Shared@Example.com"}, {"country": "Spain", "q": "an"}, {"country": "Sweden", "q": "l"},
    {"email": "shared@example.com", "country": "France"}, {"email": "shared@example.com", "q": "sh"},
]


def skip_unless_q_budget_matters(repository: CustomerRepository, params: dict[str, str]) -> None:
    if listing.Q_WINDOW_BUDGET == 0 and "q" not in params:
        pytest.skip("the q budget only changes q pages")


async def expected_ids(collection: AsyncCollection, params: dict[str, str]) -> list[str]:
    """What MongoDB semantics say: the plain query, evaluated by the server."""
    query = Filters(**params).mongo_query()
    return [doc["_id"] async for doc in collection.find(query, {"_id": 1}).sort("_id", ASCENDING)]


@pytest.mark.parametrize("params", FILTERS, ids=str)
async def test_a_cursor_walk_returns_every_match_once_in_id_order(
        repository: CustomerRepository, customers: AsyncCollection, params: dict[str, str]) -> None:
    skip_unless_q_budget_matters(repository, params)
    expected = await expected_ids(customers, params)
    slow = isinstance(repository.listing, DirectListing)
    for limit in [(7, 50, 500), (100, 500)][slow] + (1,) * (len(expected) <= 60):
        seen: list[str] = []
        after = None
        for _ in range(len(expected) + 2):
            page = await repository.list(limit=limit, page=None, after=after, **params)
            assert len(page.items) <= limit
            seen += [item.customer_id for item in page.items]
            if page.next_cursor is None:
                break
            assert len(page.items) == limit  # a cursor only after a full page ...
            after = page.next_cursor
        assert seen == expected, (limit, params)
        assert page.items or not expected  # ... and the walk never ends on an empty page


@pytest.mark.parametrize("params", FILTERS, ids=str)
async def test_numbered_pages_and_totals(
        repository: CustomerRepository, customers: AsyncCollection, params: dict[str, str]) -> None:
    skip_unless_q_budget_matters(repository, params)
    expected = await expected_ids(customers, params)
    limit = 300 if isinstance(repository.listing, DirectListing) else 40
    pages = [await repository.list(limit=limit, page=number, after=None, **params)
             for number in range(1, len(expected) // limit + 3)]
    assert [item.customer_id for page in pages for item in page.items] == expected
    for number, page in enumerate(pages, 1):
        assert page.page == number
        assert (page.next_cursor is not None) == (number * limit < len(expected))
        if page.total_exact:
            assert page.total == len(expected)
        else:  # an estimate: never below what this page proves, and in the right ballpark
            assert page.total >= min(number * limit, len(expected))
            assert len(expected) / 3 <= page.total <= len(expected) * 3


@pytest.mark.parametrize("params", FILTERS[:6], ids=str)
async def test_a_cursor_from_anywhere(
        repository: CustomerRepository, customers: AsyncCollection, params: dict[str, str]) -> None:
    """after= an id that is not a match, an id that is no customer, below or above every id."""
    expected = await expected_ids(customers, params)
    everyone = [doc["_id"] async for doc in customers.find({}, {"_id": 1})]
    for after in [*random.Random(5).sample(everyone, 8), "", "!", "a0", "CUST-5", "\U0010ffff\U0010ffff", "zz"]:
        page = await repository.list(limit=25, page=None, after=encode_cursor(after), **params)
        assert [item.customer_id for item in page.items] == [i for i in expected if i > after][:25]


async def test_the_direct_listing_counts_exactly(customers: AsyncCollection) -> None:
    repository = CustomerRepository(customers, DirectListing())
    for params in FILTERS:
        page = await repository.list(limit=5, page=None, after=None, **params)
        assert page.total_exact and page.total == len(await expected_ids(customers, params))


async def test_windows_are_index_ranges(customers: AsyncCollection, monkeypatch: pytest.MonkeyPatch) -> None:
    """What makes them fast on SecantusDB: every windowed query is an `_id` range, alone or with one
    searchKeys equality, and a page of a large collection reads a small part of it."""
    queries: list[dict[str, Any]] = []
    find = AsyncCollection.find

    def recording(self: AsyncCollection, query: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        queries.append(query)
        return find(self, query, *args, **kwargs)

    monkeypatch.setattr(AsyncCollection, "find", recording)
    windowed = WindowedListing()
    repository = CustomerRepository(customers, windowed)
    await repository.list(limit=10, page=None, after=None)
    queries.clear()
    page = await windowed.page(customers, Filters(), limit=10, skip=0, after=None)
    assert page.read < 300 and not page.exact
    assert queries and all(set(q) == {"_id"} and set(q["_id"]) <= {"$gte", "$gt", "$lt"} for q in queries)
    queries.clear()
    monkeypatch.setattr(listing, "ONE_SHOT_MAX", 0)
    await windowed.page(customers, Filters(country="France"), limit=10, skip=0, after=None)
    assert queries and all(list(q) == ["searchKeys", "_id"] and isinstance(q["searchKeys"], str) for q in queries)


async def test_a_full_last_page_has_no_next_cursor(client: AsyncTestClient, db: Any) -> None:
    for n in range(10):
        response = await client.post("/customers", json={"firstName": "Ann", "lastName": "Lee",
                                                         "email": f"a{n}@example.com", "customerId": f"c{n}"})
        assert response.status_code == 201
    first = (await client.get("/customers", params={"limit": 5})).json()
    assert first["nextCursor"] and first["totalExact"] and first["total"] == 10
    second = (await client.get("/customers", params={"limit": 5, "after": first["nextCursor"]})).json()
    assert [item["customerId"] for item in second["items"]] == [f"c{n}" for n in range(5, 10)]
    assert "nextCursor" not in second
    whole = (await client.get("/customers", params={"limit": 10})).json()
    assert len(whole["items"]) == 10 and "nextCursor" not in whole


async def test_customers_written_by_an_older_version_get_current_search_keys(
        mongo: AsyncMongoClient, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Their searchKeys lack the prefix keys: listing must not rely on those until the app has rewritten them."""
    name = "listing_legacy"
    await mongo.drop_database(name)
    db = mongo[name]
    old = dataset(600)
    for doc in old:
        keys = [key for key in doc.pop("searchKeys") if not key.startswith((PREFIX_TAG, SAMPLE_TAG))]
        if keys:
            doc["searchKeys"] = keys
    await db[CUSTOMERS].insert_many(old)  # no app_meta marker: an older version's database
    monkeypatch.setattr(listing, "ONE_SHOT_MAX", 0)
    before = await listing_for(db[CUSTOMERS])
    assert isinstance(before, WindowedListing) and not before.prefix_keys
    for params in ({"q": "ann"}, {"q": "smith", "country": "France"}):
        page = await CustomerRepository(db[CUSTOMERS], before).list(limit=500, page=None, after=None, **params)
        assert [item.customer_id for item in page.items] == await expected_ids(db[CUSTOMERS], params)

    async with AsyncTestClient(create_app(with_settings(settings, mongodb_db=name)), timeout=30) as client:
        for _ in range(200):  # the app rewrites them in the background
            if await search_keys_current(db):
                break
            await asyncio.sleep(0.05)
        assert await search_keys_current(db)
        assert client.app.state.customer_listing.prefix_keys
        async for doc in db[CUSTOMERS].find():
            assert doc.get("searchKeys", []) == search_keys(doc)
        response = await client.get("/customers", params={"q": "ann", "limit": 500})
        assert [item["customerId"] for item in response.json()["items"]] == await expected_ids(
            db[CUSTOMERS], {"q": "ann"})
    await mongo.drop_database(name)
