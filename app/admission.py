"""Admission: each request's class of work, a bounded number of each in flight, and a deadline on its database work.

A route handler names its class in `opt={"work": ...}`: a `Work`, or a function of the query string (a list
filtered by `email=` is one index lookup, the same list unfiltered reads a range). A request waits at most
`wait` seconds for a slot of its class, else it is shed with 503 and Retry-After before it touches the
database; the classes never lend each other slots, so a burst of lists cannot take the slots of point reads.
Every request except a stream runs under `pymongo.timeout(deadline)`: each database operation it makes carries
what is left of the deadline as `maxTimeMS` (the server stops the query) and is abandoned by the client when
it runs out. A request whose client disconnects is cancelled, and its database work with it. Background work
(an import) starts in a context of its own (`detached`), so it never inherits a request's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import enum
import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import msgspec
import pymongo
from litestar.enums import ScopeType
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from app.disconnect import CancelOnDisconnect
from app.errors import Unavailable, timed_out

T = TypeVar("T")
RETRY_AFTER = 1  # seconds a shed client is asked to wait: slots turn over within a deadline
BACKOFF_MAX = 30.0  # seconds: the most a run of missed deadlines adds to a budgeted class's time to refill


class Work(enum.StrEnum):
    CHEAP = "cheap"  # one document by key: a point read, `email=`, a write
    EXPENSIVE = "expensive"  # a range: lists, counts, history pages
    EXPORT = "export"  # a long stream of documents: bounded by its exporter (EXPORT_MAX_CONCURRENT), no deadline
    STREAM = "stream"  # a server-sent event stream from memory: bounded by its broadcaster, no deadline


UNTIMED = frozenset({Work.EXPORT, Work.STREAM})
Classify = Callable[[Scope], Work]
Clock = Callable[[], float]


class Problem(msgspec.Struct):
    """An RFC 9457 problem, as every error of this API is (for the OpenAPI document)."""

    type: str
    status: int
    title: str
    detail: str


SHED = ResponseSpec(
    Problem,
    generate_examples=False,
    media_type="application/problem+json",
    description="Not now: no slot of this request's class freed in time, the class used its share of database "
    "time, the instance holds MAX_REQUESTS_IN_FLIGHT requests, or the database work passed its deadline "
    "(REQUEST_TIMEOUT_SECONDS). Retry after `Retry-After` seconds.",
)


def admitted(work: Work | Classify, *, cancellable: bool = True, **opt: Any) -> dict[str, Any]:
    """A route handler's keywords for its class of work: the opt admission reads, and its 503 in the OpenAPI.
    `cancellable=False` for a handler that must not stop half way when its client leaves (one that starts a job:
    a claim without its launch; one that reads files: a file opened as the cancel lands is never closed)."""
    return {"opt": {**opt, "work": work, "cancellable": cancellable}, "responses": {503: SHED}}


def work_of(scope: Scope) -> Work | None:
    """The class a route handler declares for this request (None: no slot, only the deadline)."""
    work: Work | Classify | None = scope["route_handler"].opt.get("work")
    return work(scope) if callable(work) else work


def cheap_when(parameter: str) -> Classify:
    """A list whose cost is one index lookup when `parameter` is given, else a range."""
    key = parameter.encode() + b"="

    def classify(scope: Scope) -> Work:
        query: bytes = scope.get("query_string", b"")
        return Work.CHEAP if any(pair.startswith(key) for pair in query.split(b"&")) else Work.EXPENSIVE

    return classify


@dataclasses.dataclass
class Held:
    """A request's slot. `answered` is False when its response was an error: only a request that was answered
    (no database deadline missed, no 4xx or 5xx) shows that the class's queries finish again."""

    answered: bool = True


