"""The unfiltered list's total is the collection's count, reused for LIST_TOTAL_CACHE_SECONDS (issue 19 item 6)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from app.customers.repository import CustomerRepository
from app.customers.schemas import CustomerCreate


async def add(repository: CustomerRepository, prefix: str, count: int) -> None:
    for i in range(count):
        await repository.create(
            CustomerCreate(customer_id=f"{prefix}{i}", first_name="Ann", last_name="Lee", email=f"{prefix}{i}@x.io")
        )


async def test_the_unfiltered_total_is_reused_until_it_is_older_than_its_ttl(db: AsyncDatabase) -> None:
    now = [100.0]
    repository = CustomerRepository(db.customers, total_ttl=5.0, clock=lambda: now[0])
    await add(repository, "t", 3)
    assert (await repository.list(limit=2, page=None, after=None)).total == 3
    await add(repository, "u", 4)
    now[0] += 4.9
    page = await repository.list(limit=2, page=None, after=None)
    assert (page.total, len(page.items)) == (3, 2)  # the count of 4.9 s ago; the page itself is read now
    assert (await repository.list(limit=2, page=None, after=None, q="x")).total == 0  # a filter is counted
    now[0] += 0.1
    assert (await repository.list(limit=2, page=None, after=None)).total == 7


async def test_without_a_ttl_every_page_counts(db: AsyncDatabase) -> None:
    repository = CustomerRepository(db.customers)
    await add(repository, "a", 1)
    assert (await repository.list(limit=1, page=None, after=None)).total == 1
    await add(repository, "b", 1)
    assert (await repository.list(limit=1, page=None, after=None)).total == 2
