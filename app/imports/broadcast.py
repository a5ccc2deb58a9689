"""Live progress for any number of clients: one poll of the job snapshot per app instance, fanned out.

Every `interval` seconds the broadcaster takes ImportService.snapshot() (from memory when this instance runs
the job, else one import_state read shared by every client), encodes it once, and when something a client
can see changed hands it to each subscriber. A subscriber's queue is bounded: a slow reader loses the oldest
progress updates (each is a full snapshot, so the newest says everything), never the latest terminal one, and
never holds up the others. The subscribers are bounded too (`max_subscribers`): one more is refused with
Unavailable before its stream starts. A stream follows one job after another: it ends only when the client
leaves. No Litestar here: the controller turns `Event`s into server-sent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass

import msgspec

from app.errors import Unavailable
from app.imports.job.jobs import JobState
from app.imports.model import Status
from app.imports.schemas import Progress

log = logging.getLogger(__name__)

TERMINAL = {Status.COMPLETED: "done", Status.FAILED: "error", Status.CANCELLED: "cancelled"}


@dataclass(frozen=True, slots=True)
class Update:
    """One published snapshot: its sequence number (the SSE id), its status and its encoded Progress."""

    seq: int
    status: Status
    data: bytes

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Event:
    """One message of a client's stream; `kind` None is a keep-alive comment."""

    kind: str | None
    id: int | None = None
    data: bytes | None = None
    retry: int | None = None
    comment: str | None = None


def visible(state: JobState | None) -> tuple[object, ...]:
    """What a client can see change. Not the clock (elapsed, rate, eta) nor timestamps, whose precision
    differs between the owner's memory and import_state (a finished job read back is not a change)."""
    if state is None:
        return ()
    return (
        state.job_id,
        state.status,
        state.attempts,
        state.error,
        state.bytes_read,
        *state.counts().values(),
    )


class Subscription:
    """A bounded queue of updates for one client. When full it drops the oldest progress update; a terminal one
    (done, error, cancelled) only when nothing else is queued (a reader asleep through `size` job ends), and then
    the oldest: the latest terminal update always stays, so a slow reader learns how the last job ended. That
    takes two places (the latest terminal update and the one arriving): a queue of one lost the end of a job to
    the next job's first progress."""

    def __init__(self, size: int):
        self.size = max(2, size)
        self.items: deque[Update] = deque()
        self.dropped = 0
        self.closed = False
        self._wake = asyncio.Event()

    def offer(self, update: Update) -> None:
        """Queue without blocking."""
        if len(self.items) >= self.size:
            victim = next((item for item in self.items if not item.terminal), self.items[0])
            self.items.remove(victim)
            self.dropped += 1
        self.items.append(update)
        self._wake.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()

    async def next(self, seconds: float) -> Update | None:
        """The next update, or None after `seconds` without one (or once closed and drained)."""
        if not self.items and not self.closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
        return self.items.popleft() if self.items else None


