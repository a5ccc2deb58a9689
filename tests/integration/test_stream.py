"""GET /import/progress/stream read by a real HTTP client from uvicorn serving over TCP, and the broadcaster."""

from __future__ import annotations

import asyncio
import gc
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar

from app.asgi import create_app
from app.errors import Unavailable
from app.imports.broadcast import TERMINAL as TERMINAL_EVENT
from app.imports.broadcast import Broadcaster
from app.imports.job.jobs import JobState
from app.imports.model import Status
from app.settings import Settings
from tests.helpers.answers import assert_problem, start, wait_done
from tests.helpers.csvfiles import HEADER, good_row, plain_row, write
from tests.helpers.gates import Gate, gate_sinks, until
from tests.helpers.served import serving
from tests.helpers.settings import with_settings

ROWS = 20_000
COUNTERS = ("rowsProcessed", "rowsInserted", "rowsDuplicate", "rowsInvalid", "bytesRead")
TERMINAL = {"done", "error", "cancelled"}


@dataclass
class Server:
    url: str
    app: Litestar
    import_dir: Path


@dataclass
class Message:
    event: str | None
    id: int | None
    data: dict[str, Any] | None
    retry: int | None
    comment: str | None


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """uvicorn in a thread on a free port: small blocks and one writer (the test paces the writes with a Gate)."""
    folder = tmp_path_factory.mktemp("stream")
    app = create_app(
        with_settings(
            settings,
            mongodb_db=f"stream_{uuid.uuid4().hex[:8]}",
            import_dir=str(folder),
            import_block_bytes=65536,
            import_writers=1,
        )
    )
    with serving(app, timeout_graceful_shutdown=5) as url:
        yield Server(url, app, folder)


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def big_file(folder: Path, name: str) -> Path:
    """ROWS rows of about 200 bytes with ids unique to this file: several seconds of 64 KiB blocks."""
    about = "Enjoys long walks and longer CSV files"
    return write(folder / f"{name}.csv", [HEADER, *(good_row(i, f"{name}-{i}", about) for i in range(ROWS))])


def message(fields: dict[str, str]) -> Message:
    data = fields.get("data")
    return Message(
        fields.get("event"),
        int(fields["id"]) if "id" in fields else None,
        json.loads(data) if data else None,
        int(fields["retry"]) if "retry" in fields else None,
        fields.get(""),
    )


