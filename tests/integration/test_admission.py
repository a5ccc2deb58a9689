"""Admission (issue 19): slots per class of work, the bound on requests held, deadlines, and clients that leave.

Each test serves its own app with uvicorn in a thread and holds database operations open at a gate the test
opens (`Held`): who is shed, served or cancelled is decided by events, never by a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.admission import Work
from app.asgi import create_app
from app.settings import Settings
from tests.helpers import assert_problem, serving, until, with_settings

pytestmark = pytest.mark.timeout(120)


class Held:
    """A collection whose `methods` wait at a gate the test opens: a database operation held open. The app runs
    on uvicorn's loop in another thread, so the state is guarded by a thread lock and waiters poll it."""

    def __init__(self, collection: Any, methods: tuple[str, ...]):
        self.collection = collection
        self.methods = methods
        self.lock = threading.Lock()
        self.opened = threading.Event()
        self.waiting = 0
        self.cancelled = 0

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.collection, name)
        if name not in self.methods:
            return attribute

        async def held(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.waiting += 1
            try:
                await until(self.opened.is_set)
            except asyncio.CancelledError:
                with self.lock:
                    self.cancelled += 1
                raise
            finally:
                with self.lock:
                    self.waiting -= 1
            return await attribute(*args, **kwargs)

        return held


@dataclass
class Served:
    url: str
    services: Any


@pytest.fixture
def serve(settings: Settings) -> Iterator[Callable[..., Served]]:
    """serve(**settings) -> an app of these settings on uvicorn, on a database of its own."""
    with contextlib.ExitStack() as stack:

        def start(**changes: Any) -> Served:
            app = create_app(with_settings(settings, mongodb_db=f"admission_{uuid.uuid4().hex[:8]}", **changes))
            url = stack.enter_context(serving(app, timeout_graceful_shutdown=5))
            return Served(url, app.state.services)

        yield start


@pytest.fixture
async def http() -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(url: str) -> httpx.AsyncClient:
        clients.append(httpx.AsyncClient(base_url=url, timeout=30))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def hold(served: Served, *methods: str) -> Held:
    held = Held(served.services.customers.collection, methods)
    served.services.customers.collection = held
    return held


async def when_waiting(held: Held, count: int, request: Awaitable[httpx.Response]) -> asyncio.Task[httpx.Response]:
    task = asyncio.ensure_future(request)
    await until(lambda: held.waiting >= count or task.done())
    assert not task.done(), f"the request ended before reaching the gate: {task.result()}"
    return task


def assert_shed(response: httpx.Response) -> dict[str, Any]:
    problem = assert_problem(response, 503)
    assert int(response.headers["retry-after"]) >= 1
    return problem


def metric(text: str, name: str, work: Work | None = None) -> float:
    label = f'{{class="{work}"}}' if work else ""
    line = next(line for line in text.splitlines() if line.startswith(f"{name}{label} "))
    return float(line.split()[1])


async def test_a_full_expensive_class_sheds_the_next_list_while_point_reads_and_writes_are_served(
    serve: Callable[..., Served], http: Callable[[str], httpx.AsyncClient]
) -> None:
    served = serve(expensive_slots=1, cheap_slots=1, admission_wait_seconds=0)
    client = http(served.url)
    created = await client.post("/customers", json={"firstName": "Ann", "lastName": "Lee", "email": "ann@x.io"})
    customer = f"/customers/{created.json()['customerId']}"
    held = hold(served, "estimated_document_count")  # the unfiltered list's total
    first = await when_waiting(held, 1, client.get("/customers"))

    problem = assert_shed(await client.get("/customers", params={"country": "France"}))
    assert "expensive" in problem["detail"]
    assert (await client.get(customer)).status_code == 200  # a point read has its own slots
    assert (await client.get("/customers", params={"email": "ANN@x.io"})).json()["total"] == 1
    assert (await client.patch(customer, json={"city": "Oslo"})).status_code == 200
    assert (await client.get("/import/progress")).status_code == 200  # memory: no slot

    held.opened.set()
    assert (await first).status_code == 200
    assert (await client.get("/customers")).status_code == 200  # the slot came back
    text = (await client.get("/metrics")).text
    assert metric(text, "admission_shed", Work.EXPENSIVE) == 1
    assert metric(text, "admission_shed", Work.CHEAP) == 0
    assert metric(text, "admission_in_flight", Work.EXPENSIVE) == 0


async def test_a_full_cheap_class_sheds_point_reads_and_leaves_lists_alone(
    serve: Callable[..., Served], http: Callable[[str], httpx.AsyncClient]
) -> None:
    served = serve(expensive_slots=1, cheap_slots=2, admission_wait_seconds=0)
    client = http(served.url)
    held = hold(served, "find_one")
    gets = [await when_waiting(held, n, client.get(f"/customers/c{n}")) for n in (1, 2)]
    assert_shed(await client.delete("/customers/c3"))
    assert (await client.get("/customers")).status_code == 200
    held.opened.set()
    assert [(await get).status_code for get in gets] == [404, 404]


async def test_the_instance_holds_at_most_max_requests_and_refuses_the_next_at_once(
    serve: Callable[..., Served], http: Callable[[str], httpx.AsyncClient]
) -> None:
    served = serve(max_requests_in_flight=2, cheap_slots=8, admission_wait_seconds=0)
    client = http(served.url)
    held = hold(served, "find_one")
    gets = [await when_waiting(held, n, client.get(f"/customers/c{n}")) for n in (1, 2)]
    problem = assert_shed(await client.get("/import/progress"))  # any request, even one served from memory
    assert "2 requests" in problem["detail"]
    held.opened.set()
    assert [(await get).status_code for get in gets] == [404, 404]
    assert (await client.get("/import/progress")).status_code == 200
    assert metric((await client.get("/metrics")).text, "http_requests_refused") == 1


async def test_a_client_that_leaves_cancels_its_request_and_frees_its_slot(
    serve: Callable[..., Served], http: Callable[[str], httpx.AsyncClient]
) -> None:
    served = serve(expensive_slots=1, admission_wait_seconds=0)
    client = http(served.url)
    held = hold(served, "estimated_document_count")
    request = await when_waiting(held, 1, client.get("/customers"))
    request.cancel()  # httpx closes the connection: uvicorn tells the app the client disconnected
    await until(lambda: held.cancelled == 1)
    expensive = served.services.admission.classes[Work.EXPENSIVE]
    await until(lambda: expensive.in_flight == 0)
    held.opened.set()
    assert (await client.get("/customers")).status_code == 200