class Slots:
    """One class of work: at most `limit` requests in flight and, with a `share`, a budget of database time: the
    class's requests may keep on average `share` operations running (time they held a slot, refilled at `share`
    seconds per second, up to `burst`), so a class of slow queries cannot take the whole database from the work
    outside admission (an import) however few slots it has. A request of a budgeted class that runs out of its
    deadline pauses the class, twice as long after each such request in a row (BACKOFF_MAX at most added), and
    until one finishes in time, one request at a time tries: queries that cannot finish now are tried again now
    and then, one at a time, not at the import's expense. The counters are what /metrics reports."""

    def __init__(
        self, work: Work, limit: int, *, share: float | None = None, burst: float = 1.0, clock: Clock = time.monotonic
    ):
        self.work, self.limit, self.share, self.burst, self.clock = work, limit, share, burst, clock
        self.free = asyncio.Semaphore(limit)
        self.tokens, self.refilled = burst, clock()
        self.in_flight = self.admitted = self.shed = self.deadline_exceeded = 0
        self.missed_in_a_row = 0

    @contextlib.asynccontextmanager
    async def hold(self, wait: float) -> AsyncIterator[Held]:
        """A slot for the block, waiting at most `wait` in all for the budget and a slot; else Unavailable."""
        slept = await self._spend(wait)
        try:
            async with asyncio.timeout(wait - slept):
                await self.free.acquire()
        except TimeoutError:
            raise self._shed(f"are all in flight ({self.limit})", RETRY_AFTER) from None
        if self.trying and self.in_flight:  # (no await since the acquire: one request at a time gets here)
            self.free.release()
            raise self._shed("ran out of their deadline: one request at a time tries again", RETRY_AFTER)
        self.in_flight += 1
        self.admitted += 1
        started, missed, held = self.clock(), self.deadline_exceeded, Held()
        try:
            yield held
        except BaseException:
            held.answered = False  # refused (a warm-up 503) or failed on its way out: not answered
            raise
        finally:
            self.in_flight -= 1
            self.free.release()
            if self.share is not None:
                self._refill()
                self.tokens -= self.clock() - started
            if self.deadline_exceeded == missed and held.answered:
                self.missed_in_a_row = 0

    @property
    def trying(self) -> bool:
        """After a miss, until a request finishes in time, a budgeted class lets one request at a time try."""
        return self.share is not None and self.missed_in_a_row > 0

    def missed(self) -> None:
        """A request of this class ran out of its deadline: a budgeted class loses what it had banked and, after
        each further one in a row, owes twice the time again (burst / share, then 3x, 7x...; up to BACKOFF_MAX)."""
        self.deadline_exceeded += 1
        self.missed_in_a_row += 1
        if self.share is not None:
            pause = min(BACKOFF_MAX, self.burst / self.share * (2 ** (self.missed_in_a_row - 1) - 1))
            self._refill()
            self.tokens = min(self.tokens, -pause * self.share)  # not on top of the pause a miss beside it owes

    async def _spend(self, wait: float) -> float:
        """Wait until the budget is positive again (how long), or shed when that is further than `wait`."""
        if self.share is None:
            return 0.0
        self._refill()
        if self.tokens > 0:
            return 0.0
        needed = -self.tokens / self.share
        if needed > wait:
            raise self._shed("used their share of the database (EXPENSIVE_SHARE)", math.ceil(needed))
        await asyncio.sleep(needed)
        return needed

    def _refill(self) -> None:
        now = self.clock()
        assert self.share is not None
        self.tokens = min(self.burst, self.tokens + (now - self.refilled) * self.share)
        self.refilled = now

    def _shed(self, why: str, retry_after: int) -> Unavailable:
        self.shed += 1
        return Unavailable(f"the {self.work} requests of this instance {why}; retry", retry_after=retry_after)


