"""After the app drops an index, customer requests wait for one warm-up query (app/warmup.py, differences 9).

The warm-up query is held at a gate the test opens: who waits, who is answered 503 and who is served is decided
by events, never by a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from app.admission import Work
from app.asgi import create_app
from app.settings import Settings
from tests.helpers.answers import assert_problem
from tests.helpers.csvfiles import HEADER, good_row, write
from tests.helpers.gates import until
from tests.helpers.served import serving
from tests.helpers.settings import with_settings

T = TypeVar("T")

pytestmark = pytest.mark.timeout(120)


class HeldProbe:
    """The app's own warm-up query, run once the test opens the gate. The app runs on its test client's loop in
    another thread: the gate is a thread event, which the app's loop polls."""

    def __init__(self, real: Callable[[], Awaitable[object]]):
        self.real = real
        self.reached = threading.Event()
        self.opened = threading.Event()

    async def __call__(self) -> None:
        self.reached.set()
        await until(self.opened.is_set)
        await self.real()


@dataclass
class Served:
    client: httpx.AsyncClient
    services: Any
    loop: asyncio.AbstractEventLoop  # uvicorn's, in its thread: the app's database client works on it alone

    async def on_app_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))


@pytest.fixture
async def serve(settings: Settings) -> AsyncIterator[Callable[..., Served]]:
    """serve(**settings) -> an app on uvicorn, on a database of its own, warm after its start."""
    with contextlib.ExitStack() as stack:
        clients: list[httpx.AsyncClient] = []

        def start(**changes: Any) -> Served:
            app = create_app(with_settings(settings, mongodb_db=f"warmup_{uuid.uuid4().hex[:8]}", **changes))
            loops: list[asyncio.AbstractEventLoop] = []
            app.on_startup.append(lambda: loops.append(asyncio.get_running_loop()))
            url = stack.enter_context(serving(app, timeout_graceful_shutdown=5))
            clients.append(httpx.AsyncClient(base_url=url, timeout=30))
            return Served(clients[-1], app.state.services, loops[0])

        yield start
        for client in clients:
            await client.aclose()


def metric(text: str, name: str, work: Work | None = None) -> float:
    label = f'{{class="{work}"}}' if work else ""
    line = next(line for line in text.splitlines() if line.startswith(f"{name}{label} "))
    return float(line.split()[1])


async def completed(client: httpx.AsyncClient) -> dict[str, Any]:
    """The latest job's progress once it has ended (progress is served from memory: it never waits)."""
    while (progress := (await client.get("/import/progress")).json())["status"] == "RUNNING":  # noqa: ASYNC110 (an HTTP poll)
        await asyncio.sleep(0.05)
    return progress


async def rebuilt(served: Served) -> HeldProbe:
    """The import's index rebuild (on secantusd-rs, at each start after the first), its warm-up held."""
    await until(lambda: served.services.warmup.warm)  # the start's own, with the migrations' drops before it
    assert served.services.warmup.runs == 1
    probe = HeldProbe(served.services.warmup.probe)
    served.services.warmup.probe = probe
    await served.on_app_loop(served.services.imports.store.rebuild_running_index())
    await until(probe.reached.is_set)
    return probe


async def test_after_the_import_rebuilds_its_index_requests_wait_for_the_warm_up_and_are_then_served(
    serve: Callable[..., Served],
) -> None:
    served = serve(request_timeout_seconds=60)
    client = served.client
    created = await client.post("/customers", json={"firstName": "Ann", "lastName": "Lee", "email": "ann@x.io"})
    customer = f"/customers/{created.json()['customerId']}"
    probe = await rebuilt(served)

    waiting = [asyncio.ensure_future(client.get(customer)), asyncio.ensure_future(client.get("/customers"))]
    slots = served.services.admission.classes
    await until(lambda: slots[Work.CHEAP].in_flight == slots[Work.EXPENSIVE].in_flight == 1)  # admitted, waiting
    text = (await client.get("/metrics")).text
    assert metric(text, "db_warm") == 0 and metric(text, "db_warmups") == 1
    assert (await client.get("/import/progress")).status_code == 200  # from memory: it does not wait
    assert not any(task.done() for task in waiting)

    probe.opened.set()
    assert [(await task).status_code for task in waiting] == [200, 200]
    text = (await client.get("/metrics")).text
    assert metric(text, "db_warm") == 1 and metric(text, "db_warmups") == 2
    assert (await client.get(customer)).json()["email"] == "ann@x.io"


async def test_a_request_that_the_warm_up_outlasts_is_503_with_retry_after(
    serve: Callable[..., Served],
) -> None:
    served = serve(request_timeout_seconds=0.05)
    client, services = served.client, served.services
    probe = await rebuilt(served)
    for path in ("/customers/c1", "/customers", "/customers?email=ann@x.io"):
        response = await client.get(path)
        problem = assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
        assert "warming up" in problem["detail"]
    text = (await client.get("/metrics")).text
    assert metric(text, "admission_shed", Work.CHEAP) == 2 and metric(text, "admission_shed", Work.EXPENSIVE) == 1
    probe.opened.set()
    await until(lambda: services.warmup.warm)
    assert (await client.get("/customers/c1")).status_code == 404
    assert (await client.get("/customers")).json()["total"] == 0


async def test_a_client_that_leaves_while_its_request_waits_for_the_warm_up_frees_its_slot_at_once(
    serve: Callable[..., Served],
) -> None:
    served = serve(request_timeout_seconds=60)
    probe = await rebuilt(served)
    cheap = served.services.admission.classes[Work.CHEAP]
    request = asyncio.ensure_future(served.client.get("/customers/c1"))
    await until(lambda: cheap.in_flight == 1)  # admitted, waiting for the warm-up
    request.cancel()  # httpx closes the connection: uvicorn tells the app the client disconnected
    await until(lambda: cheap.in_flight == 0)
    assert cheap.shed == 0  # cancelled, not held until its deadline and then answered 503
    assert not served.services.warmup.warm
    probe.opened.set()
    await until(lambda: served.services.warmup.warm)


async def test_an_imports_writes_wait_for_the_warm_up_after_its_claim_drops_the_index(
    serve: Callable[..., Served],
) -> None:
    """A re-sync reads the customers it writes: after its own claim's drop it waits for the warm-up, then runs."""
    served = serve(request_timeout_seconds=60)
    client, services = served.client, served.services
    name = f"warm-{uuid.uuid4().hex[:8]}.csv"
    path = write(services.settings.import_path / name, [HEADER, *(good_row(i) for i in range(50))])
    assert (await client.post("/import/sync", json={"filePath": name})).status_code == 202
    await completed(client)
    await until(lambda: services.warmup.warm)
    probe = HeldProbe(services.warmup.probe)
    services.warmup.probe = probe

    write(path, [HEADER, *(good_row(i, about="Changed") for i in range(60))])
    assert (await client.post("/import/sync", json={"filePath": name, "mode": "upsert"})).status_code == 202
    await until(probe.reached.is_set)  # the claim dropped the index: the warm-up runs, held
    await until(lambda: services.warmup.waiting == 1)  # the import's first write waits for it
    stored = services.db["customers"]
    assert await served.on_app_loop(stored.count_documents({"about": "Changed"})) == 0

    probe.opened.set()
    progress = await completed(client)
    assert (progress["status"], progress["rowsInserted"], progress["rowsUpdated"]) == ("COMPLETED", 10, 50)
    assert await served.on_app_loop(stored.count_documents({"about": "Changed"})) == 60
