"""Filtered listing on SecantusDB: each filter runs as one indexed clause there, and means what the MongoDB query
means. Both query shapes run against the same SecantusDB server and must return the same pages."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from app.customers.document import search_keys
from app.customers.repository import CustomerRepository, _filter, _one_clause_filter
from app.db import Planner, ensure_indexes, query_planner

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
    for _ in range(200):
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