class Admission:
    def __init__(
        self,
        classes: list[Slots],
        *,
        wait: float,
        deadline: float,
        max_requests: int,
        ready: Callable[[float | None], Awaitable[None]] | None = None,
        clock: Clock = time.monotonic,
    ):
        self.classes = {slots.work: slots for slots in classes}
        self.ready = ready  # waits, up to a deadline, until the database is warm (app/warmup.py)
        self.clock = clock
        self.wait = wait
        self.deadline = deadline
        self.max_requests = max_requests
        self.requests = 0  # requests in flight, every class and none (streams aside)
        self.refused = 0  # requests refused because `max_requests` were in flight

    @contextlib.asynccontextmanager
    async def admit(self, work: Work | None) -> AsyncIterator[Held | None]:
        """Hold a slot of `work` (and a place among all requests) for the block, or raise Unavailable."""
        counted = work is not Work.STREAM
        if counted and self.requests >= self.max_requests:
            self.refused += 1
            raise Unavailable(f"this instance already holds {self.max_requests} requests; retry", retry_after=1)
        self.requests += counted
        try:
            slots = self.classes.get(work) if work is not None else None
            async with slots.hold(self.wait) if slots is not None else contextlib.nullcontext() as held:
                yield held
        finally:
            self.requests -= counted

    def deadline_of(self, work: Work | None) -> float | None:
        return None if work in UNTIMED else self.deadline

    async def settled(self, work: Work | None) -> float | None:
        """Wait, inside the request's deadline, for the database to be warm, if the request will use it; what is
        left of the deadline (None: the request has none)."""
        deadline = self.deadline_of(work)
        if self.ready is None or work is None or work is Work.STREAM:
            return deadline
        began = self.clock()
        try:
            await self.ready(self.deadline if deadline is None else deadline)  # an export: as long as a request
            left = None if deadline is None else deadline - (self.clock() - began)
            if left is not None and left <= 0:  # (pymongo.timeout(0) would mean no deadline at all)
                raise Unavailable("the database is warming up after an index change; retry", retry_after=RETRY_AFTER)
        except Unavailable:
            if (slots := self.classes.get(work)) is not None:
                slots.shed += 1  # a 503 of the class, before any database work: /metrics counts it
            raise
        return left

    def count_deadline(self, exc: BaseException, scope: Scope) -> None:
        """after_exception hook: a database operation that ran out of its request's deadline (not a database that
        cannot be reached: that spent no database time, and must not pause the class past the outage)."""
        slots = self.classes.get(work_of(scope)) if "route_handler" in scope else None  # type: ignore[arg-type]
        if slots is not None and isinstance(exc, pymongo.errors.PyMongoError) and timed_out(exc):
            slots.missed()


def detached(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """A task that outlives the request starting it, in a context of its own: no request deadline goes with it."""
    return asyncio.create_task(coro, name=name, context=contextvars.Context())


class AdmissionMiddleware:
    """ASGI middleware: admission, then the handler under the deadline, cancelled if its client leaves."""

    def __init__(self, app: ASGIApp, admission: Admission):
        self.app = app
        self.admission = admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        work = work_of(scope)
        async with self.admission.admit(work) as held:
            if held is not None:
                send = _noting_errors(send, held)
            handler = functools.partial(self._settled, work)
            if (
                work is None
                or self.admission.deadline_of(work) is None
                or not scope["route_handler"].opt.get("cancellable")
            ):
                await handler(scope, receive, send)  # nothing worth stopping, or not safe to stop
            else:  # its wait for the warm-up too
                await CancelOnDisconnect(scope, receive).serve(handler, send)

    async def _settled(self, work: Work | None, scope: Scope, receive: Receive, send: Send) -> None:
        """The handler, once the database is warm, under what is left of the deadline."""
        deadline = await self.admission.settled(work)  # the warm-up's wait comes out of the deadline
        if deadline is None:
            await self.app(scope, receive, send)
            return
        with pymongo.timeout(deadline):
            await self.app(scope, receive, send)


def _noting_errors(send: Send, held: Held) -> Send:
    """`send`, marking the slot's request not answered when its response is an error (a 400 that never reached
    the database does not end a run of missed deadlines)."""

    async def noting(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            held.answered = False
        await send(message)

    return noting
