"""Waiting and gating: a database write the test lets through batch by batch, and waits that end on a state change."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import pytest

from app.imports.model import Batch, Written

POLL = 0.005  # how often a waiter looks again: a wait ends on a state change, never on a deadline


class Gate:
    """The job's real sink behind a gate the test opens batch by batch: a database write as slow as the test wants,
    driven by events, never by a clock. The app may run on another event loop (AsyncTestClient runs it in its own
    thread), so the state is guarded by a thread lock and waiters look at it again every POLL seconds."""

    def __init__(self, sink: object):
        self.sink = sink
        self._lock = threading.Lock()
        self.permits = 0
        self.always_open = False
        self.waiting = 0  # writes held at the gate now
        self.written = 0  # writes that went through to the database

    async def write(self, batch: Batch) -> Written:
        with self._lock:
            self.waiting += 1
        try:
            await until(self._take)
        finally:
            with self._lock:
                self.waiting -= 1
        written = await self.sink.write(batch)  # type: ignore[attr-defined]
        with self._lock:
            self.written += 1
        return written

    def _take(self) -> bool:
        with self._lock:
            if self.always_open:
                return True
            if self.permits > 0:
                self.permits -= 1
                return True
            return False

    def open(self, batches: int = 1) -> None:
        with self._lock:
            self.permits += batches

    def open_all(self) -> None:
        with self._lock:
            self.always_open = True

    async def until(self, condition: Callable[[], bool]) -> None:
        await until(condition)


def gate_sinks(services: Any, monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    """Every job the app (`app.state.services`) starts from now on writes through a closed Gate, appended to the
    returned list in start order."""
    imports = services.imports
    real = imports.make_sink
    made: list[Gate] = []

    def make(state: Any) -> Gate:
        made.append(Gate(real(state)))
        return made[-1]

    monkeypatch.setattr(imports, "make_sink", make)
    return made


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition` holds (the suite's timeout bounds a hang)."""
    while not condition():  # noqa: ASYNC110 (set from another thread's loop: an asyncio.Event cannot be)
        await asyncio.sleep(POLL)


class Failing(Protocol):
    def fail(self, message: str) -> None: ...


def wait_until(condition: Callable[[], Any], timeout: float, owner: Failing | None = None, what: str = "") -> Any:
    """Poll `condition` every 50 ms until it returns something truthy, and return that; at the deadline (a hang
    turned into a failure, never a speed requirement) fail, with the log of `owner` (an app) when given."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            message = f"{what or 'condition'} not met within {timeout:.0f}s"
            if owner is not None:
                owner.fail(message)
            pytest.fail(message)
        time.sleep(0.05)
