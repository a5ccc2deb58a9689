"""Slots of a class of work and its database-time budget, with a clock the test moves (no database, no sleeps)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from pymongo import _csot
from pymongo.errors import (
    AutoReconnect,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from app.admission import Admission, AdmissionMiddleware, Slots, Work, cheap_when
from app.errors import Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_class_over_its_share_is_shed_until_the_budget_refills_and_says_when() -> None:
    clock = Clock()
    slots = Slots(Work.EXPENSIVE, 4, share=0.5, burst=1.0, clock=clock)
    async with slots.hold(wait=0):
        clock.now += 3.0  # one query that held the database for 3 s: 1 - 3 = 2 s owed
    with pytest.raises(Unavailable) as shed:
        async with slots.hold(wait=0):
            pass
    assert shed.value.headers["Retry-After"] == "4"  # 2 s owed at 0.5 s per second
    clock.now += 3.9
    with pytest.raises(Unavailable):
        async with slots.hold(wait=0):
            pass
    clock.now += 0.2
    async with slots.hold(wait=0):
        pass
    assert (slots.admitted, slots.shed, slots.in_flight) == (2, 2, 0)


async def test_the_budget_never_grows_past_its_burst() -> None:
    clock = Clock()
    slots = Slots(Work.EXPENSIVE, 4, share=1.0, burst=2.0, clock=clock)
    clock.now += 3600  # an idle hour saves no more than the burst
    async with slots.hold(wait=0):
        clock.now += 2.5
    with pytest.raises(Unavailable):
        async with slots.hold(wait=0):
            pass


async def retry_after(slots: Slots) -> int:
    with pytest.raises(Unavailable) as shed:
        async with slots.hold(wait=0):
            pass
    return int(shed.value.headers["Retry-After"])


async def test_requests_that_run_out_of_their_deadline_in_a_row_pause_the_class_twice_as_long_each_time() -> None:
    clock = Clock()
    slots = Slots(Work.EXPENSIVE, 4, share=0.5, burst=2.0, clock=clock)
    waits = []
    for _ in range(5):
        async with slots.hold(wait=0):
            clock.now += 2.0  # the whole deadline, then the after-exception hook:
            slots.missed()
        waits.append(await retry_after(slots))
        clock.now += waits[-1] + 0.01
    assert waits == [4, 8, 16, 32, 34]  # 2 s held at 0.5 s a second, then 4, 12, 28 s more; at most 30 s more
    async with slots.hold(wait=0):
        clock.now += 0.5  # one that finishes in time ends the run of misses
    clock.now += 1.01
    async with slots.hold(wait=0):
        clock.now += 2.0
        slots.missed()
    assert await retry_after(slots) == 4
    assert (slots.deadline_exceeded, slots.missed_in_a_row) == (6, 1)


async def test_requests_that_run_out_of_their_deadline_together_pause_the_class_as_a_run_does() -> None:
    clock = Clock()
    slots = Slots(Work.EXPENSIVE, 2, share=0.5, burst=2.0, clock=clock)
    waits = []
    async with slots.hold(wait=0), slots.hold(wait=0):  # both slots, both out of their deadline
        clock.now += 2.0
        slots.missed()
        slots.missed()
    waits.append(await retry_after(slots))
    for _ in range(2):  # then one at a time (the next test), each out of its deadline too
        clock.now += waits[-1] + 0.01
        async with slots.hold(wait=0):
            clock.now += 2.0
            slots.missed()
        waits.append(await retry_after(slots))
    # 2 x 2 s held at 0.5 s a second (8 s) and the pause of the 2nd miss in a row (4 s); then 2 s held (4 s) and
    # the 3rd's and 4th's pauses (12, 28 s): the run's latest pause, never one per request that missed with it
    assert waits == [12, 16, 32]
    assert slots.missed_in_a_row == 4


async def test_after_a_missed_deadline_one_request_at_a_time_tries_until_one_finishes_in_time() -> None:
    clock = Clock()
    slots = Slots(Work.EXPENSIVE, 2, share=0.5, burst=2.0, clock=clock)
    async with slots.hold(wait=0):
        clock.now += 2.0
        slots.missed()
    clock.now += await retry_after(slots) + 0.01
    async with slots.hold(wait=0):  # the one trying: a second is shed at once, a slot free or not
        with pytest.raises(Unavailable, match="one request at a time") as shed:
            async with slots.hold(wait=0):
                pass
        assert shed.value.headers["Retry-After"] == "1"
        clock.now += 0.5  # and it finishes in time: the run ends
    clock.now += 1.0  # (the budget refills what it held)
    async with slots.hold(wait=0), slots.hold(wait=0):  # both slots again
        assert slots.in_flight == 2
    assert (slots.shed, slots.admitted, slots.free._value) == (2, 4, 2)  # the pause's shed and the trial's


async def test_without_a_share_a_missed_deadline_is_only_counted() -> None:
    slots = Slots(Work.CHEAP, 1)
    async with slots.hold(wait=0):
        slots.missed()
    async with slots.hold(wait=0):
        pass
    assert (slots.deadline_exceeded, slots.admitted, slots.shed) == (1, 2, 0)


async def test_without_a_share_only_the_slots_bound_the_class() -> None:
    clock = Clock()
    slots = Slots(Work.CHEAP, 1, clock=clock)
    async with slots.hold(wait=0):
        clock.now += 3600
        with pytest.raises(Unavailable, match="all in flight"):
            async with slots.hold(wait=0):
                pass
    async with slots.hold(wait=0):
        pass
    assert (slots.admitted, slots.shed) == (2, 1)


@pytest.mark.parametrize(
    ("query", "work"),
    [
        (b"email=a%40b.c", Work.CHEAP),
        (b"limit=5&email=x", Work.CHEAP),
        (b"", Work.EXPENSIVE),
        (b"q=email", Work.EXPENSIVE),
        (b"xemail=a", Work.EXPENSIVE),
        (b"country=FR&limit=50", Work.EXPENSIVE),
    ],
)
def test_a_list_is_cheap_only_when_it_names_an_email(query: bytes, work: Work) -> None:
    scope: Any = {"query_string": query}
    assert cheap_when("email")(scope) is work


class Served:
    """One request (a point read unless `work` says) through the admission middleware, its warm-up taking `waited`
    s of its 2 s deadline."""

    def __init__(self, waited: float, work: Work = Work.CHEAP) -> None:
        clock = Clock()
        self.work = work
        self.waits: list[float | None] = []  # how long it may wait for the warm-up
        self.deadlines: list[float | None] = []  # the deadline its handler ran under

        async def ready(within: float | None) -> None:
            self.waits.append(within)
            clock.now += waited

        async def handler(scope: Any, receive: Any, send: Any) -> None:
            self.deadlines.append(_csot.get_timeout())

        self.admission = Admission(
            [Slots(Work.CHEAP, 1)], wait=0, deadline=2.0, max_requests=1, ready=ready, clock=clock
        )
        self.middleware = AdmissionMiddleware(handler, self.admission)

    async def __call__(self) -> float | None:
        route = SimpleNamespace(opt={"work": self.work, "cancellable": False})
        await self.middleware({"type": "http", "route_handler": route}, None, None)  # type: ignore[arg-type]
        return self.deadlines[0]


async def test_the_wait_for_the_warm_up_comes_out_of_the_request_deadline() -> None:
    assert await Served(0.0)() == 2.0
    assert await Served(1.5)() == 0.5
    served = Served(2.0)  # warm just as its deadline ran out: no second deadline
    with pytest.raises(Unavailable) as shed:
        await served()
    assert shed.value.headers["Retry-After"] == "1"
    assert served.deadlines == []


async def test_a_request_the_warm_up_outlasts_is_counted_shed_by_its_class() -> None:
    served = Served(2.0)
    with pytest.raises(Unavailable):
        await served()
    cheap = served.admission.classes[Work.CHEAP]
    assert (cheap.admitted, cheap.shed, cheap.deadline_exceeded, cheap.in_flight) == (1, 1, 0, 0)


async def test_an_export_waits_for_the_warm_up_no_longer_than_a_request_and_then_runs_without_a_deadline() -> None:
    served = Served(0.5, Work.EXPORT)
    assert await served() is None
    assert served.waits == [2.0]  # not None: until the warm-up's own 120 s


@pytest.mark.parametrize(
    ("exc", "missed"),
    [
        (ExecutionTimeout("operation exceeded time limit", 50), 1),  # the server's maxTimeMS
        (NetworkTimeout("timed out"), 1),  # the client's deadline, mid-operation
        (ServerSelectionTimeoutError("No servers found yet"), 0),  # the database is down: no time was spent on it
        (AutoReconnect("connection closed"), 0),
        (OperationFailure("bad query", 2), 0),
    ],
)
def test_only_a_deadline_run_out_on_the_database_counts_as_a_miss(exc: Exception, missed: int) -> None:
    admission = Admission([Slots(Work.EXPENSIVE, 1, share=0.5)], wait=0, deadline=2.0, max_requests=1)
    route = SimpleNamespace(opt={"work": Work.EXPENSIVE})
    admission.count_deadline(exc, {"route_handler": route})  # type: ignore[typeddict-item]
    expensive = admission.classes[Work.EXPENSIVE]
    assert (expensive.deadline_exceeded, expensive.missed_in_a_row) == (missed, missed)


@pytest.mark.parametrize(("status", "ends_the_run"), [(200, True), (304, True), (400, False), (503, False)])
async def test_only_a_request_answered_without_an_error_ends_a_run_of_missed_deadlines(
    status: int, ends_the_run: bool
) -> None:
    """A list request refused as bad (400) never reached the database: it shows nothing about whether the class's
    queries finish again."""
    slots = Slots(Work.EXPENSIVE, 2, share=0.5, burst=2.0)
    admission = Admission([slots], wait=0, deadline=2.0, max_requests=1)
    slots.missed()

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})

    async def send(message: Any) -> None:
        pass

    route = SimpleNamespace(opt={"work": Work.EXPENSIVE, "cancellable": False})
    await AdmissionMiddleware(handler, admission)({"type": "http", "route_handler": route}, None, send)  # type: ignore[arg-type]
    assert slots.missed_in_a_row == (0 if ends_the_run else 1)


async def test_a_request_refused_on_its_way_through_does_not_end_a_run_of_missed_deadlines() -> None:
    slots = Slots(Work.EXPENSIVE, 2, share=0.5, burst=2.0)
    slots.missed()
    with pytest.raises(Unavailable):
        async with slots.hold(wait=10):  # (the pause is shorter than the wait)
            raise Unavailable("the database is warming up after an index change; retry", retry_after=1)
    assert slots.missed_in_a_row == 1
