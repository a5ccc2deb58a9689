"""Real `python -m app serve` processes against a SecantusDB server the tests own, a hostile CSV, and the
reference: what an uninterrupted import of that CSV produces."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from pymongo import MongoClient

from app.embedded import EmbeddedMongo, free_port
from app.settings import Settings

SETTINGS_ENV = {f.name.upper() for f in msgspec.structs.fields(Settings)}
START_TIMEOUT = 60.0
IMPORT_TIMEOUT = 90.0
LEASE_SECONDS = 3.0
BATCH_SIZE = 100
STEP_SECONDS = 0.005  # how long step_until lets the database run between two looks at an import (a few writes)
HEADER = (
    "Index,Customer Id,First Name,Last Name,Company,City,Country,Phone 1,Phone 2,Email,"
    "Subscription Date,Website,About Customer"
)
EXISTING = {"_id": "EXISTING-1", "firstName": "Keep", "lastName": "Me"}  # in the database before the import
COUNTERS = ("rowsProcessed", "rowsInserted", "rowsDuplicate", "rowsInvalid")


# ---- the hostile file -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """The file and what a correct import of it yields, computed while writing it."""

    path: Path
    counters: dict[str, int]
    rejected: dict[int, str]  # physical line -> a fragment of its reason


def _row(i: int, cid: str, *, email: str | None = None, date: str | None = None, about: str | None = None) -> str:
    email = email if email is not None else f"ann{i}@example.com"
    date = date if date is not None else f"2021-03-{1 + i % 28:02d}"
    about = about if about is not None else f"Likes tea and long CSV files; row {i} " + "x" * (i % 40)
    return (
        f'{i},{cid},Ann{i},Lee,"Acme, ""Best"" Inc",Paris,France,+33 1 23 45 67 {i % 100:02d},,{email},'
        f'{date},https://acme.example/{i},"{about}"'
    )


def write_hostile_csv(path: Path, rows: int = 10_000) -> Hostile:
    """~200-byte rows behind a BOM, CRLF line ends, no final newline; seven kinds of invalid rows (some spanning
    lines), blank lines, quoted newlines, duplicates inside a batch, across distant and neighbouring blocks and
    against a customer that exists before the import."""
    records: list[bytes] = [HEADER.encode()]
    rejected: dict[int, str] = {}
    valid_ids: list[str] = []  # the customer id of every valid row, in file order
    line = 2  # physical line of the next record
    for i in range(1, rows + 1):
        kind, cid = i % 200, f"C{i:07d}"
        reason: str | None = None
        if kind == 7:
            text, reason = f"{i},{cid},too,few", "expected 13 fields"
        elif kind == 13:
            text, reason = _row(i, "  "), "customer id is empty"
        elif kind == 17:
            text, reason = _row(i, cid, email=f"ann{i}@@example.com", about="spans\r\ntwo lines"), "invalid email"
        elif kind == 23:
            text, reason = _row(i, cid, date="2023-02-30"), "invalid subscription date"
        elif kind == 29:
            text, reason = _row(i, cid).replace("Paris", "Par\udcffis"), "not valid UTF-8"
        elif kind == 53:
            text, reason = _row(i, cid).replace('"Acme, ""Best"" Inc"', '"Acme"x'), "malformed CSV"
        elif kind == 61:
            text, reason = _row(i, "Z" * 300), "customer id longer than 64"  # the API's limit (customers/rules.py)
        else:
            if kind in (31, 131):
                records += [b"", b"   "]  # blank lines are not rows
                line += 2
            if i % 100 == 37:
                cid = f"C{i - 1:07d}"  # the row before: the same batch
            elif i % 100 == 41 and i > 5000:
                cid = f"C{i - 5000:07d}"  # a block long written
            elif i % 100 == 43:
                cid = f"C{i + 450:07d}"  # ~90 KB ahead: a neighbouring block, maybe written first
            elif i % 1000 == 501:
                cid = EXISTING["_id"]
            about = 'multi\nline, ""quoted""\r\nabout' if i % 100 == 47 else None
            text = _row(i, f"  {cid} " if i % 100 == 3 else cid, about=about)
            valid_ids.append(cid)
        if reason is not None:
            rejected[line] = reason
        data = text.encode("utf-8", "surrogateescape")
        records.append(data)
        line += 1 + data.count(b"\n")
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(records))  # the last record has no newline
    inserted = len(set(valid_ids) - {EXISTING["_id"]})
    counters = {"rowsInserted": inserted, "rowsDuplicate": len(valid_ids) - inserted, "rowsInvalid": len(rejected)}
    counters["rowsProcessed"] = sum(counters.values())
    return Hostile(path, counters, rejected)


# ---- app processes --------------------------------------------------------------------------------------


@dataclass
class App:
    """One `python -m app serve` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10)

    def progress(self) -> dict[str, Any]:
        response = self.get("/import/progress")
        assert response.status_code == 200, response.text
        return response.json()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- {self.log.name} ---\n{self.tail()}")


