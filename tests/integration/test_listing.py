"""GET /customers through the repository: what each filter means, keyset and page walks, the capped total, the plan
of every list shape (an index walk in _id order that stops at the limit; a top-k sort of an index range for a q
shorter than the indexed prefixes). The start-up migration: tests/integration/test_migration.py."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from app.customers.document import PREFIX_CHARS, index_keys
from app.customers.repository import CustomerRepository, _filter
from tests.helpers.answers import ListingPage
from tests.helpers.answers import walk as walk_pages

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
FIRST = ["Ann", "Anna", "Joann", "Bob", "Zoë", "Åsa", "Ängel", "carl", "ANNIKA", "Lee", "Annabel"]
LAST = ["Lee", "Annan", "Berg", "Ängström", "Smith", "Doe", "ann", "Annandale"]
COUNTRIES = ["France", "Sweden", "USA", "france", "FRANCE", None]
COMPANIES = ["Annex Ltd", "Ångbåt", "Acme", None]
SEARCHED = ("firstName", "lastName", "company", "email")

# Every combination the API accepts, with prefixes shorter and longer than PREFIX_CHARS that hit names,
# companies, emails and nothing.
FILTERS: list[dict[str, str]] = [
    {"q": "ann"},
    {"q": "ANN"},
    {"q": "a"},
    {"q": "än"},
    {"q": "ångb"},
    {"q": "ångbåt"},
    {"q": "zz"},
    {"q": "c0"},
    {"q": "annab"},
    {"q": "annandale"},
    {"q": "annex l"},
    {"q": "c3@example.com"},
    {"q": "annz"},
    {"q": "annabelle"},
    {"q": "le"},
    {"q": "ä"},
    {"q": "jo"},
    {"country": "France"},
    {"country": "fRANCE"},
    {"country": "Nowhere"},
    {"email": "c3@Example.com"},
    {"email": "C3@EXAMPLE.COM"},
    {"email": "shared@x.org"},
    {"email": "c3"},
    {"country": "France", "q": "ann"},
    {"country": "Sweden", "q": "a"},
    {"email": "shared@x.org", "q": "jo"},
    {"email": "shared@x.org", "country": "USA"},
    {"email": "shared@x.org", "country": "USA", "q": "b"},
    {"country": "france", "q": "annandal"},
]
# Shorter than, as long as and longer than the indexed prefixes.
assert {(len(f["q"]) > PREFIX_CHARS) - (len(f["q"]) < PREFIX_CHARS) for f in FILTERS if "q" in f} == {-1, 0, 1}


def customer(customer_id: str, **fields: Any) -> dict[str, Any]:
    doc = {"_id": customer_id, **fields, "createdAt": NOW, "updatedAt": NOW}
    return {**doc, **index_keys(doc)}


@pytest.fixture
async def people(db: AsyncDatabase) -> list[dict[str, Any]]:
    """150 customers with overlapping names, case variants, shared emails and missing fields, in random order."""
    rng = random.Random(11)
    docs = []
    for index in range(150):
        fields: dict[str, Any] = {
            "firstName": rng.choice(FIRST),
            "lastName": rng.choice(LAST),
            "email": "shared@x.org" if index % 9 == 0 else f"c{index}@Example.com",
        }
        for name, choices in (("country", COUNTRIES), ("company", COMPANIES)):
            if (value := rng.choice(choices)) is not None:
                fields[name] = value
        docs.append(customer(f"c{index:03d}", **fields))
    rng.shuffle(docs)
    await db.customers.insert_many(docs)
    return docs


def expected_ids(docs: list[dict[str, Any]], filters: dict[str, str]) -> list[str]:
    """What the filters mean, in plain Python: case-insensitive exact email and country, and `q` a
    case-insensitive prefix of first name, last name, company or email."""

    def keep(doc: dict[str, Any]) -> bool:
        if "email" in filters and doc.get("email", "").lower() != filters["email"].lower():
            return False
        if "country" in filters and (doc.get("country") or "").lower() != filters["country"].lower():
            return False
        q = filters.get("q", "").lower()
        return any((doc.get(name) or "").lower().startswith(q) for name in SEARCHED if doc.get(name))

    return sorted(doc["_id"] for doc in docs if keep(doc))


def everything(filters: dict[str, str]) -> dict[str, str | None]:
    return {"email": None, "country": None, "q": None, **filters}


async def walk(repository: CustomerRepository, limit: int, **filters: str) -> tuple[list[str], set[int]]:
    """Follow next_cursor through the repository from the first page to the end."""

    async def page_after(after: str | None) -> ListingPage:
        page = await repository.list(limit=limit, page=None, after=after, **filters)
        return [item.customer_id for item in page.items], page.total, page.next_cursor

    return await walk_pages(page_after)


@pytest.mark.parametrize("filters", FILTERS, ids=lambda f: ",".join(f"{k}={v}" for k, v in f.items()))
async def test_a_filter_lists_what_it_means(
    db: AsyncDatabase, people: list[dict[str, Any]], filters: dict[str, str]
) -> None:
    repository = CustomerRepository(db.customers)
    expected = expected_ids(people, filters)
    assert len(expected) < len(people)
    for limit in (1, 7, 500):
        assert await walk(repository, limit, **filters) == (expected, {len(expected)})
    for page_number in (1, 2, 3):
        page = await repository.list(limit=4, page=page_number, after=None, **filters)
        assert [item.customer_id for item in page.items] == expected[(page_number - 1) * 4 : page_number * 4]
        assert (page.total, page.total_capped) == (len(expected), False)


def stages(plan: dict[str, Any]) -> list[str]:
    named = plan["stage"] + (f"({plan['indexName']})" if "indexName" in plan else "")
    below = [plan["inputStage"]] if "inputStage" in plan else plan.get("inputStages", [])
    return [named, *(stage for child in below for stage in stages(child))]


def explained_page(db: AsyncDatabase, filters: dict[str, str], after: str | None) -> Any:
    """The page's find as the repository sends it (a limit of 6), explained with its execution stats."""
    query = _filter(**everything(filters))
    if after is not None:
        query["_id"] = {"$gt": after}
    return db.customers.find(query).sort("_id", 1).limit(6).explain()


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "_id_"),
        ({"q": "ann"}, "searchKeys_id"),
        ({"q": "annandale"}, "searchKeys_id"),
        ({"email": "C3@example.com"}, "emailKey_id"),
        ({"country": "FRANCE"}, "countryKey_id"),
        ({"country": "France", "q": "ann"}, None),
        ({"email": "shared@x.org", "country": "USA", "q": "b"}, None),
        ({"country": "Sweden", "q": "a"}, None),
        ({"email": "shared@x.org", "q": "jo"}, None),
    ],
    ids=lambda value: str(value),
)
@pytest.mark.parametrize("after", [None, "c050"])
async def test_every_list_shape_walks_an_index_in_id_order_and_stops_at_the_limit(
    db: AsyncDatabase, people: list[dict[str, Any]], filters: dict[str, str], index: str | None, after: str | None
) -> None:
    """No SORT stage (the index gives the _id order), a LIMIT, and no more documents examined than the page
    needs plus what a compound filter's other conditions reject. A short q beside an email or a country is
    a residual filter on that equality's walk."""
    explained = await explained_page(db, filters, after)
    plan = stages(explained["queryPlanner"]["winningPlan"])
    assert plan[0] == "LIMIT" and not any(stage.startswith("SORT") for stage in plan), plan
    scans = [stage for stage in plan if stage.startswith("IXSCAN")]
    assert len(scans) == 1, plan
    if index is not None:
        assert scans[0] == f"IXSCAN({index})", plan
    if len(filters) <= 1 and len(filters.get("q", "")) <= PREFIX_CHARS:
        # One equality: the index range holds only matches, so the walk reads the page alone. (A longer q also
        # reads the customers whose terms share its first PREFIX_CHARS characters but not the rest.)
        assert explained["executionStats"]["totalDocsExamined"] <= 6