class Broadcaster:
    def __init__(
        self,
        source: Callable[[], Awaitable[JobState | None]],
        *,
        interval: float = 0.3,
        keepalive: float = 15.0,
        queue_size: int = 16,
        retry_ms: int = 3000,
        max_subscribers: int = 100,
    ):
        self.source = source
        self.interval, self.keepalive, self.queue_size, self.retry_ms = interval, keepalive, queue_size, retry_ms
        self.max_subscribers = max_subscribers
        # Weak: a stream reserved by events() whose generator never ran (the client left before the response
        # started) frees its place when the generator is collected; a running one holds its subscription.
        self.subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._current: Update | None = None
        self._key: tuple[object, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def current(self) -> Update:
        if self._current is None:
            raise RuntimeError("Broadcaster.start() has not run")
        return self._current

    async def refresh(self) -> None:
        """Poll now, joining a poll already under way: polls never overlap (an older snapshot must not be
        published after a newer one), and many clients connecting at once cost one read."""
        if self._polling is None or self._polling.done():
            self._polling = asyncio.create_task(self.poll(), name="progress-poll")
            # its waiters may all be gone (clients disconnect): mark a failure retrieved, they log it
            self._polling.add_done_callback(lambda task: task.cancelled() or task.exception())
        await asyncio.shield(self._polling)

    async def poll(self) -> None:
        """Take one snapshot; publish it if something visible changed, else only refresh the current one."""
        state = await self.source()
        data = msgspec.json.encode(Progress.of(state))
        status = Status.IDLE if state is None else state.status
        key = visible(state)
        if key == self._key and self._current is not None:
            self._current = Update(self._current.seq, status, data)  # fresher elapsed/rate for new clients
            return
        self._key = key
        self._current = Update((self._current.seq + 1) if self._current else 1, status, data)
        for subscription in self.subscriptions:
            subscription.offer(self._current)

    async def _run(self) -> None:
        failing = False
        while not self._closing:  # not only cancel(): see close()
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:  # the database may be down: keep the last snapshot, try again
                if not failing:
                    log.warning("progress poll failed: %s", exc)
                failing = True
            else:
                failing = False

    def reserve(self) -> Subscription:
        """A place for one more client, or Unavailable when `max_subscribers` hold one (checked and taken in one
        step: clients connecting at once cannot overshoot)."""
        if len(self.subscriptions) >= self.max_subscribers:
            raise Unavailable(
                f"the progress stream already has its {self.max_subscribers} clients "
                "(PROGRESS_STREAM_MAX_CLIENTS); retry later, or poll GET /import/progress",
                retry_after=max(1, math.ceil(self.retry_ms / 1000)),  # the stream's own `retry`
            )
        subscription = Subscription(self.queue_size)
        if self._closing:
            subscription.close()  # shutting down: the stream sends its snapshot and ends
        self.subscriptions.add(subscription)
        return subscription

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = self.reserve()
        try:
            yield subscription
        finally:
            self.subscriptions.discard(subscription)

    def events(self) -> AsyncIterator[Event]:
        """One client's stream: a snapshot, then every job as it runs (progress) and ends (done, error,
        cancelled), the next one (new or resumed) included, until the client leaves or the app stops.
        Keep-alive comments flow while nothing changes. Its place is taken now, not at the first event, so a
        client over the bound is refused before the response starts."""
        return self._follow(self.reserve())

    async def _follow(self, subscription: Subscription) -> AsyncIterator[Event]:
        try:
            try:
                await self.refresh()  # the snapshot is fresh, not up to `interval` old
            except Exception as exc:
                log.warning("progress poll failed, the stream starts from the last snapshot: %s", exc)
            snapshot = self.current
            yield self._event("snapshot", snapshot)
            while True:
                update = await subscription.next(self.keepalive)
                if update is None:
                    if subscription.closed:
                        return
                    yield Event(None, comment="keep-alive")
                elif update.seq <= snapshot.seq:
                    continue  # published while the stream started: the snapshot already says it
                elif update.terminal:
                    yield self._event(TERMINAL[update.status], update)
                elif update.status == Status.RUNNING:
                    yield self._event("progress", update)
        finally:
            self.subscriptions.discard(subscription)

    def _event(self, kind: str, update: Update) -> Event:
        return Event(kind, id=update.seq, data=update.data, retry=self.retry_ms)

    async def start(self) -> None:
        """Take the first snapshot now (clients always get one), then poll in the background."""
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="progress-broadcaster")

    async def close(self) -> None:
        """Stop polling and end every open stream.

        On Python 3.11 a cancel that lands while PyMongo waits for a server (asyncio.wait_for) can be
        swallowed; the `_closing` flag still ends the loop once that wait is over.
        """
        self._closing = True
        tasks = [task for task in (self._task, self._polling) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for subscription in list(self.subscriptions):
            subscription.close()