@dataclass
class Apps:
    """Starts apps for one test (same database unless told otherwise) and kills whatever is left at the end."""

    folder: Path
    base_env: dict[str, str]
    started: list[App] = field(default_factory=list)

    def start(self, *, wait: bool = True, **env: str) -> App:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
        environ |= {**self.base_env, "HOST": "127.0.0.1", "PORT": str(port), **env}
        log = self.folder / f"app-{len(self.started)}.log"
        with log.open("wb") as out:
            # a session of its own: the parser processes it forks can be found (and killed) by its id later
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=environ,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        app = App(process, f"http://127.0.0.1:{port}", log, environ)
        self.started.append(app)
        if wait:
            wait_until(lambda: _healthy(app), START_TIMEOUT, app, "GET /health was not 200")
        return app

    def close(self) -> None:
        """Kill every app and what it left behind: a killed app's parser pool (forkserver, workers, resource
        tracker) outlives it, blocked forever on its queue."""
        for app in self.started:
            if app.process.poll() is None:
                app.process.kill()
            app.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.process.pid, signal.SIGKILL)


def _healthy(app: App) -> bool:
    if not app.alive():
        app.fail(f"app exited with {app.process.returncode} before it was healthy")
    try:
        return app.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def wait_until(condition: Callable[[], Any], timeout: float, app: App | None = None, what: str = "") -> Any:
    """Poll `condition` every 50 ms until it returns something truthy; fail (with the app's log) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            message = f"{what or 'condition'} not met within {timeout:.0f}s"
            if app is not None:
                app.fail(message)
            pytest.fail(message)
        time.sleep(0.05)


def start_import(app: App, file_name: str) -> dict[str, Any]:
    response = app.post("/import/sync", {"filePath": file_name, "batchSize": BATCH_SIZE})
    assert response.status_code == 202, response.text
    return response.json()


def wait_progress(
    app: App, predicate: Callable[[dict[str, Any]], bool], timeout: float = IMPORT_TIMEOUT, what: str = "progress"
) -> dict[str, Any]:
    """The first /import/progress answer that satisfies `predicate`; the job must not end in between."""

    def check() -> dict[str, Any] | None:
        progress = app.progress()
        if predicate(progress):
            return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        return None

    return wait_until(check, timeout, app, what)


@contextlib.contextmanager
def held(server: EmbeddedMongo) -> Iterator[None]:
    """The database server stopped (SIGSTOP) for the block: the import cannot move while a test looks at it."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


