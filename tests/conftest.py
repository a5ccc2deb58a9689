"""Fixtures: a real SecantusDB server (secantusd-rs) over TCP for the session, settings, the app, an HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from app.asgi import create_app
from app.db import ensure_indexes, make_client
from app.embedded import EmbeddedMongo, free_port
from app.settings import Settings

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMongo]:
    """A SecantusDB server in a child process on a free port; its storage is a throw-away folder."""
    server = EmbeddedMongo(tmp_path_factory.mktemp("secantus") / "db", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    imports = tmp_path_factory.mktemp("imports")
    return Settings(
        mongodb_uri=mongo_server.uri,
        mongodb_db="test",
        data_dir=str(imports.parent),
        import_dir=str(imports),
        import_checkpoint_seconds=0.2,
        list_total_cache_seconds=0,  # tests read totals right after their writes (the cache has its own test)
        expensive_share=0,  # a budget of database time depends on the machine's speed (tests/unit/test_admission.py)
    )


@pytest.fixture(scope="session")
def import_dir(settings: Settings) -> Path:
    return settings.import_path


@pytest.fixture(scope="session")
async def mongo(settings: Settings) -> AsyncIterator[AsyncMongoClient]:
    client = make_client(settings.mongodb_uri or "")
    yield client
    await client.close()


@pytest.fixture
async def db(mongo: AsyncMongoClient, settings: Settings) -> AsyncDatabase:
    """The test database with every collection emptied (indexes kept)."""
    database = mongo[settings.mongodb_db]
    for name in await database.list_collection_names():
        await database[name].delete_many({})
    await ensure_indexes(database)
    return database


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient]:
    async with AsyncTestClient(app, timeout=30) as test_client:
        yield test_client
