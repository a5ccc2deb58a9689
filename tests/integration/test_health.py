"""GET /health, and what the app answers while its database is down."""

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.asgi import create_app
from app.embedded import EmbeddedMongo, free_port
from app.settings import Settings
from tests.helpers.answers import assert_problem
from tests.helpers.settings import with_settings


async def test_health_is_ok_when_the_database_answers(client: AsyncTestClient, db: AsyncDatabase) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"status": "ok", "database": "up", "version": "0.1.0", "databaseServer": "external"}


async def test_head_health_answers_like_get_without_a_body(client: AsyncTestClient, db: AsyncDatabase) -> None:
    """Issue 12 item 15: load balancers probe with HEAD, which was a 405."""
    response = await client.head("/health")
    assert response.status_code == 200
    assert response.content == b""


async def test_openapi_schema_is_served(client: AsyncTestClient) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/health", "/customers", "/customers/{customer_id}"} <= set(paths)
    assert {"get", "post"} <= set(paths["/customers"])
    assert {"get", "patch", "delete"} <= set(paths["/customers/{customer_id}"])


@pytest.fixture
async def stoppable(settings: Settings, tmp_path: Path) -> AsyncIterator[tuple[EmbeddedMongo, AsyncTestClient]]:
    """An app on its own SecantusDB server, which the test may stop (and should start again: see below)."""
    server = EmbeddedMongo(tmp_path / "db", free_port())
    server.start()
    try:
        app = create_app(with_settings(settings, mongodb_uri=server.uri))
        async with AsyncTestClient(app, timeout=30) as client:
            yield server, client
    finally:
        server.stop()


async def test_health_is_503_while_the_database_is_stopped_and_the_app_keeps_serving(
    stoppable: tuple[EmbeddedMongo, AsyncTestClient],
) -> None:
    server, client = stoppable
    created = await client.post("/customers", json={"firstName": "A", "lastName": "B", "email": "a@b"})
    assert created.status_code == 201
    customer = f"/customers/{created.json()['customerId']}"
    assert (await client.get("/health")).status_code == 200
    server.stop()
    for _ in range(2):
        problem = assert_problem(await client.get("/health"), 503)
        assert problem["database"] == "down"
        assert (await client.head("/health")).status_code == 503
    # A data endpoint waits out server selection (5 s), then answers 503, not 500.
    assert_problem(await client.get(customer), 503)
    assert (await client.get("/schema/openapi.json")).status_code == 200
    # Same port and data: the app finds it again by itself. Also, shutting the app down with the database
    # stopped leaves a socket unclosed (pymongo 4.20 cancels its monitor mid-connect), and its ResourceWarning
    # would fail whichever later test the garbage collector runs in.
    server.start()
    deadline = time.monotonic() + 30
    while (await client.get("/health")).status_code != 200:
        assert time.monotonic() < deadline, "the app did not reconnect within 30 s"
    assert (await client.get(customer)).status_code == 200
    assert (await client.head("/health")).status_code == 200


async def test_the_app_creates_the_import_folder_at_start_and_logs_it(settings: Settings, tmp_path: Path) -> None:
    """Issue 12 item 16 (tests/system/test_serve.py checks the same through `python -m app serve`)."""
    folder = tmp_path / "data" / "imports"
    app = create_app(with_settings(settings, import_dir=None, csv_file_path=None, data_dir=str(tmp_path / "data")))
    # A handler of its own: building an app reconfigures logging, which drops pytest's capture handler.
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("app.asgi")
    logger.addHandler(handler)
    try:
        async with AsyncTestClient(app):
            assert folder.is_dir()
    finally:
        logger.removeHandler(handler)
    assert any(str(folder) in record.getMessage() for record in records)
