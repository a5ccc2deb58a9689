"""Fixtures of the system tests: a SecantusDB server the tests own, the hostile CSV and the reference (what an
uninterrupted import of it produces), one test's deployment, and `python -m app import` runners. The helpers they
use are in tests/helpers/ (apps, deployment, cli)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymongo import MongoClient

from app.embedded import SERVER_FLAGS, EmbeddedMongo, free_port
from tests.helpers.apps import Apps, app_env, start_import, wait_completed
from tests.helpers.cli import TERMINAL_ENV, Cli
from tests.helpers.csvfiles import EXISTING, Hostile, write_hostile_csv
from tests.helpers.deployment import Deployment, OwnServer, Result, result_of
from tests.helpers.settings import SETTINGS_ENV


def seed(sync_mongo: MongoClient, database: str) -> None:
    sync_mongo[database].customers.insert_one(dict(EXISTING))


@pytest.fixture(scope="session")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return write_hostile_csv(tmp_path_factory.mktemp("hostile") / "hostile.csv")


@pytest.fixture(scope="session")
def sync_mongo(mongo_server: EmbeddedMongo) -> Iterator[MongoClient]:
    with MongoClient(mongo_server.uri, tz_aware=True, serverSelectionTimeoutMS=10_000) as client:
        yield client


@pytest.fixture(scope="session")
def reference(
    mongo_server: EmbeddedMongo, sync_mongo: MongoClient, hostile: Hostile, tmp_path_factory: pytest.TempPathFactory
) -> Result:
    """An uninterrupted import of the hostile file into a fresh database."""
    folder = tmp_path_factory.mktemp("reference")
    database = f"reference_{uuid.uuid4().hex[:8]}"
    seed(sync_mongo, database)
    apps = Apps(folder, app_env(mongo_server, folder, database))
    shutil.copy(hostile.path, folder / "imports" / hostile.path.name)
    try:
        app = apps.start()
        job = start_import(app, hostile.path.name)
        wait_completed(app)
        result = result_of(app, sync_mongo, job["jobId"])
    finally:
        apps.close()
    return result


def _deploy(server: EmbeddedMongo, client: MongoClient, hostile: Hostile, folder: Path) -> Deployment:
    database = f"resilience_{uuid.uuid4().hex[:8]}"
    apps = Apps(folder, app_env(server, folder, database))
    target = folder / "imports" / hostile.path.name
    shutil.copy(hostile.path, target)
    seed(client, database)
    return Deployment(apps, database, hostile.path.name, target, server)


@pytest.fixture
def deployment(
    mongo_server: EmbeddedMongo, sync_mongo: MongoClient, hostile: Hostile, tmp_path: Path
) -> Iterator[Deployment]:
    """A fresh database on the shared server (left behind: the server's storage is thrown away, and dropping
    costs seconds), the hostile file in this test's IMPORT_DIR."""
    prepared = _deploy(mongo_server, sync_mongo, hostile, tmp_path)
    try:
        yield prepared
    finally:
        prepared.apps.close()


@pytest.fixture
def own_server(hostile: Hostile, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OwnServer]:
    """A SecantusDB server for this test alone (it may be stopped and started again on its port), and a deployment.
    Parametrized indirectly, the server is started with those flags of its own (a tuple of strings)."""
    flags: tuple[str, ...] = getattr(request, "param", SERVER_FLAGS)
    server = EmbeddedMongo(tmp_path / "secantus" / "db", free_port(), flags=flags)
    server.start()
    try:
        with MongoClient(server.uri, tz_aware=True) as client:
            prepared = _deploy(server, client, hostile, tmp_path)
        try:
            yield OwnServer(server, prepared)
        finally:
            prepared.apps.close()
    finally:
        server.stop()


@pytest.fixture
def cli(mongo_server: EmbeddedMongo, sync_mongo: MongoClient, tmp_path: Path) -> Iterator[Cli]:
    """`python -m app import` against a fresh database on the session's server, in tmp_path."""
    database = f"cli_{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV | TERMINAL_ENV}
    env |= app_env(mongo_server, tmp_path, database) | {"LOG_LEVEL": "WARNING"}
    runner = Cli(tmp_path, env, sync_mongo[database], mongo_server, [])
    try:
        yield runner
    finally:
        runner.close()
