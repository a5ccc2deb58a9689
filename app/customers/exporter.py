"""Exports: one cursor per export, read one batch at a time as the reader takes the bytes, and the bound on the
exports running at once on this instance (EXPORT_MAX_CONCURRENT: `Exporter.admit`, the one place it lives).

Backpressure, not buffering: the body is an async generator, and the server asks it for the next piece only
once the previous one is written out (uvicorn waits while its transport's buffer is full), so an export holds
one batch of documents and one encoded piece, whatever the client's speed. `Export.close` is idempotent and
called by whichever comes first: the end of the body, a failure inside it, or (from the response's background
task) the end of a response the client left.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from pymongo.asynchronous.cursor import AsyncCursor

from app.customers.export import (
    DEFAULT_FIELDS,
    GZIP_MEDIA_TYPE,
    MEDIA_TYPES,
    CsvRows,
    Format,
    Gzip,
    NdjsonRows,
    file_name,
    rows_for,
)
from app.customers.repository import CustomerRepository, stored_field
from app.errors import Unavailable

log = logging.getLogger(__name__)
RETRY_AFTER = 10  # seconds: exports are long, so a refused one comes back later rather than at once


class ExportRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What to export: the list's filters, the format, the columns, and how the body is compressed."""

    fmt: Format = Format.CSV
    fields: tuple[str, ...] = DEFAULT_FIELDS
    email: str | None = None
    country: str | None = None
    q: str | None = None
    gzip_file: bool = False  # compress=gzip: the body is a .gz file
    gzip_encoding: bool = False  # Accept-Encoding: gzip: the body is sent compressed (Content-Encoding)

    def headers(self, today: dt.date) -> dict[str, str]:
        """Content-Type, Content-Disposition (a file name with today's date), Content-Encoding when compressed."""
        name = file_name(self.fmt, gzip_file=self.gzip_file, today=today)
        headers = {
            "Content-Type": GZIP_MEDIA_TYPE if self.gzip_file else MEDIA_TYPES[self.fmt],
            "Content-Disposition": f'attachment; filename="{name}"',
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
        }
        if self.gzip_encoding and not self.gzip_file:
            headers["Content-Encoding"] = "gzip"
        return headers


class Export:
    """One export running: its cursor, encoder and counters (`rows` read from the cursor, `sent` bytes handed out)."""

    def __init__(self, cursor: AsyncCursor[dict[str, Any]], rows: CsvRows | NdjsonRows, *, batch_size: int, gzip: bool):
        self.cursor, self.encoder, self.batch_size = cursor, rows, batch_size
        self.zip = Gzip() if gzip else None
        self.first: list[dict[str, Any]] = []
        self.rows = self.sent = 0
        self.complete = self.closed = False
        self.reading: asyncio.Future[list[dict[str, Any]]] | None = None  # the getMore in flight, or the last one
        self.ended: asyncio.Future[None] | None = None  # the close: a cursor killed after the read in flight
        self.on_close: list[Callable[[Export], None]] = []  # told once, when the export ends

    async def start(self) -> None:
        """Read the first batch before the response starts: a database that does not answer is then a 503, not a
        body cut short."""
        self.first = await self._read()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, one piece per batch (the header with the first); a failure raises, so the response is cut
        off (no final chunk, no gzip trailer) and never looks complete."""
        try:
            docs, head = self.first, self.encoder.header()
            self.first = []
            while docs or head:
                yield await self._piece(head + self.encoder.rows(docs))
                head, docs = b"", await self._read()
            if self.zip is not None:
                yield self._count(self.zip.end())
            self.complete = True
        except Exception as exc:
            log.warning("export ended after %d rows: %s", self.rows, exc)
            raise
        finally:
            await self.close()

    async def _read(self) -> list[dict[str, Any]]:
        # Shielded, as the close is: a client that leaves cancels the body's anyio scope, which cancels every await
        # in it again. A getMore cancelled so makes PyMongo close the cursor from within the scope: it marks the
        # cursor dead, then its killCursors is cancelled too, and the server's cursor stays open.
        self.reading = asyncio.ensure_future(self.cursor.to_list(self.batch_size))
        docs = await asyncio.shield(self.reading)
        self.rows += len(docs)
        return docs

    async def _piece(self, data: bytes) -> bytes:
        if self.zip is not None:
            data = await asyncio.to_thread(self.zip.piece, data)  # zlib lets the event loop run meanwhile
        return self._count(data)

    def _count(self, data: bytes) -> bytes:
        self.sent += len(data)
        return data

    async def close(self) -> None:
        """End the cursor (the server's too) and give the export's place back; once."""
        if self.closed:
            return
        self.closed = True
        for callback in self.on_close:
            callback(self)
        self.ended = asyncio.ensure_future(self._end())
        await asyncio.shield(self.ended)

    async def _end(self) -> None:
        """Kill the cursor, once a read that a cancel left running has ended (a cursor runs one operation at once)."""
        if self.reading is not None:
            await asyncio.wait([self.reading])
            if not self.reading.cancelled():
                self.reading.exception()  # retrieved: a read that failed after the body left has no one to tell
        await self.cursor.close()


class Exporter:
    """Opens exports, at most `max_concurrent` at once (the rest: Unavailable, 503 with Retry-After)."""

    def __init__(self, repository: CustomerRepository, *, max_concurrent: int, batch_size: int):
        self.repository, self.max_concurrent, self.batch_size = repository, max_concurrent, batch_size
        # Weak: an export that a response dropped without closing it (it never started) frees its place when
        # it is collected, and PyMongo kills its cursor then.
        self.running: weakref.WeakSet[Export] = weakref.WeakSet()

    def admit(self) -> None:
        """EXPORT_MAX_CONCURRENT: the exports streaming on this instance, each holding one cursor and one batch."""
        if len(self.running) >= self.max_concurrent:
            raise Unavailable(
                f"{self.max_concurrent} exports are running (EXPORT_MAX_CONCURRENT); retry later",
                retry_after=RETRY_AFTER,
            )

    async def open(self, request: ExportRequest) -> Export:
        """An export of `request` with its first batch read; its place is taken now (checked and taken with no
        await between, so exports asked for at once cannot overshoot)."""
        self.admit()
        cursor = self.repository.export_cursor(
            fields=request.fields,
            batch_size=self.batch_size,
            email=request.email,
            country=request.country,
            q=request.q,
        )
        rows = rows_for(request.fmt, request.fields, stored_field)
        export = Export(cursor, rows, batch_size=self.batch_size, gzip=request.gzip_file or request.gzip_encoding)
        self.running.add(export)
        export.on_close.append(self.running.discard)
        try:
            await export.start()
        except BaseException:
            await export.close()
            raise
        return export