def stage_named(plan: dict[str, Any], name: str) -> dict[str, Any]:
    while plan["stage"] != name:
        plan = plan["inputStage"]
    return plan


@pytest.mark.parametrize("q", ["a", "AN", "ä", "jo", "zz", "q"])
@pytest.mark.parametrize("after", [None, "c050"])
async def test_a_q_shorter_than_the_prefixes_is_a_top_k_sort_of_its_index_range_or_an_id_walk(
    db: AsyncDatabase, people: list[dict[str, Any]], q: str, after: str | None
) -> None:
    """The index range of a short q holds exactly its matches, in key order: one plan is a SORT that keeps the
    limit's best (top-k) of them, reading every match once; the other walks the _id index, filtering, and stops
    at the limit. The planner picks by trial: the walk for a common q, the range for a rare one
    (docs/performance.md: what each costs at 1 M customers)."""
    explained = await explained_page(db, {"q": q}, after)
    winning, stats = explained["queryPlanner"]["winningPlan"], explained["executionStats"]
    plan = stages(winning)
    everyone = sorted(doc["_id"] for doc in people if after is None or doc["_id"] > after)
    matches = [i for i in expected_ids(people, {"q": q}) if i in everyone]
    assert stats["nReturned"] == min(6, len(matches))
    if plan[0] == "SORT":
        assert [stage for stage in plan if stage != "FETCH"] == ["SORT", "IXSCAN(searchKeys_id)"], plan
        assert stage_named(winning, "SORT").get("limitAmount", 6) == 6, plan
        assert len(matches) <= stats["totalDocsExamined"] <= len(expected_ids(people, {"q": q}))
    else:
        assert plan == ["LIMIT", "FETCH", "IXSCAN(_id_)"], plan
        last = everyone.index(matches[5]) + 1 if len(matches) > 6 else len(everyone)
        assert stats["totalDocsExamined"] <= last + 1


