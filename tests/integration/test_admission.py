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
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient, MongoClient, _csot

from app.admission import Work
from app.asgi import create_app
from app.embedded import EmbeddedMongo, free_port
from app.settings import Settings
from tests.helpers.answers import assert_problem
from tests.helpers.csvfiles import HEADER, good_row, write
from tests.helpers.gates import Gate, until
from tests.helpers.processes import held
from tests.helpers.served import serving
from tests.helpers.settings import with_settings

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
    """serve(**settings) -> an app of these settings on uvicorn, on a database of its own. The expensive class's
    database-time budget is off unless a test sets it: requests held at a gate would spend it."""
    with contextlib.ExitStack() as stack:

        def start(**changes: Any) -> Served:
            changes = {"expensive_share": 0, "mongodb_db": f"admission_{uuid.uuid4().hex[:8]}", **changes}
            app = create_app(with_settings(settings, **changes))
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


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[EmbeddedMongo]:
    """A SecantusDB server of this test's own, which it stops (SIGSTOP) for a while. Its port is checked to be
    served by this very process (serverStatus.pid): on a busy machine another test's server can take a free port
    between its choice and the bind, and stopping this one would then stop nothing the app talks to."""
    for attempt in range(3):
        server = EmbeddedMongo(tmp_path / f"db{attempt}", free_port())
        server.start()
        if server.process is not None and answering_pid(server) == server.process.pid:
            break
        server.stop()
    else:
        pytest.fail("no server of this test's own could keep its port")
    yield server
    server.stop()


def answering_pid(server: EmbeddedMongo) -> int | None:
    with MongoClient(server.uri, serverSelectionTimeoutMS=10_000) as client:
        pid = client.admin.command("serverStatus").get("pid")
    return int(pid) if pid is not None else None


async def test_a_request_past_its_deadline_is_503_with_retry_after_and_the_server_is_free_again(
    serve: Callable[..., Served], http: Callable[[str], httpx.AsyncClient], own_server: EmbeddedMongo
) -> None:
    """The database stopped mid-request: the request ends at its deadline with 503 and Retry-After (never waits
    for the database to come back), and the operation it sent is not left running on the server."""
    served = serve(mongodb_uri=own_server.uri, request_timeout_seconds=0.5)
    client = http(served.url)
    created = await client.post("/customers", json={"firstName": "Ann", "lastName": "Lee", "email": "ann@x.io"})
    customer = f"/customers/{created.json()['customerId']}"
    with held(own_server):
        problem = assert_shed(await client.get(customer))
        assert "deadline" in problem["detail"]
        assert_shed(await client.get("/customers"))
    assert (await client.get(customer)).status_code == 200  # the server is free again, the slots came back
    text = (await client.get("/metrics")).text
    assert metric(text, "admission_deadline_exceeded", Work.CHEAP) == 1
    assert metric(text, "admission_deadline_exceeded", Work.EXPENSIVE) == 1
    assert metric(text, "admission_in_flight", Work.CHEAP) == 0
    async with AsyncMongoClient(own_server.uri) as direct:
        await until_async(lambda: no_operation_of_the_app(direct))


async def no_operation_of_the_app(client: AsyncMongoClient[dict[str, Any]]) -> bool:
    ops = (await client.admin.command({"currentOp": 1}))["inprog"]
    return not [op for op in ops if op.get("appName") == "customer-import" and op.get("ns", "").endswith("customers")]


async def until_async(condition: Callable[[], Awaitable[bool]]) -> None:
    while not await condition():  # noqa: ASYNC110 (a database read, not an event of this loop)
        await asyncio.sleep(0.05)


class NoDeadline:
    """A job's sink that notes, for every batch, the deadline its database writes run under."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.deadlines: list[float | None] = []

    async def write(self, batch: Any) -> Any:
        self.deadlines.append(_csot.get_timeout())
        return await self.sink.write(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sink, name)


async def test_the_import_checkpoints_and_ends_while_every_api_slot_is_held_and_under_no_request_deadline(
    serve: Callable[..., Served],
    http: Callable[[str], httpx.AsyncClient],
    mongo: AsyncMongoClient[dict[str, Any]],
    import_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served = serve(cheap_slots=1, expensive_slots=1, admission_wait_seconds=0, request_timeout_seconds=60)
    client = http(served.url)
    imports = served.services.imports
    sinks: list[NoDeadline] = []
    gates: list[Gate] = []
    real = imports.make_sink

    def make_sink(state: Any) -> Gate:
        sinks.append(NoDeadline(real(state)))
        gates.append(Gate(sinks[-1]))
        return gates[-1]

    monkeypatch.setattr(imports, "make_sink", make_sink)
    file = write(import_dir / "held-api.csv", [HEADER, *(good_row(i, f"held-{i}") for i in range(3000))])
    started = await client.post("/import/sync", json={"filePath": file.name, "batchSize": 100})
    assert started.status_code == 202, started.text
    jobs = mongo[served.services.settings.mongodb_db].import_state

    held_reads = hold(served, "find_one", "estimated_document_count")
    requests = [await when_waiting(held_reads, 1, client.get("/customers/none"))]
    requests.append(await when_waiting(held_reads, 2, client.get("/customers")))
    assert_shed(await client.get("/customers/other"))  # every API slot is taken
    first = (await jobs.find_one({}))["heartbeatAt"]
    await until_async(lambda: heartbeat_after(jobs, first))  # checkpoints go on
    gates[0].open_all()
    await until_async(lambda: completed(jobs))
    assert held_reads.waiting == 2  # ...while the API's slots were held all along
    held_reads.opened.set()
    assert [(await request).status_code for request in requests] == [404, 200]
    assert sinks and all(deadline is None for sink in sinks for deadline in sink.deadlines)
    assert (await client.get("/import/progress")).json()["rowsInserted"] == 3000


async def heartbeat_after(jobs: Any, first: Any) -> bool:
    return bool((await jobs.find_one({}))["heartbeatAt"] > first)


async def completed(jobs: Any) -> bool:
    return bool((await jobs.find_one({}))["status"] == "COMPLETED")


def test_only_handlers_that_can_stop_half_way_are_cancelled_when_their_client_leaves(settings: Settings) -> None:
    """Starting, resuming, cancelling and previewing an import claim jobs and read files: a cancel landing between a
    claim and its launch orphans a RUNNING job, one landing as aiofiles opens a file leaks it (the dashboard's
    preview, replaced by a newer one, did). Reads and writes of customers are single operations: they stop."""
    app = create_app(settings)
    opts = {(method, route.path): handler.opt for route in app.routes for method, handler in _handlers(route)}
    control = [("POST", f"/import/{name}") for name in ("sync", "preview", "resume", "cancel")]
    assert all(opts[key]["cancellable"] is False for key in control)
    assert opts[("GET", "/customers/{customer_id:str}")]["cancellable"] is True
    assert opts[("GET", "/customers")]["cancellable"] is True
    assert opts[("PATCH", "/customers/{customer_id:str}")]["cancellable"] is True


def _handlers(route: Any) -> list[tuple[str, Any]]:
    return [(method, h) for h in getattr(route, "route_handlers", []) for method in getattr(h, "http_methods", ())]
