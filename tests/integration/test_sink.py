"""The sink against the real database, in insert mode: a row this job already wrote counts as inserted, and the
first row of an id wins whichever is written first."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import AutoReconnect

from app.imports.job.jobs import JobState, JobStore, now
from app.imports.job.ledger import Ledger
from app.imports.model import Batch, Block, CsvFormat, Mode, Outcome, ParseSpec, Status, Written
from app.imports.reading.header import map_header
from app.imports.reading.parse import parse_block
from app.imports.reading.source import file_identity, inspect, read_blocks
from app.imports.reading.workers import parser_pool
from app.imports.run.pipeline import Control, ImportRun
from app.imports.run.sink import Sink
from app.settings import Settings
from tests.helpers.csvfiles import EXISTING, HEADER, a_job, batch_of, good_row, write
from tests.helpers.gates import until
from tests.helpers.settings import with_settings

TEXT = "\n".join([HEADER, good_row(1), good_row(2), good_row(3, EXISTING["_id"]), good_row(4, "C0000001")]) + "\n"


def sink(db: AsyncDatabase, job_id: str) -> Sink:
    return Sink(db.customers, job_id=job_id, retry_seconds=5, writers=1, mode=Mode.INSERT)


async def test_a_batch_written_again_by_the_same_job_counts_as_inserted_not_duplicate(db: AsyncDatabase) -> None:
    """What a resumed job meets: rows it wrote before a crash or a cancel (or a retried insert_many) are
    refused with E11000 and found stamped with this job and their own line; another job's rows, another line of
    this job and a customer that was there before are duplicates."""
    await db.customers.insert_one(dict(EXISTING))
    batch = batch_of(TEXT, "job-a", Mode.INSERT)
    assert list(batch.ids) == ["C0000001", "C0000002", EXISTING["_id"], "C0000001"]

    first = await sink(db, "job-a").write(batch)
    again = await sink(db, "job-a").write(batch)  # a new Sink: the rule lives in the database, not in memory
    other = await sink(db, "job-b").write(batch_of(TEXT, "job-b", Mode.INSERT))

    assert (first.rows_inserted, first.rows_duplicate, first.skipped) == (2, 2, {2, 3})
    assert (again.rows_inserted, again.rows_duplicate, again.skipped) == (
        2,
        2,
        {2, 3},
    )  # C0000001 and C0000002: still "mine"
    assert (other.rows_inserted, other.rows_duplicate, other.skipped) == (0, 4, {0, 1, 2, 3})
    assert await db.customers.count_documents({}) == 3
    assert await db.customers.count_documents({"importJobId": "job-a"}) == 2


def rows_at(first_line: int, rows: list[str], job_id: str) -> Batch:
    """One batch of `rows` as a worker sends it when they start at physical line `first_line`."""
    spec = ParseSpec(map_header(HEADER.encode()), job_id, batch_size=1000, max_record_bytes=65536, mode=Mode.INSERT)
    [batch] = parse_block(("\n".join(rows) + "\n").encode(), first_line, spec).batches
    return batch


async def test_the_first_row_of_an_id_wins_whichever_block_is_written_first(db: AsyncDatabase) -> None:
    """Blocks are written concurrently: a later row of an id can get in first. The earlier row then replaces it
    (a conditional replace) and is the one inserted; the later row's line comes back as displaced, for the
    pipeline to count it a duplicate. Another job's customer and a hand-edited one are never replaced."""
    other = await sink(db, "job-b").write(rows_at(2, [good_row(6, "X3")], "job-b"))
    later = rows_at(500, [good_row(7, "X1", about="later"), good_row(8, "X2"), good_row(9, "X3")], "job-a")
    first = await sink(db, "job-a").write(later)
    await db.customers.update_one({"_id": "X2"}, {"$set": {"handEdited": True}})
    assert (other.rows_inserted, first.rows_inserted, first.rows_duplicate) == (1, 2, 1)

    earlier = rows_at(10, [good_row(1, "X1", about="first"), good_row(2, "X2"), good_row(3, "X3")], "job-a")
    written = await sink(db, "job-a").write(earlier)
    assert (written.rows_inserted, written.rows_duplicate, written.skipped, written.displaced) == (1, 2, {1, 2}, [500])
    stored = await db.customers.find_one({"_id": "X1"})
    assert stored is not None and (stored["about"], stored["importLine"]) == ("first", 10)
    again = await sink(db, "job-a").write(earlier)  # the same batch again (a resume): its row wrote it, "mine"
    assert (again.rows_inserted, again.rows_duplicate, again.displaced) == (1, 2, [])
    assert (await db.customers.find_one({"_id": "X2"}) or {})["importLine"] == 501  # hand-edited: stays