async def collect(
    http: httpx.AsyncClient, into: list[Message], connected: asyncio.Event | None = None, ends: int = 1
) -> None:
    """Read the stream, parsing each SSE message into `into`, until `ends` terminal events came (the stream itself
    stays open for the next job: the client leaves)."""
    async with http.stream("GET", "/import/progress/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line:
                name, _, value = line.partition(":")
                fields[name] = fields[name] + "\n" + value[1:] if name in fields else value[1:]
                continue
            if fields:
                into.append(message(fields))
                fields = {}
                if connected is not None:
                    connected.set()
                if sum(m.event in TERMINAL for m in into) >= ends:
                    return


async def subscribe(http: httpx.AsyncClient, ends: int = 1) -> tuple[asyncio.Task[None], list[Message]]:
    """Start reading a stream; return once its snapshot arrived (so it is subscribed)."""
    messages: list[Message] = []
    connected = asyncio.Event()
    task = asyncio.create_task(collect(http, messages, connected, ends))
    await asyncio.wait_for(connected.wait(), 10)
    return task, messages


def check_followed(messages: list[Message], job_id: str, final: dict[str, Any], terminal: str) -> None:
    """Snapshot first, then monotonic progress of the job, then exactly one terminal event, last."""
    assert messages[0].event == "snapshot" and messages[0].data is not None
    assert not (messages[0].data["jobId"] == job_id and messages[0].data["status"] == "RUNNING")
    events = [m for m in messages if m.event is not None]
    assert all(m.retry == 3000 for m in events)
    ids = [m.id for m in events]
    assert ids == sorted(set(ids)), ids
    progress = [m.data for m in events if m.event == "progress"]
    assert progress and all(p["jobId"] == job_id and p["status"] == "RUNNING" for p in progress)
    rows = [p["rowsProcessed"] for p in progress]
    assert rows == sorted(rows)
    ends = [m for m in events if m.event in TERMINAL]
    assert len(ends) == 1 and ends[0] is events[-1] and ends[0].event == terminal
    assert ends[0].data["jobId"] == job_id
    assert {k: ends[0].data[k] for k in (*COUNTERS, "status")} == {k: final[k] for k in (*COUNTERS, "status")}


def kinds(messages: list[Message]) -> list[str | None]:
    """Event types in order, repeats collapsed (a slow reader may see fewer progress events)."""
    out: list[str | None] = []
    for m in messages:
        if m.event is not None and (not out or out[-1] != m.event):
            out.append(m.event)
    return out


async def no_subscribers(server: Server) -> None:
    deadline = time.monotonic() + 10
    while server.app.state.services.broadcaster.subscriptions:
        assert time.monotonic() < deadline, "a closed stream stayed subscribed"
        await asyncio.sleep(0.05)


@pytest.fixture
def gates(server: Server, monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    """Every job the test starts writes through a closed Gate (appended here in start order)."""
    return gate_sinks(server.app.state.services, monkeypatch)


def progress_events(messages: list[Message]) -> int:
    return sum(m.event == "progress" for m in messages)


async def paced(gate: Gate, messages: list[Message], events: int) -> None:
    """Let the job's batches through one at a time until `messages` holds `events` progress events, then open the
    gate: however fast the database, the import lasts long enough to be followed, and no clock is involved."""
    while (seen := progress_events(messages)) < events:
        gate.open(1)
        await until(lambda: progress_events(messages) > seen)
    gate.open_all()


async def watermark_moved(gate: Gate, messages: list[Message]) -> None:
    """Let writes through one at a time until a progress event shows the watermark past the header. Blocks (of
    one batch each) reach the gate in the order their parsing ends, not in file order, so "open two and wait"
    could let blocks 2 and 3 through and wait forever for block 1; each write shows as a progress event."""

    def moved() -> bool:
        return any(m.event == "progress" and m.data["bytesRead"] > len(HEADER) + 1 for m in messages)

    while not moved():
        seen = progress_events(messages)
        gate.open(1)
        await until(lambda before=seen: progress_events(messages) > before)
    # the writes after it wait at the gate


async def test_two_subscribers_follow_a_job_to_the_same_terminal_event(
    server: Server, http: httpx.AsyncClient, gates: list[Gate]
) -> None:
    big_file(server.import_dir, "first")
    (a, a_messages), (b, b_messages) = await subscribe(http), await subscribe(http)
    job_id = (await start(http, "first.csv"))["jobId"]
    await paced(gates[0], a_messages, 3)
    await asyncio.wait_for(asyncio.gather(a, b), 180)  # each returns at its terminal event
    final = (await http.get("/import/progress")).json()

    assert final["status"] == "COMPLETED" and final["rowsInserted"] == ROWS
    for messages in (a_messages, b_messages):
        check_followed(messages, job_id, final, "done")
        progress = [m for m in messages if m.event == "progress"]
        assert len(progress) >= 3, [m.data["rowsProcessed"] for m in progress]
    assert (a_messages[-1].id, a_messages[-1].data) == (b_messages[-1].id, b_messages[-1].data)
    assert kinds(a_messages) == kinds(b_messages) == ["snapshot", "progress", "done"]
    await no_subscribers(server)


async def test_late_subscriber_gets_the_terminal_snapshot_then_follows_the_next_job(
    server: Server, http: httpx.AsyncClient, settings: Settings
) -> None:
    write(server.import_dir / "small.csv", [HEADER, *(good_row(i, f"small-{i}") for i in range(200))])
    job_id = (await start(http, "small.csv"))["jobId"]
    finished = await wait_done(http)

    task, messages = await subscribe(http)
    snapshot = messages[0]
    assert snapshot.event == "snapshot" and snapshot.retry == 3000 and snapshot.id is not None
    assert snapshot.data["jobId"] == job_id and snapshot.data.keys() == finished.keys()
    assert {k: snapshot.data[k] for k in (*COUNTERS, "status")} == {k: finished[k] for k in (*COUNTERS, "status")}
    # A finished job's snapshot does not end the stream: it stays open for the next job. No clock says so ("nothing
    # arrives within 1 s" would also fail on a keep-alive): this task reads on and must see the next job's events.
    assert not task.done() and len(messages) == 1

    broken = [
        HEADER,
        *(good_row(i, f"broken-{i}") for i in range(50)),
        '50,C-broken,Ann,Lee,"unterminated,x,y,z,a@b.c,2021-01-01,w,about',
        *(plain_row(i, f"broken-{i}") for i in range(51, 51 + settings.import_max_record_bytes // 200)),  # no quote
    ]
    write(server.import_dir / "broken.csv", broken)
    next_id = (await start(http, "broken.csv"))["jobId"]
    await asyncio.wait_for(task, 60)
    final = await wait_done(http)
    assert final["status"] == "FAILED"
    assert kinds(messages)[0] == "snapshot" and kinds(messages)[-1] == "error"
    assert all(m.data["jobId"] == next_id for m in messages[1:] if m.event is not None)  # nothing more of the first
    error = messages[-1]
    assert error.data["jobId"] == next_id and "line 52" in error.data["error"]
    assert {k: error.data[k] for k in COUNTERS} == {k: final[k] for k in COUNTERS}


async def test_one_stream_follows_a_job_through_cancel_and_resume(
    server: Server, http: httpx.AsyncClient, gates: list[Gate]
) -> None:
    big_file(server.import_dir, "cancelled")
    task, messages = await subscribe(http, ends=2)
    job_id = (await start(http, "cancelled.csv"))["jobId"]
    await watermark_moved(gates[0], messages)
    assert (await http.post("/import/cancel")).status_code == 202
    cancelled = await wait_done(http)
    assert cancelled["status"] == "CANCELLED" and 0 < cancelled["rowsProcessed"] < ROWS, cancelled
    await until(lambda: any(m.event == "cancelled" for m in messages))

    before = progress_events(messages)
    assert (await http.post("/import/resume")).status_code == 202  # the same connection follows the resumed job
    await paced(gates[1], messages, before + 2)
    await asyncio.wait_for(task, 120)
    final = await wait_done(http)
    assert final["status"] == "COMPLETED" and final["rowsInserted"] == ROWS, final

    events = [m for m in messages if m.event is not None]
    assert kinds(messages) == ["snapshot", "progress", "cancelled", "progress", "done"]
    assert all(m.data["jobId"] == job_id for m in events[1:])
    ids = [m.id for m in events]
    assert ids == sorted(set(ids)), ids
    resumed = [m.data for m in events if m.event == "progress"][before:]
    assert len(resumed) >= 2 and all(p["attempts"] == 2 for p in resumed)
    assert {k: events[-1].data[k] for k in COUNTERS} == {k: final[k] for k in COUNTERS}


async def test_a_disconnected_client_is_unsubscribed(server: Server, http: httpx.AsyncClient) -> None:
    await no_subscribers(server)
    async with http.stream("GET", "/import/progress/stream") as response:
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith("id: ")
        assert len(server.app.state.services.broadcaster.subscriptions) == 1
    await no_subscribers(server)


async def test_a_stream_over_the_bound_is_refused_with_503_and_retry_after_until_a_place_is_free(
    settings: Settings, tmp_path: Path
) -> None:
    """PROGRESS_STREAM_MAX_CLIENTS streams at most: one more is answered at once (its response never starts as a
    stream), and the place a client leaves is taken by the next."""
    bounded = with_settings(
        settings,
        mongodb_db=f"bounded_{uuid.uuid4().hex[:8]}",
        import_dir=str(tmp_path),
        import_workers=1,
        progress_stream_max_clients=2,
    )
    app = create_app(bounded)
    with serving(app, timeout_graceful_shutdown=5) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            (first, _), (second, _) = await subscribe(http), await subscribe(http)
            async with http.stream("GET", "/import/progress/stream") as refused:
                assert refused.status_code == 503  # before reading: an accepted stream would never end
                await refused.aread()
            body = assert_problem(refused, 503, "Service Unavailable")
            assert refused.headers["retry-after"] == "3"  # the stream's own `retry: 3000`
            assert "PROGRESS_STREAM_MAX_CLIENTS" in body["detail"] and "GET /import/progress" in body["detail"]
            subscriptions = app.state.services.broadcaster.subscriptions
            assert len(subscriptions) == 2
            first.cancel()  # the client leaves: its place is free again
            await until(lambda: len(subscriptions) == 1)
            third, messages = await subscribe(http)
            assert messages[0].event == "snapshot" and len(subscriptions) == 2
            for task in (second, third):
                task.cancel()
            await asyncio.gather(first, second, third, return_exceptions=True)


# ---- the broadcaster alone, with a hand-driven source ---------------------------------------------------


class Source:
    def __init__(self) -> None:
        self.state: JobState | None = None

    async def __call__(self) -> JobState | None:
        return self.state

    def set(self, status: Status, rows: int, job_id: str = "j1") -> None:
        self.state = JobState(
            job_id=job_id,
            status=status,
            file_path="f.csv",
            file_size=1000,
            file_identity={},
            mode="insert",
            batch_size=10,
            bytes_read=rows,
            rows_processed=rows,
            rows_inserted=rows,
        )


async def test_stream_sends_keep_alives_while_idle_and_follows_one_job_after_another() -> None:
    source = Source()
    broadcaster = Broadcaster(source, interval=0.01, keepalive=0.05)
    await broadcaster.start()
    try:
        events = broadcaster.events()
        snapshot = await anext(events)
        assert (snapshot.kind, json.loads(snapshot.data or b"")["status"]) == ("snapshot", "IDLE")
        keepalive = await asyncio.wait_for(anext(events), 30)
        assert (keepalive.kind, keepalive.comment, keepalive.id) == (None, "keep-alive", None)
        source.set(Status.RUNNING, 10)
        while (event := await asyncio.wait_for(anext(events), 30)).kind is None:
            pass
        assert event.kind == "progress" and json.loads(event.data or b"")["rowsProcessed"] == 10
        source.set(Status.COMPLETED, 20)
        while (event := await asyncio.wait_for(anext(events), 30)).kind is None:
            pass
        assert event.kind == "done" and json.loads(event.data or b"")["rowsProcessed"] == 20
        source.set(Status.RUNNING, 5, job_id="j2")  # the next job (new or resumed): the same stream follows it
        while (event := await asyncio.wait_for(anext(events), 30)).kind is None:
            pass
        assert event.kind == "progress" and json.loads(event.data or b"")["jobId"] == "j2"
        source.set(Status.CANCELLED, 7, job_id="j2")
        while (event := await asyncio.wait_for(anext(events), 30)).kind is None:
            pass
        assert event.kind == "cancelled" and json.loads(event.data or b"")["rowsProcessed"] == 7
        await events.aclose()  # the client leaves
        assert not broadcaster.subscriptions
    finally:
        await broadcaster.close()


async def test_only_changes_are_published_and_a_slow_subscriber_keeps_every_terminal_update() -> None:
    source = Source()
    broadcaster = Broadcaster(source, queue_size=3)
    await broadcaster.poll()
    with broadcaster.subscribe() as slow, broadcaster.subscribe() as fast:
        fast.size = 100
        for rows in range(10):
            source.set(Status.RUNNING, rows)
            await broadcaster.poll()
            await broadcaster.poll()  # nothing visible changed: not published again
        source.set(Status.FAILED, 10)
        await broadcaster.poll()
        for rows in range(3):  # the next job
            source.set(Status.RUNNING, rows, job_id="j2")
            await broadcaster.poll()
        assert broadcaster.current.seq == 15
        assert [u.status for u in fast.items] == [Status.RUNNING] * 10 + [Status.FAILED] + [Status.RUNNING] * 3
        assert [u.seq for u in fast.items] == list(range(2, 16))
        # the slow reader lost the oldest progress updates, never the end of the first job
        assert [u.status for u in slow.items] == [Status.FAILED, Status.RUNNING, Status.RUNNING] and slow.dropped == 11
        assert [json.loads(u.data)["rowsProcessed"] for u in slow.items] == [10, 1, 2]
    assert not broadcaster.subscriptions


@pytest.mark.parametrize("queue_size", [1, 2, 3])
async def test_a_slow_reader_always_gets_the_latest_terminal_event(queue_size: int) -> None:
    """Four jobs end, then a fifth starts, while the reader reads nothing: whatever its queue (a queue of one
    lost the fourth job's end to the fifth job's first progress), it learns how the last job ended, then follows
    the next; older ends go first only when nothing else is queued."""
    source = Source()
    broadcaster = Broadcaster(source, keepalive=10, queue_size=queue_size)
    await broadcaster.poll()
    events = broadcaster.events()
    assert (await anext(events)).kind == "snapshot"
    ends = [("j1", Status.FAILED), ("j2", Status.CANCELLED), ("j3", Status.COMPLETED), ("j4", Status.FAILED)]
    for rows, (job_id, status) in enumerate(ends, start=1):
        source.set(status, rows, job_id=job_id)
        await broadcaster.poll()
    source.set(Status.RUNNING, 1, job_id="j5")
    await broadcaster.poll()
    kept = max(2, queue_size) - 1  # the terminal updates the queue still holds beside the progress one
    got = [await anext(events) for _ in range(kept + 1)]
    published = [(TERMINAL_EVENT[status], job_id) for job_id, status in ends]
    assert [(e.kind, json.loads(e.data or b"")["jobId"]) for e in got] == [*published[-kept:], ("progress", "j5")]
    await events.aclose()
    await broadcaster.close()


async def test_a_stream_takes_its_place_when_opened_and_a_stream_never_started_gives_it_back() -> None:
    broadcaster = Broadcaster(Source(), keepalive=10, max_subscribers=1)
    await broadcaster.poll()
    events = broadcaster.events()
    assert len(broadcaster.subscriptions) == 1  # taken before the first event: a second client is refused now
    with pytest.raises(Unavailable) as refused:
        broadcaster.events()
    assert refused.value.headers == {"Retry-After": "3"}
    del events  # the response never started (the client left first): its generator is collected
    gc.collect()
    assert not broadcaster.subscriptions
    events = broadcaster.events()
    assert (await anext(events)).kind == "snapshot"
    await events.aclose()
    assert not broadcaster.subscriptions
    await broadcaster.close()


async def test_a_change_published_as_a_stream_starts_is_sent_once_in_its_snapshot() -> None:
    source = Source()
    broadcaster = Broadcaster(source, keepalive=10)
    await broadcaster.poll()
    events = broadcaster.events()  # subscribed now; the snapshot's poll also hands the change to its queue
    source.set(Status.RUNNING, 1)
    snapshot = await anext(events)
    assert (snapshot.kind, snapshot.id, json.loads(snapshot.data or b"")["status"]) == ("snapshot", 2, "RUNNING")
    source.set(Status.COMPLETED, 2)
    await broadcaster.poll()
    assert ((event := await anext(events)).kind, event.id) == ("done", 3)  # not the snapshot again as progress
    await events.aclose()
    await broadcaster.close()


async def test_a_cancelled_stream_unsubscribes() -> None:
    broadcaster = Broadcaster(Source(), keepalive=10)
    await broadcaster.poll()
    events = broadcaster.events()
    await anext(events)

    async def read() -> object:
        return await anext(events)

    reader = asyncio.create_task(read())
    await asyncio.sleep(0)
    assert len(broadcaster.subscriptions) == 1
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert not broadcaster.subscriptions
