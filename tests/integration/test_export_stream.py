"""The export as a stream, driven over raw ASGI by a client the test controls: a slow reader makes the cursor wait
(the batches read follow the pieces taken), a disconnect closes the cursor and frees the export's place, a
failure midway cuts the response off, and EXPORT_MAX_CONCURRENT refuses one export more with 503. Every wait is
on an event (a piece arriving, the app returning), never on a clock."""

from __future__ import annotations

import asyncio
import gzip
import json
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio.lowlevel
import pytest
from litestar import Litestar
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import OperationFailure

from app.asgi import create_app
from app.customers.document import index_keys
from app.customers.exporter import Export, Exporter, ExportRequest
from app.settings import Settings
from tests.helpers.settings import with_settings

BATCH = 50
CURSOR_NOT_FOUND = 43
CUSTOMERS = 1000


@dataclass
class Reader:
    """An HTTP client over raw ASGI that takes `allowed` body pieces and then stops reading: the app's next send
    waits, as it waits when a real client's socket is full."""

    allowed: int = 1
    start: dict[str, Any] | None = None
    pieces: list[bytes] = field(default_factory=list)
    ended: bool = False  # the final, empty piece (more_body False) arrived
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    more: asyncio.Event = field(default_factory=asyncio.Event)
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    asked: bool = False

    async def receive(self) -> dict[str, Any]:
        if not self.asked:
            self.asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()  # the client leaves, or (as a server tells the app) the response is complete
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        self.pieces.append(message.get("body", b""))
        self.ended = not message.get("more_body", False)
        if self.ended:
            self.gone.set()
        self.arrived.set()
        while len(self.pieces) > self.allowed and not self.ended:
            self.more.clear()
            await self.more.wait()

    def allow(self, pieces: int) -> None:
        self.allowed += pieces
        self.more.set()

    async def next_piece(self, count: int) -> None:
        """Until `count` pieces arrived."""
        while len(self.pieces) < count:
            self.arrived.clear()
            await self.arrived.wait()

    @property
    def status(self) -> int:
        assert self.start is not None
        return int(self.start["status"])

    @property
    def headers(self) -> dict[str, str]:
        assert self.start is not None
        return {name.decode(): value.decode() for name, value in self.start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


def request(query: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/customers/export",
        "raw_path": b"/customers/export",
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"test")],
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
        "state": {},
    }


@pytest.fixture(scope="module")
def database() -> str:
    return f"export_stream_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