class LaterBlockFirst:
    """The real sink; block 0's writes wait until block 1 has written a batch (blocks in flight together)."""

    def __init__(self, real: Sink, second_block: int) -> None:
        self.real, self.second_block, self.second_written = real, second_block, False

    async def write(self, batch: Batch) -> Written:
        if batch.lines[0] < self.second_block:
            await until(lambda: self.second_written)
        written = await self.real.write(batch)
        self.second_written |= batch.lines[0] >= self.second_block
        return written


async def test_an_import_keeps_the_first_row_of_an_id_when_a_later_block_is_written_first(
    db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    settings = with_settings(settings, import_block_bytes=4096, import_blocks_in_flight=2)
    rows = [good_row(i, about=f"row {i}") for i in range(1, 101)]
    rows[44] = good_row(45, "C0000005", about="row 45, a later row of C0000005")  # in block 1
    path = write(import_dir / "later-first.csv", [HEADER, *rows])
    fmt, header = await inspect(path, CsvFormat(), settings.import_max_record_bytes)
    cuts = [b async for b in read_blocks(path, start=header.end, first_line=2, block_bytes=4096, max_record=65536)]
    assert cuts[0].first_line <= 6 < cuts[1].first_line <= 46 < cuts[2].first_line
    state = JobState(
        job_id="later-first",
        status=Status.RUNNING,
        file_path=str(path),
        file_size=path.stat().st_size,
        file_identity=await file_identity(path),
        mode="insert",
        batch_size=10,
        csv=fmt,
        bytes_read=header.end,
        lines_read=header.lines,
        owner="test",
        heartbeat_at=now(),
    )
    store, pool = JobStore(db), parser_pool(1)
    await store.claim_new(state)
    real = Sink(db.customers, job_id=state.job_id, retry_seconds=5, writers=2, mode=Mode.INSERT)
    try:
        run = ImportRun(
            state,
            path,
            map_header(header.record),
            store=store,
            sink=LaterBlockFirst(real, cuts[1].first_line),
            pool=pool,
            settings=settings,
            control=Control.new(),
        )
        assert await run.run() == Status.COMPLETED
    finally:
        pool.shutdown()
    stored = await db.customers.find_one({"_id": "C0000005"})
    assert stored is not None and (stored["about"], stored["importLine"]) == ("row 5", 6), stored
    final = await store.get(state.job_id)
    assert final is not None and (final.rows_inserted, final.rows_duplicate) == (99, 1), final


class StaleRead(Sink):
    """The real sink whose first stamp read is from before another earlier row replaced the later one."""

    stale = True

    async def _stamps(self, ids: list[str]) -> dict[str, dict[str, object]]:
        found = await super()._stamps(ids)
        if self.stale:
            self.stale = False
            return {key: {**doc, "importLine": 90} for key, doc in found.items()}
        return found


async def test_two_earlier_rows_racing_to_replace_a_later_one_leave_the_first(db: AsyncDatabase) -> None:
    await sink(db, "job-a").write(rows_at(90, [good_row(9, "Y1", about="line 90")], "job-a"))
    middle = await sink(db, "job-a").write(rows_at(50, [good_row(5, "Y1", about="line 50")], "job-a"))
    assert middle.displaced == [90]
    # row 10 read the stamp before row 50 replaced row 90: its replace of 90 finds nothing, it reads again
    first = await StaleRead(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.INSERT).write(
        rows_at(10, [good_row(1, "Y1", about="line 10")], "job-a")
    )
    assert (first.rows_inserted, first.rows_duplicate, first.displaced) == (1, 0, [50])
    assert (await db.customers.find_one({"_id": "Y1"}) or {})["about"] == "line 10"


class LostReply(Sink):
    """The real sink whose first replace is applied by the server but answered as if it matched nothing."""

    lost = False

    async def _replace(self, batch: Batch, i: int, later: int) -> bool:
        done = await super()._replace(batch, i, later)
        if not self.lost:
            self.lost = True
            return False
        return done


async def test_a_replace_whose_reply_is_lost_still_counts_as_the_swap_it_was(db: AsyncDatabase) -> None:
    await sink(db, "job-a").write(rows_at(90, [good_row(9, "Z1", about="line 90")], "job-a"))
    lost = LostReply(db.customers, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.INSERT)
    first = await lost.write(rows_at(10, [good_row(1, "Z1", about="line 10")], "job-a"))
    assert lost.lost and (first.rows_inserted, first.rows_duplicate, first.displaced) == (1, 0, [90])
    assert (await db.customers.find_one({"_id": "Z1"}) or {})["about"] == "line 10"


class ReplyLostWhileAnEarlierRowGetsIn:
    """The real collection, but its first replace_one is applied, then an even earlier row of the same id is
    written (by `meanwhile`), then the reply is lost (AutoReconnect): the sink retries, finds neither its own row
    nor the later one."""

    def __init__(self, real: Any, meanwhile: Callable[[], Awaitable[Written]]) -> None:
        self.real, self.meanwhile, self.earlier = real, meanwhile, None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def replace_one(self, *args: Any, **kwargs: Any) -> Any:
        result = await self.real.replace_one(*args, **kwargs)
        if self.earlier is None:
            self.earlier = await self.meanwhile()
            raise AutoReconnect("the reply was lost")
        return result


async def test_a_lost_reply_while_an_even_earlier_row_gets_in_keeps_the_counts_exact(db: AsyncDatabase) -> None:
    """Id W1 at lines 10, 50 and 90, in three blocks: 90 is in first; 50 replaces it, the reply is lost, and
    meanwhile 10 replaces 50. One inserted, two duplicates, row 10 stored (a reviewer's interleaving)."""
    ledger = Ledger(a_job("job-a"), max_rejects=10)
    outcomes = [Outcome(Block(index, 0, 1, line, 1, b"")) for index, line in enumerate([10, 50, 90])]
    for outcome in outcomes:
        ledger.begin(outcome)

    def account(outcome: Outcome, batch: Batch, written: Written) -> None:
        ledger.record(outcome, batch.lines, written, first_row=True)

    rows = {line: rows_at(line, [good_row(line, "W1", about=f"line {line}")], "job-a") for line in (10, 50, 90)}
    account(outcomes[2], rows[90], await sink(db, "job-a").write(rows[90]))
    proxy = ReplyLostWhileAnEarlierRowGetsIn(db.customers, lambda: sink(db, "job-a").write(rows[10]))
    racing = Sink(proxy, job_id="job-a", retry_seconds=5, writers=1, mode=Mode.INSERT)  # type: ignore[arg-type]
    written50 = await racing.write(rows[50])
    assert proxy.earlier is not None
    account(outcomes[0], rows[10], proxy.earlier)
    account(outcomes[1], rows[50], written50)
    assert [(o.counts.rows_inserted, o.counts.rows_duplicate) for o in outcomes] == [(1, 0), (0, 1), (0, 1)]
    assert (await db.customers.find_one({"_id": "W1"}) or {})["about"] == "line 10"
