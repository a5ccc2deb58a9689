"""The warm-up after an index drop (app/warmup.py), with a probe the test holds open: no database, no sleeps."""

from __future__ import annotations

import asyncio
import logging

import pytest
from pymongo.errors import ServerSelectionTimeoutError

from app.errors import Unavailable
from app.warmup import Warmup
from tests.helpers.gates import until


class Probe:
    """A warm-up query that runs until the test lets it finish."""

    def __init__(self) -> None:
        self.started = 0
        self.finish = asyncio.Event()
        self.running = asyncio.Event()
        self.fail = False
        self.again = asyncio.Event()  # set when it starts a second time

    async def __call__(self) -> None:
        self.started += 1
        if self.started == 2:
            self.again.set()
        self.running.set()
        await self.finish.wait()
        self.finish.clear()
        self.running.clear()
        if self.fail:
            raise ServerSelectionTimeoutError("no server")


async def test_warm_until_a_change_then_requests_wait_for_the_probe_and_are_let_through_after_it() -> None:
    probe = Probe()
    warmup = Warmup(probe)
    await warmup.ready(0)  # warm from the start: nothing to wait for
    async with warmup.changing():
        assert not warmup.warm  # from before the drop: a request then would read the whole collection too
        assert probe.started == 0  # the probe runs after the drop, not during it
    await probe.running.wait()
    with pytest.raises(Unavailable) as shed:
        await warmup.ready(0)
    assert shed.value.status == 503 and shed.value.headers["Retry-After"] == "1"
    waiting = asyncio.create_task(warmup.ready(None))
    await asyncio.sleep(0)
    assert not waiting.done()
    probe.finish.set()
    await waiting
    assert warmup.warm and (warmup.runs, probe.started) == (1, 1)
    await warmup.close()


async def test_a_change_while_the_probe_runs_runs_it_again_before_anyone_goes_ahead() -> None:
    probe = Probe()
    warmup = Warmup(probe)
    warmup.start()
    await probe.running.wait()
    warmup.start()  # a second drop: the running probe may have read the collection before it
    probe.finish.set()
    await probe.again.wait()
    assert not warmup.warm
    probe.finish.set()
    await warmup.ready(None)
    assert (warmup.runs, probe.started) == (2, 2)
    await warmup.close()


async def test_a_failed_probe_lets_requests_go_ahead_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe()
    probe.fail = True
    warmup = Warmup(probe)
    warmup.start()
    await probe.running.wait()
    with caplog.at_level(logging.WARNING, logger="app.warmup"):
        probe.finish.set()
        await warmup.ready(None)
    assert warmup.warm and warmup.runs == 1
    assert "warm-up query failed" in caplog.text


async def test_closing_stops_a_probe_in_flight() -> None:
    probe = Probe()
    warmup = Warmup(probe)
    warmup.start()
    await probe.running.wait()
    await warmup.close()
    assert warmup.warm  # nobody is left waiting on a closed app


async def test_a_probe_that_ends_during_a_drop_leaves_requests_waiting_for_the_probe_after_it() -> None:
    probe = Probe()
    warmup = Warmup(probe)
    warmup.start()  # the start's own probe, still reading when an import starts and drops its index
    await probe.running.wait()
    async with warmup.changing():
        probe.finish.set()  # it read the collection before the drop: it warms nothing after it
        await until(lambda: warmup.runs == 1)
        assert not warmup.warm  # nor may requests go ahead before the drop is done
    assert not warmup.warm  # the probe after the drop is running now
    await probe.again.wait()
    probe.finish.set()
    await warmup.ready(None)
    assert (warmup.runs, probe.started) == (2, 2)
    await warmup.close()