async def test_a_filtered_total_is_counted_up_to_the_cap(db: AsyncDatabase, people: list[dict[str, Any]]) -> None:
    repository = CustomerRepository(db.customers, total_cap=5)
    many = expected_ids(people, {"q": "a"})
    assert len(many) > 5
    page = await repository.list(limit=3, page=None, after=None, q="a")
    assert (page.total, page.total_capped) == (5, True)
    assert [item.customer_id for item in page.items] == many[:3] and page.next_cursor is not None
    assert (await walk(repository, 50, q="a"))[0] == many  # the cap limits the count, never the pages
    few = expected_ids(people, {"email": "shared@x.org"})
    page = await repository.list(limit=50, page=None, after=None, email="shared@x.org", q="jo")
    assert page.total_capped is False and page.total == len(
        expected_ids(people, {"email": "shared@x.org", "q": "jo"})
    ) <= len(few)
    unfiltered = await repository.list(limit=1, page=None, after=None)
    assert (unfiltered.total, unfiltered.total_capped) == (len(people), False)  # metadata count, never capped


async def test_a_cursor_past_every_match_gives_an_empty_last_page(
    db: AsyncDatabase, people: list[dict[str, Any]]
) -> None:
    page = await CustomerRepository(db.customers).list(limit=10, page=None, after="eg", q="ann")  # "eg": "z"
    assert page.items == [] and page.next_cursor is None and page.total > 0


ODD_IDS = [
    "-",
    ".5",
    "0",
    "00",
    "000000000",
    "0000000001",
    "9",
    "A",
    "Z",
    "_",
    "a",
    "a" * 64,
    "ab",
    "b-1",
    "z",
    "zzzzzzzzzz",
    "~",
    "é",
    "éa",
    "ü-2",
    "中文",
    "\U0001f600",
]


@pytest.mark.parametrize("limit", [1, 3, 50])
async def test_the_unfiltered_walk_is_the_id_order_of_odd_ids(db: AsyncDatabase, limit: int) -> None:
    """MongoDB orders string _ids by their UTF-8 bytes, which is Python's code point order."""
    await db.customers.insert_many([customer(customer_id, firstName="A") for customer_id in ODD_IDS])
    repository = CustomerRepository(db.customers)
    assert await walk(repository, limit) == (sorted(ODD_IDS), {len(ODD_IDS)})
    page = await repository.list(limit=3, page=2, after=None)
    assert [item.customer_id for item in page.items] == sorted(ODD_IDS)[3:6]