async def app(settings: Settings, mongo: AsyncMongoClient, database: str) -> AsyncIterator[Litestar]:
    """Batches of BATCH, one export at a time, CUSTOMERS customers; its lifespan runs on the test's own loop (in a
    task of its own: a lifespan is entered and left in one task)."""
    db = mongo[database]
    docs = []
    for i in range(CUSTOMERS):
        doc = {"_id": f"C{i:05d}", "firstName": f"Ann{i}", "lastName": "Lee", "email": f"a{i}@x.org"}
        docs.append({**doc, **index_keys(doc), "about": "x" * 200})
    await db.customers.insert_many(docs)
    app = create_app(with_settings(settings, mongodb_db=database, export_batch_size=BATCH, export_max_concurrent=1))
    up, down = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with app.lifespan():
            up.set()
            await down.wait()

    task = asyncio.create_task(run())
    await asyncio.wait([task, asyncio.create_task(up.wait())], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        task.result()  # the start-up failed: say why
    yield app
    down.set()
    await task
    await mongo.drop_database(database)


def exporter(app: Litestar) -> Exporter:
    return app.state.services.exports  # type: ignore[no-any-return]


async def started(app: Litestar, reader: Reader, query: str = "") -> tuple[asyncio.Task[None], Export]:
    """An export the reader has its first piece of, and the export's handle."""
    task = asyncio.create_task(app(request(query), reader.receive, reader.send))  # type: ignore[arg-type]
    piece = asyncio.create_task(reader.next_piece(1))
    await asyncio.wait([task, piece], return_when=asyncio.FIRST_COMPLETED)
    if not piece.done():
        piece.cancel()
        task.result()  # the app ended without a body: say why
        pytest.fail(f"the export sent no body: {reader.start}")
    assert reader.status == 200
    (export,) = list(exporter(app).running)
    return task, export


async def round_trips(db: AsyncDatabase, count: int = 5) -> None:
    """Give anything that could read ahead time to do it: several round trips to the same database server."""
    for _ in range(count):
        await db.command("ping")


async def test_a_slow_reader_makes_the_cursor_wait(app: Litestar, mongo: AsyncMongoClient, database: str) -> None:
    reader = Reader(allowed=1)
    task, export = await started(app, reader, "format=ndjson")
    await reader.next_piece(2)
    await round_trips(mongo[database])
    # the reader holds the second piece: one batch being sent, one read; nothing else was read or encoded
    assert len(reader.pieces) == 2 and export.rows == 2 * BATCH
    assert export.sent == len(reader.body)
    for taken in range(2, 6):  # each piece taken lets exactly one more batch be read
        reader.allow(1)
        await reader.next_piece(taken + 1)
        await round_trips(mongo[database])
        assert export.rows == (taken + 1) * BATCH and len(reader.pieces) == taken + 1
    reader.allow(CUSTOMERS)
    await task
    assert reader.ended and export.complete and export.closed
    lines = reader.body.decode().splitlines()
    assert [json.loads(line)["customerId"] for line in lines] == [f"C{i:05d}" for i in range(CUSTOMERS)]
    assert not exporter(app).running


async def test_a_disconnect_closes_the_cursor_and_frees_the_place(
    app: Litestar, mongo: AsyncMongoClient, database: str
) -> None:
    reader = Reader(allowed=1)
    task, export = await started(app, reader)
    await reader.next_piece(2)  # the second piece waits in send: the cursor is open, between two batches
    assert export.cursor.alive
    cursor_id = export.cursor.cursor_id
    reader.gone.set()  # the client leaves while the app waits to send it more
    await task
    assert export.closed and not export.complete and not export.cursor.alive
    with pytest.raises(OperationFailure) as killed:  # the server's cursor is gone too
        await mongo[database].command("getMore", cursor_id, collection="customers")
    assert killed.value.code == CURSOR_NOT_FOUND
    assert export.rows == 2 * BATCH and not reader.ended
    assert not exporter(app).running  # the next export is admitted
    again = Reader(allowed=CUSTOMERS)
    await app(request("fields=customerId"), again.receive, again.send)  # type: ignore[arg-type]
    assert again.status == 200 and again.ended and again.body.count(b"\r\n") == CUSTOMERS + 1


async def test_a_cancel_during_a_read_still_kills_the_cursor(
    app: Litestar, mongo: AsyncMongoClient, database: str
) -> None:
    """A client that leaves makes Litestar cancel the body's anyio scope, and anyio cancels every await inside it
    again, cleanups' too. A getMore cancelled so closes its cursor from within the scope: PyMongo marks the cursor
    dead, then its killCursors is cancelled in turn, and the server's cursor stayed open for good (curl clients
    killed mid-export left 1, 2, 4, 5 open cursors). Here the cancel lands at the body's first suspension: the
    getMore of its second batch."""
    export = await exporter(app).open(ExportRequest())
    cursor_id = export.cursor.cursor_id
    pieces: list[bytes] = []

    async def body() -> None:
        async for piece in export.chunks():
            pieces.append(piece)

    async with anyio.create_task_group() as group:
        group.start_soon(body)
        await anyio.lowlevel.checkpoint()  # the body runs to its first suspension: its second getMore
        group.cancel_scope.cancel()
    assert export.closed and not export.complete and len(pieces) == 1
    assert export.ended is not None
    await export.ended  # the read, then the close, went on shielded from the cancel
    with pytest.raises(OperationFailure) as killed:  # the server's cursor is gone
        await mongo[database].command("getMore", cursor_id, collection="customers")
    assert killed.value.code == CURSOR_NOT_FOUND
    assert not exporter(app).running


async def test_one_export_more_than_the_bound_is_503_with_retry_after(app: Litestar) -> None:
    reader = Reader(allowed=1)
    task, export = await started(app, reader)
    refused = Reader(allowed=10)
    await app(request(), refused.receive, refused.send)  # type: ignore[arg-type]
    assert refused.status == 503 and refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    problem = json.loads(refused.body)
    assert problem["status"] == 503 and "EXPORT_MAX_CONCURRENT" in problem["detail"]
    reader.allow(CUSTOMERS)  # the first one ends: its place is free again
    await task
    assert export.complete and not exporter(app).running
    after = Reader(allowed=CUSTOMERS)
    await app(request("q=ann1"), after.receive, after.send)  # type: ignore[arg-type]
    assert after.status == 200 and after.ended


@pytest.mark.parametrize("query", ["format=ndjson", "format=ndjson&compress=gzip", ""])
async def test_a_failure_midway_cuts_the_response_off(
    app: Litestar, mongo: AsyncMongoClient, database: str, query: str
) -> None:
    """The server's cursor is killed between two pieces: the next read fails, the response gets no final piece
    (the client sees a body cut short, never a complete file), and what was sent ends with a whole line."""
    reader = Reader(allowed=2)
    task, export = await started(app, reader, query)
    await reader.next_piece(3)  # two taken, the third held: the cursor is between batches
    await mongo[database].command("killCursors", "customers", cursors=[export.cursor.cursor_id])
    reader.allow(CUSTOMERS)
    with pytest.raises(Exception):  # noqa: B017 (the app lets the error out: the server then drops the connection)
        await task
    assert not reader.ended and not export.complete and export.closed
    assert not exporter(app).running
    body = reader.body
    if "gzip" in query:
        with pytest.raises((EOFError, zlib.error)):
            gzip.decompress(body)  # no trailer: a gzip reader sees a truncated file
        body = zlib.decompressobj(wbits=31).decompress(body)  # what arrived, decompressed as far as it goes
    if "ndjson" in query:
        assert body.endswith(b"\n")
        assert [json.loads(line) for line in body.splitlines()]  # every line whole
    assert 0 < body.count(b"\n") < CUSTOMERS
