"""Filtered listing on SecantusDB: each filter runs as one indexed clause there, and means what the MongoDB query
means. Both query shapes run against the same SecantusDB server and must return the same pages."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from typing import Any

import bson
import pytest
from pymongo.asynchronous.database import AsyncDatabase

from app.customers import census
from app.customers.document import ID_TAG, search_keys
from app.customers.repository import CustomerRepository, _filter, _one_clause_filter, _samples, prepare_customers
from app.customers.schemas import CustomerCreate
from app.db import Planner, ensure_indexes, query_planner
from app.errors import NotFound
from app.imports.model import Batch
from app.imports.sink import Sink

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
FIRST = ["Ann", "Anna", "Joann", "Bob", "Zoë", "Åsa", "Ängel", "carl", "ANNIKA", "Lee"]
LAST = ["Lee", "Annan", "Berg", "Ängström", "Smith", "Doe", "ann"]
COUNTRIES = ["France", "Sweden", "USA", "france", None]
COMPANIES = ["Annex Ltd", "Ångbåt", "Acme", None]

# Every combination the API accepts, with prefixes that hit names, companies, emails and nothing.
FILTERS: list[dict[str, str]] = [
    {"q": "ann"}, {"q": "ANN"}, {"q": "a"}, {"q": "än"}, {"q": "ångb"}, {"q": "zz"}, {"q": "c0"},
    {"country": "France"}, {"country": "france"}, {"country": "Nowhere"},
    {"email": "c3@Example.com"}, {"email": "c3@example.com"}, {"email": "shared@x.org"},
    {"country": "France", "q": "ann"}, {"country": "Sweden", "q": "a"}, {"email": "shared@x.org", "q": "jo"},
    {"email": "shared@x.org", "country": "USA"}, {"email": "shared@x.org", "country": "USA", "q": "b"},
]


@pytest.fixture
async def people(db: AsyncDatabase) -> list[dict[str, Any]]:
    """120 customers with overlapping names, case variants, shared emails and missing fields, in random order."""
    rng = random.Random(11)
    docs = []
    for index in range(120):
        doc: dict[str, Any] = {"_id": f"c{index:03d}", "firstName": rng.choice(FIRST), "lastName": rng.choice(LAST),
                               "email": "shared@x.org" if index % 9 == 0 else f"c{index}@Example.com",
                               "createdAt": NOW, "updatedAt": NOW}
        for name, choices in (("country", COUNTRIES), ("company", COMPANIES)):
            if (value := rng.choice(choices)) is not None:
                doc[name] = value
        doc["searchKeys"] = search_keys(doc)
        docs.append(doc)
    rng.shuffle(docs)
    await ensure_indexes(db)
    await db.customers.insert_many(docs)
    return docs


def everything(filters: dict[str, str]) -> dict[str, str | None]:
    return {"email": None, "country": None, "q": None, **filters}


async def walk(repository: CustomerRepository, limit: int, **filters: str) -> tuple[list[str], set[int]]:
    ids: list[str] = []
    totals: set[int] = set()
    after = None
    for _ in range(1000):
        page = await repository.list(limit=limit, page=None, after=after, **filters)
        ids += [item.customer_id for item in page.items]
        totals.add(page.total)
        if page.next_cursor is None:
            return ids, totals
        after = page.next_cursor
    raise AssertionError("the keyset walk did not end")


async def test_the_test_server_is_planned_as_secantus(db: AsyncDatabase) -> None:
    assert await query_planner(db) is Planner.SECANTUS


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
async def test_one_clause_listing_means_what_the_mongodb_query_means(
        db: AsyncDatabase, people: list[dict[str, Any]], filters: dict[str, str]) -> None:
    mongodb = CustomerRepository(db.customers, Planner.MONGODB)
    secantus = CustomerRepository(db.customers, Planner.SECANTUS)
    # The reference: SecantusDB evaluating the MongoDB query itself (by scanning the collection).
    expected = sorted([doc["_id"] async for doc in db.customers.find(_filter(**everything(filters)), {"_id": 1})])
    assert len(expected) < len(people)
    for limit in (1, 7, 500):
        assert await walk(secantus, limit, **filters) == (expected, {len(expected)})
        assert await walk(mongodb, limit, **filters) == (expected, {len(expected)})
    for page_number in (1, 2, 3):
        by_page = await secantus.list(limit=4, page=page_number, after=None, **filters)
        reference = await mongodb.list(limit=4, page=page_number, after=None, **filters)
        assert by_page == reference
        assert [item.customer_id for item in by_page.items] == expected[(page_number - 1) * 4:page_number * 4]


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
async def test_the_one_clause_filter_runs_on_the_index(db: AsyncDatabase, people: list[dict[str, Any]],
                                                       filters: dict[str, str]) -> None:
    def stages(plan: dict[str, Any]) -> list[str]:
        return [plan["stage"], *(stages(plan["inputStage"]) if "inputStage" in plan else [])]

    explained = await db.command("explain", {"find": "customers", "filter": _one_clause_filter(**everything(filters))})
    assert stages(explained["queryPlanner"]["winningPlan"]) == ["FETCH", "IXSCAN"]
    # What it replaces: the $and of the MongoDB shape is a collection scan on SecantusDB.
    explained = await db.command("explain", {"find": "customers", "filter": _filter(**everything(filters))})
    assert stages(explained["queryPlanner"]["winningPlan"]) == ["COLLSCAN"]


async def test_a_cursor_past_every_match_gives_an_empty_last_page(db: AsyncDatabase,
                                                                   people: list[dict[str, Any]]) -> None:
    secantus = CustomerRepository(db.customers, Planner.SECANTUS)
    page = await secantus.list(limit=10, page=None, after="eg", q="ann")  # "eg": base64 of "z"
    assert page.items == [] and page.next_cursor is None and page.total > 0


# --- the unfiltered list on SecantusDB: id ranges ----------------------------------------------------------

ODD_IDS = ["-", ".5", "0", "00", "000000000", "0000000001", "9", "A", "Z", "_", "a", "a" * 64, "ab", "b-1", "z",
           "zzzzzzzzzz", "~", "é", "éa", "ü-2", "中文", "\U0001f600"]


def imported(customer_id: str) -> dict[str, Any]:
    doc = {"_id": customer_id, "firstName": "Ann", "lastName": "Lee", "email": "a@b.c", "createdAt": NOW,
           "updatedAt": NOW}
    return {**doc, "searchKeys": search_keys(doc)}


def id_sets() -> list[list[str]]:
    rng = random.Random(3)
    hex15 = ["".join(rng.choices("0123456789abcdefABCDEF", k=15)) for _ in range(300)]
    dense = [f"load-{i}" for i in range(150)]
    return [ODD_IDS, hex15, dense + hex15[:100], ["only"], []]


def samples(ids: list[str]) -> dict[str, list[str]]:
    rng = random.Random(9)
    return {
        "census": [customer_id for customer_id in ids if census.sampled(customer_id)],
        "none": [],
        "every-id": list(ids),  # ranges of about one id
        "foreign": sorted("".join(rng.choices("0123456789abcdefXYZé-", k=rng.randint(1, 20))) for _ in range(50)),
    }


@pytest.mark.parametrize("ids", id_sets(), ids=["odd", "hex", "mixed", "one", "none"])
@pytest.mark.parametrize("sample", ["census", "none", "every-id", "foreign"])
async def test_id_ranges_give_the_pages_of_the_id_order(db: AsyncDatabase, ids: list[str], sample: str) -> None:
    """Whatever the sample says (the real one, none, one entry per id, ids that do not exist), the ranges give
    exactly the id order: by cursor and by page number, against the scan."""
    if ids:
        await db.customers.insert_many([imported(customer_id) for customer_id in ids])
    meta = db.service_meta
    await meta.update_one({"_id": "customers"}, {"$set": {"count": len(ids)}})
    await meta.replace_one({"_id": census.SAMPLE_ID}, {"ids": samples(ids)[sample]}, upsert=True)
    _samples.clear()
    ranges = CustomerRepository(db.customers, Planner.SECANTUS, meta)
    scan = CustomerRepository(db.customers, Planner.MONGODB)
    for limit in (1, 3, 50):
        assert await walk(ranges, limit) == (sorted(ids), {len(ids)})
    for page_number in (1, 2, 5):
        assert (await ranges.list(limit=3, page=page_number, after=None)
                == await scan.list(limit=3, page=page_number, after=None))


class Counting:
    """The customers collection, counting the documents its finds return."""

    def __init__(self, collection: Any):
        self.collection, self.returned = collection, 0

    def find(self, *args: Any, **kwargs: Any) -> Any:
        cursor = self.collection.find(*args, **kwargs)
        outer = self

        class Counted:
            def __aiter__(self) -> Any:
                return self

            async def __anext__(self) -> Any:
                doc = await cursor.__anext__()
                outer.returned += 1
                return doc

        return Counted()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.collection, name)


async def test_a_page_reads_about_what_it_shows(db: AsyncDatabase) -> None:
    """The point of the id ranges: a 50-customer page of 6,000 reads a few buckets of the sample, not all."""
    rng = random.Random(4)
    ids = sorted({"".join(rng.choices("0123456789abcdefABCDEF", k=15)) for _ in range(6000)})
    await db.customers.insert_many([imported(customer_id) for customer_id in ids])
    await db.service_meta.delete_many({})
    await prepare_customers(db, Planner.SECANTUS)  # the census and sample, from the stored ids
    _samples.clear()
    counting = Counting(db.customers)
    repository = CustomerRepository(counting, Planner.SECANTUS, db.service_meta)  # type: ignore[arg-type]
    page = await repository.list(limit=50, page=None, after=None)
    assert [item.customer_id for item in page.items] == ids[:50] and page.total == len(ids)
    assert counting.returned <= 4 * census.SAMPLE_RATE
    counting.returned = 0
    walked, _ = await walk(repository, 50)
    assert walked == ids
    assert counting.returned <= 3 * len(ids)  # every customer read about twice on average, not 120 times
    counting.returned = 0
    deep = await repository.list(limit=50, page=100, after=None)
    assert [item.customer_id for item in deep.items] == ids[4950:5000]


async def test_the_id_range_runs_on_the_index(db: AsyncDatabase) -> None:
    await db.customers.insert_many([imported(f"c{i}") for i in range(20)])
    explained = await db.command("explain", {"find": "customers", "filter": {
        "searchKeys": {"$gte": ID_TAG + "c1", "$lt": ID_TAG + "c3"}}})
    assert explained["queryPlanner"]["winningPlan"]["inputStage"]["stage"] == "IXSCAN"


async def test_the_census_follows_the_service_s_writes(db: AsyncDatabase) -> None:
    """prepare_listing on documents written before id entries existed, then POST, DELETE and the sink."""
    await db.service_meta.delete_many({})
    no_keys = {name: value for name, value in imported("o2").items() if name != "searchKeys"}
    old = [{**imported("o1"), "searchKeys": ["ann", "\x1did:stale"]}, no_keys, {"_id": 7, "searchKeys": ["x"]}]
    await db.customers.insert_many(old)
    repository = CustomerRepository(db.customers, Planner.SECANTUS, db.service_meta)
    assert await census.read(db.service_meta) is None
    await repository.prepare_listing()
    # The count is of the customers the list shows: string ids (7 has no id entry).
    assert await census.read(db.service_meta) == {"_id": "customers", "idKeys": True, "count": 2}
    stored = {doc["_id"]: doc["searchKeys"] async for doc in db.customers.find()}
    assert stored == {"o1": ["ann", ID_TAG + "o1"], "o2": [ID_TAG + "o2"], 7: ["x"]}
    await repository.prepare_listing()  # once only
    assert (await census.read(db.service_meta) or {})["count"] == 2

    await repository.create(CustomerCreate(customer_id="n1", first_name="N", last_name="One", email="n@o.p"))
    await repository.delete("o2")
    with pytest.raises(NotFound):
        await repository.delete("o2")
    assert (await census.read(db.service_meta) or {})["count"] == 2

    sink = Sink(db.customers, job_id="j1", retry_seconds=5, writers=1, meta=db.service_meta)
    docs = [imported(customer_id) for customer_id in ("n1", "s1", "s2")]  # n1 exists: a duplicate
    batch = Batch(ids=[doc["_id"] for doc in docs], lines=[2, 3, 4], docs=[bson.encode(doc) for doc in docs])
    written = await sink.write(batch)
    assert (written.inserted, written.duplicate) == (2, 1)
    assert (await census.read(db.service_meta) or {})["count"] == 4
    page = await repository.list(limit=2, page=1, after=None)
    assert [item.customer_id for item in page.items] == ["n1", "o1"] and page.total == 4


async def test_no_census_before_the_id_entries_means_the_scan(db: AsyncDatabase) -> None:
    await db.service_meta.delete_many({})
    await db.customers.insert_many([{"_id": f"x{i}", "firstName": "A", "lastName": "B", "email": "a@b",
                                     "createdAt": NOW, "updatedAt": NOW} for i in range(3)])  # no id entries
    await census.add(db.service_meta, 5)  # an $inc before the census exists creates nothing
    assert await db.service_meta.count_documents({}) == 0
    page = await CustomerRepository(db.customers, Planner.SECANTUS, db.service_meta).list(
        limit=10, page=None, after=None)
    assert [item.customer_id for item in page.items] == ["x0", "x1", "x2"] and page.total == 3


async def test_a_name_cannot_pass_for_an_id_entry(db: AsyncDatabase) -> None:
    repository = CustomerRepository(db.customers, Planner.SECANTUS, db.service_meta)
    for customer_id, first in (("aaa", "\x1did:zzz"), ("bbb", "Bo"), ("zzz", "\x1ecountry:X")):
        await repository.create(CustomerCreate(customer_id=customer_id, first_name=first, last_name="L",
                                               email=f"{customer_id}@x.y"))
    stored = await db.customers.find_one({"_id": "aaa"})
    assert stored is not None and stored["searchKeys"] == ["id:zzz", "l", "aaa@x.y", ID_TAG + "aaa"]
    _samples.clear()
    assert await walk(repository, 1) == (["aaa", "bbb", "zzz"], {3})
    assert [item.customer_id for item in (await repository.list(limit=9, page=None, after=None,
                                                                 country="X")).items] == []


async def test_list_reads_on_secantus_wait_their_turn(db: AsyncDatabase) -> None:
    """At most `lists` list reads run at once (SecantusDB's readers otherwise starve an import's writes)."""
    await db.customers.insert_many([imported(f"c{i:03d}") for i in range(300)])
    await db.service_meta.update_one({"_id": "customers"}, {"$set": {"count": 300}})

    class Gauge(Counting):
        running = peak = 0

        def find(self, *args: Any, **kwargs: Any) -> Any:
            cursor = self.collection.find(*args, **kwargs)
            gauge = self

            class Measured:
                def __aiter__(self) -> Any:
                    gauge.running += 1
                    gauge.peak = max(gauge.peak, gauge.running)
                    return self

                async def __anext__(self) -> Any:
                    try:
                        return await cursor.__anext__()
                    except StopAsyncIteration:
                        gauge.running -= 1
                        raise

            return Measured()

    gauge = Gauge(db.customers)
    repository = CustomerRepository(gauge, Planner.SECANTUS, db.service_meta, asyncio.Semaphore(1))  # type: ignore[arg-type]
    pages = await asyncio.gather(*(repository.list(limit=5, page=None, after=None, **params)
                                   for params in ({}, {"q": "ann"}, {}, {"country": "X"}, {"email": "a@b.c"})))
    assert [page.total for page in pages] == [300, 300, 300, 0, 300]
    assert gauge.peak == 1
    unbounded = Gauge(db.customers)
    repository = CustomerRepository(unbounded, Planner.SECANTUS, db.service_meta)  # type: ignore[arg-type]
    await asyncio.gather(*(repository.list(limit=5, page=None, after=None, q="ann") for _ in range(5)))
    assert unbounded.peak > 1  # the gauge can see more than one
