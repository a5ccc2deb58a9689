"""The export as a backup: a CSV export imports again, into an empty database, to the same customers, field for
field. Each hostile fixture (tests/data), the hostile file of tests/helpers/csvfiles.py and a generated file of
20,000 rows are imported, exported, and the export imported into a second database."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from app.asgi import create_app
from app.customers.document import FIELDS
from app.db import ensure_indexes
from app.settings import Settings
from tests.helpers.answers import start, wait_done
from tests.helpers.csvfiles import write_hostile_csv
from tests.helpers.paths import ROOT
from tests.helpers.settings import with_settings

DATA = ROOT / "tests" / "data"
STORED = ("_id", *FIELDS[1:])  # a customer's fields as stored (customerId is _id)
REFUSED = {"no_customer_id.csv"}  # no customer id column: no import starts
FIXTURES = sorted(path.name for path in DATA.glob("*.csv") if path.name not in REFUSED)
EMPTY = {"only_header.csv"}  # imports no customer


@pytest.fixture(scope="module")
async def second(settings: Settings, mongo: AsyncMongoClient) -> AsyncIterator[AsyncTestClient]:
    """An app on a database of its own: where the export is imported again."""
    name = f"round_trip_{uuid.uuid4().hex[:8]}"
    async with AsyncTestClient(create_app(with_settings(settings, mongodb_db=name)), timeout=60) as client:
        yield client
    await mongo.drop_database(name)


async def emptied(client: AsyncTestClient, mongo: AsyncMongoClient) -> AsyncDatabase:
    database = mongo[client.app.state.services.settings.mongodb_db]
    for name in await database.list_collection_names():
        await database[name].delete_many({})
    await ensure_indexes(database)
    return database


async def customers(db: AsyncDatabase) -> list[dict[str, Any]]:
    return [doc async for doc in db.customers.find({}, dict.fromkeys(STORED, 1)).sort("_id", 1)]


async def imported(client: AsyncTestClient, file: Path) -> dict[str, Any]:
    await start(client, file.name, batchSize=500)
    return await wait_done(client)


async def round_trip(
    client: AsyncTestClient, db: AsyncDatabase, second: AsyncTestClient, mongo: AsyncMongoClient, file: Path
) -> list[dict[str, Any]]:
    """Import `file`, export it as CSV, import the export into the second (emptied) database: the customers of
    both, which must be equal."""
    first = await imported(client, file)
    before = await customers(db)
    assert first["rowsInserted"] == len(before)
    response = await client.get("/customers/export")
    assert response.status_code == 200
    export = file.with_name(f"export-{uuid.uuid4().hex[:8]}.csv")
    export.write_bytes(response.content)
    target = await emptied(second, mongo)
    progress = await imported(second, export)
    assert progress["status"] == "COMPLETED", progress
    assert (progress["rowsInserted"], progress["rowsInvalid"], progress["rowsDuplicate"]) == (len(before), 0, 0)
    assert progress.get("ignoredColumns", []) == []
    after = await customers(target)
    assert after == before
    return before


@pytest.mark.parametrize("name", FIXTURES)
async def test_each_hostile_fixture_round_trips(
    client: AsyncTestClient,
    db: AsyncDatabase,
    second: AsyncTestClient,
    mongo: AsyncMongoClient,
    import_dir: Path,
    name: str,
) -> None:
    file = import_dir / name
    file.write_bytes((DATA / name).read_bytes())
    kept = await round_trip(client, db, second, mongo, file)
    assert bool(kept) == (name not in EMPTY)


async def test_the_hostile_file_round_trips(
    client: AsyncTestClient, db: AsyncDatabase, second: AsyncTestClient, mongo: AsyncMongoClient, import_dir: Path
) -> None:
    """BOM, CRLF, quoted newlines and quotes, ids with spaces around them, rows of every invalid kind."""
    hostile = write_hostile_csv(import_dir / "round-trip-hostile.csv", 2500)
    kept = await round_trip(client, db, second, mongo, hostile.path)
    assert len(kept) > 2000
    assert any("\n" in (doc.get("about") or "") for doc in kept)


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_customers", ROOT / "scripts" / "generate_customers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_a_generated_file_of_20000_rows_round_trips(
    client: AsyncTestClient,
    db: AsyncDatabase,
    second: AsyncTestClient,
    mongo: AsyncMongoClient,
    import_dir: Path,
    generator: ModuleType,
) -> None:
    file = import_dir / "round-trip-generated.csv"
    generator.generate(file, rows=20_000, duplicate_rate=0.01, invalid_rate=0.01)
    kept = await round_trip(client, db, second, mongo, file)
    assert 19_000 < len(kept) < 20_000
    assert sum(1 for doc in kept if "\n" in (doc.get("about") or "")) > 0
    assert sum(1 for doc in kept if not doc["_id"].isascii() or not (doc.get("lastName") or "").isascii()) > 0
