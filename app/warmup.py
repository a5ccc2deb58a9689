"""The customers collection warmed by one query, alone, after start and after this app's own index drops.

SecantusDB's Rust server learns which fields of a multikey index hold arrays by reading its whole collection
into memory: on the first query after it starts, and again after any `dropIndexes` or `drop` on the server.
Queries that arrive meanwhile each read it too, so a burst of requests after an index drop is a burst of whole
collection reads (docs/secantus-rs-differences.md, 9). This app drops indexes at start (migrations) and, on
that server only, at each import's start (differences 1). After either, one query runs in the background and
requests wait for it (inside their deadline: then 503), as do the import's writes (whose re-sync and duplicate
checks read customers). On MongoDB the query is one point read by `_id`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pymongo
from pymongo.errors import PyMongoError

from app.admission import detached
from app.errors import Unavailable

log = logging.getLogger(__name__)
PROBE_SECONDS = 120.0  # the warm-up query's own deadline: past it, requests go ahead (the server finishes it)


class Warmup:
    def __init__(self, probe: Callable[[], Awaitable[object]], *, clock: Callable[[], float] = time.monotonic):
        self.probe = probe
        self.clock = clock
        self._warm = asyncio.Event()
        self._warm.set()
        self._again = False
        self._changes = 0  # index drops under way: no probe before their end warms anything
        self._task: asyncio.Task[None] | None = None
        self.runs = 0  # probes run
        self.waiting = 0  # callers waiting for it now (requests, the import's writes)
        self.seconds = 0.0  # how long the last one took

    @property
    def warm(self) -> bool:
        return self._warm.is_set()

    @contextlib.asynccontextmanager
    async def changing(self) -> AsyncIterator[None]:
        """Around an index drop: requests wait from before it until the probe after it has run."""
        self._changes += 1
        self._warm.clear()
        try:
            yield
        finally:
            self._changes -= 1
            self.start()

    def start(self) -> None:
        """Run the probe (again, if one is running: it may have begun before the change)."""
        self._warm.clear()
        self._again = True
        if self._task is None or self._task.done():
            self._task = detached(self._run(), name="warmup")  # no request's deadline goes with it

    async def _run(self) -> None:
        try:
            while self._again:
                self._again = False
                began = self.clock()
                try:
                    with pymongo.timeout(PROBE_SECONDS):
                        await self.probe()
                except PyMongoError as exc:  # requests go ahead and meet the database themselves
                    log.warning("warm-up query failed: %s", exc)
                self.runs += 1
                self.seconds = self.clock() - began
                log.info("customers warmed up in %.2f s", self.seconds)
        finally:
            if not self._changes:  # else a probe that ended during a drop: the one after it sets warm
                self._warm.set()

    async def ready(self, within: float | None) -> None:
        """Return once warm, or raise Unavailable (503, Retry-After) when `within` seconds pass first."""
        if self._warm.is_set():
            return
        self.waiting += 1
        try:
            async with asyncio.timeout(within):
                await self._warm.wait()
        except TimeoutError:
            raise Unavailable("the database is warming up after an index change; retry", retry_after=1) from None
        finally:
            self.waiting -= 1

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._warm.set()  # nobody is left waiting on a closed app, even with a drop under way