def step_until(
    app: App,
    server: EmbeddedMongo,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    then: Callable[[], None] | None = None,
    timeout: float = IMPORT_TIMEOUT,
) -> dict[str, Any]:
    """The owner's /import/progress (served from its memory) looked at with the database held still, and the
    database let run for STEP_SECONDS between looks: however fast the database, the import stops at each look
    and advances about one slice between two, so the test sees it pass `predicate` while still RUNNING. `then`
    runs while the database is still held (kill -9 the app, say), then the database goes on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with held(server):
            progress = app.progress()
            if predicate(progress):
                if then is not None:
                    then()
                return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        time.sleep(STEP_SECONDS)
    app.fail(f"{what} not reached within {timeout:.0f}s")
    raise AssertionError(what)


def wait_completed(app: App, timeout: float = IMPORT_TIMEOUT) -> dict[str, Any]:
    return wait_progress(app, lambda p: p["status"] == "COMPLETED", timeout, "COMPLETED")


def fraction(progress: dict[str, Any]) -> float:
    return progress["bytesRead"] / progress["fileSize"] if progress["fileSize"] else 0.0


# ---- results --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """What an import left behind: final counters, every customer id, every rejected row."""

    counters: dict[str, int]
    customer_ids: list[str]
    rejected: list[tuple[int, str, str]]  # (line, reason, text)


def rejected_rows(app: App, job_id: str) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    after = 0
    while True:
        response = app.get("/import/errors", jobId=job_id, limit=1000, afterLine=after)
        assert response.status_code == 200, response.text
        page = response.json()
        rows += [(item["line"], item["reason"], item["text"]) for item in page["items"]]
        if page["nextAfterLine"] is None:
            return rows
        after = page["nextAfterLine"]


def result_of(app: App, sync_mongo: MongoClient, job_id: str) -> Result:
    progress = app.progress()
    assert progress["jobId"] == job_id and progress["status"] == "COMPLETED", progress
    assert progress["bytesRead"] == progress["fileSize"] and progress["percent"] == 100, progress
    db = sync_mongo[app.env["MONGODB_DB"]]
    ids = sorted(doc["_id"] for doc in db.customers.find({}, {"_id": 1}))
    assert db.customers.count_documents({}) == len(ids)
    return Result({k: progress[k] for k in COUNTERS}, ids, rejected_rows(app, job_id))


# ---- fixtures -------------------------------------------------------------------------------------------


def app_env(server: EmbeddedMongo, folder: Path, database: str) -> dict[str, str]:
    (folder / "imports").mkdir(parents=True, exist_ok=True)
    return {
        "MONGODB_URI": server.uri,
        "MONGODB_DB": database,
        "IMPORT_DIR": str(folder / "imports"),
        "DATA_DIR": str(folder / "data"),
        "IMPORT_LEASE_SECONDS": str(LEASE_SECONDS),
        "IMPORT_CHECKPOINT_SECONDS": "0.2",
        "IMPORT_BLOCK_BYTES": "65536",
        # Two blocks in flight: they still finish out of order, but the watermark moves by at most two blocks
        # (about 6 % of the hostile file) at once, so a test stepping the database (step_until) sees each point.
        "IMPORT_BLOCKS_IN_FLIGHT": "2",
        "IMPORT_RETRY_SECONDS": "60",
        "LOG_LEVEL": "INFO",
    }


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


@dataclass
class Deployment:
    """One test's database, import folder and app launcher."""

    apps: Apps
    database: str
    file_name: str
    file: Path
    server: EmbeddedMongo

    def start(self, **kwargs: Any) -> App:
        return self.apps.start(**kwargs)


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


@dataclass
class OwnServer:
    server: EmbeddedMongo
    deployment: Deployment


@pytest.fixture
def own_server(hostile: Hostile, tmp_path: Path) -> Iterator[OwnServer]:
    """A SecantusDB server for this test alone (it may be stopped and started again on its port), and a deployment."""
    server = EmbeddedMongo(tmp_path / "secantus" / "db", free_port())
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


def terminate(app: App, timeout: float) -> tuple[int, float]:
    """SIGTERM; (exit code, seconds it took)."""
    began = time.monotonic()
    app.process.send_signal(signal.SIGTERM)
    try:
        code = app.process.wait(timeout)
    except subprocess.TimeoutExpired:
        app.fail(f"app did not exit within {timeout:.0f}s of SIGTERM")
        raise
    return code, time.monotonic() - began
