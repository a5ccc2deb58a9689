"""One import run: source -> process pool -> sink -> ledger, with bounded work in flight.

Stopping (cancel or shutdown) does not wait for the blocks in flight: they are abandoned at once, even in the
middle of a write, and stay above the watermark. Their rows are read again on resume, where a row this job
already wrote counts as inserted (see sink.py), so a cancel takes as long as one checkpoint, at any write speed.

The event loop only moves bytes: reading a block is one await (to find where its records end), a worker
reads the same bytes again from the page cache and parses and BSON-encodes them (offsets cross the process
boundary, not megabytes), writing is insert_many of already-encoded documents. At most `blocks_in_flight`
blocks exist at once (read, parsing or being written), so memory does not grow with the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

import msgspec

from app.db import WriteFailed, retry
from app.imports.job.jobs import JobState, JobStore
from app.imports.job.ledger import RECENT, Ledger
from app.imports.job.meter import Meter
from app.imports.model import Batch, Block, ColumnMap, Counters, Mode, Outcome, Status, counters_of, parse_spec
from app.imports.reading.decode import InputError
from app.imports.reading.parse import parse_block
from app.imports.reading.source import read_blocks
from app.imports.reading.workers import TAIL, parse_range
from app.imports.run.sink import DrySink, Sink
from app.settings import Settings

log = logging.getLogger(__name__)


class ImportFailed(Exception):
    """The job cannot go on (a record too large, a write error); it ends FAILED, resumable."""


class LeaseLost(Exception):
    """Another instance owns the job now; this one must stop writing at once."""


@dataclass
class Control:
    """Signals into a run: cancel (ends CANCELLED) and shutdown (stays RUNNING, lease released); `stop` is set
    by either."""

    cancel: asyncio.Event
    shutdown: asyncio.Event
    stop: asyncio.Event

    @classmethod
    def new(cls) -> Control:
        return cls(asyncio.Event(), asyncio.Event(), asyncio.Event())

    def request_cancel(self) -> None:
        self.cancel.set()
        self.stop.set()

    def request_shutdown(self) -> None:
        self.shutdown.set()
        self.stop.set()

    def stopping(self) -> bool:
        return self.stop.is_set()


class ImportRun:
    def __init__(
        self,
        state: JobState,
        path: Path,
        columns: ColumnMap,
        *,
        store: JobStore,
        sink: Sink | DrySink,
        pool: Executor,
        settings: Settings,
        control: Control,
        warm: Callable[[], Awaitable[None]] | None = None,
    ):
        self.state, self.path, self.store, self.sink, self.pool = state, path, store, sink, pool
        self.settings, self.control = settings, control
        self.warm = warm  # each write waits until the customers are warm (app/warmup.py)
        self.ledger = Ledger(state, max_rejects=settings.import_max_rejects)
        self.applied = asyncio.Condition()  # notified as blocks are accounted
        self.spec = parse_spec(
            state.csv,
            columns,
            job_id=state.job_id,
            batch_size=state.batch_size,
            max_record_bytes=settings.import_max_record_bytes,
            dry_run=state.dry_run,
            mode=Mode(state.mode),
        )
        self.in_flight = asyncio.Semaphore(settings.import_blocks_in_flight)
        self.workers: set[asyncio.Task[None]] = set()
        self.meter = Meter()
        self.started, self.active_before = time.monotonic(), state.active_seconds

    async def run(self) -> Status:
        """Run to the end; return the final status (RUNNING if shut down or the lease was lost)."""
        try:
            async with asyncio.TaskGroup() as group:
                checkpoints = group.create_task(self._checkpoint_loop())
                abandon = group.create_task(self._abandon_when_stopped())
                await self._feed(group)
                checkpoints.cancel()
                abandon.cancel()
        except BaseExceptionGroup as group_error:
            return await self._failed(_first(group_error))
        return await self._ended()

    def live(self) -> JobState:
        """The job as a user should see it now: the accounted counters plus the batches written since."""
        counts = counters_of(self.state)
        counts.add(self.ledger.overlay())
        self._measure(counts.rows_processed)
        return msgspec.structs.replace(self.state, **counts.counts())

    def _measure(self, rows: int) -> None:
        """Sample the rate (rows including batches not yet accounted) and store it, with the ETA, in the state."""
        state = self.state
        self.meter.sample(rows, state.bytes_read)
        rows_per_sec, bytes_per_sec = self.meter.rates()
        state.active_seconds = self.active_before + (time.monotonic() - self.started)
        state.rate_rows_per_sec = round(rows_per_sec, 1)
        remaining = max(0, state.file_size - state.bytes_read)
        state.eta_sec = round(remaining / bytes_per_sec, 1) if bytes_per_sec > 0 else None

    async def _abandon_when_stopped(self) -> None:
        """Cancel or shutdown: stop the blocks in flight now, mid-write if need be (see the module docstring)."""
        await self.control.stop.wait()
        while self.workers:  # PyMongo can swallow a cancel (asyncio.wait_for, Python 3.11): cancel until they end
            for task in list(self.workers):
                task.cancel()
            await asyncio.wait(list(self.workers), timeout=0.2)

    async def _feed(self, group: asyncio.TaskGroup) -> None:
        workers = self.workers
        fmt = self.state.csv
        blocks = read_blocks(
            self.path,
            start=self.state.stream_offset if fmt.streamed else self.state.bytes_read,
            first_line=self.state.lines_read + 1,
            block_bytes=self.settings.import_block_bytes,
            max_record=self.settings.import_max_record_bytes,
            limit=self.state.file_size,  # the file as it was when the job started, even if it grows
            fmt=fmt,
            tail=TAIL,
        )
        failure: InputError | None = None
        async with contextlib.aclosing(blocks):
            try:
                async for block in blocks:
                    await self.in_flight.acquire()
                    if self.control.stopping():
                        self.in_flight.release()
                        break
                    # a plain file's block comes with its tail only (a worker reads it again from the page cache),
                    # to notice a file rewritten under the import
                    tail = block.data[-TAIL:]
                    if not fmt.streamed:  # a decoded block has no file offsets: its bytes go to the worker
                        block = dataclasses.replace(block, data=b"")
                    task = group.create_task(self._process(block, tail))
                    workers.add(task)
                    task.add_done_callback(workers.discard)
            except InputError as exc:
                failure = exc  # the blocks before it are complete: account for them first
        if workers:
            await asyncio.wait(workers)
        if failure is not None:
            raise failure

    async def _process(self, block: Block, tail: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
            if self.state.csv.streamed:  # decoded here, parsed there
                parsed = await loop.run_in_executor(self.pool, parse_block, block.data, block.first_line, self.spec)
                block = dataclasses.replace(block, data=b"")
            else:
                parsed = await loop.run_in_executor(
                    self.pool, parse_range, str(self.path), block.start, block.end, block.first_line, tail, self.spec
                )
            if parsed.fatal:  # the blocks before it are written: account for them first (FAILED counts them)
                async with self.applied:
                    await self.applied.wait_for(lambda: self.ledger.next_index >= block.index)
                raise ImportFailed(parsed.fatal)
            outcome = Outcome(block, Counters(rows_invalid=len(parsed.rejections)), rejections=parsed.rejections)
            self.ledger.begin(outcome)
            for batch in parsed.batches:
                await self._write(outcome, batch)
            self.ledger.complete(outcome)
            async with self.applied:
                self.applied.notify_all()
        except asyncio.CancelledError:
            self.ledger.abandon(block.index)
            raise
        finally:
            self.in_flight.release()

    async def _write(self, outcome: Outcome, batch: Batch) -> None:
        if self.warm is not None:
            await self.warm()
        written = await self.sink.write(batch)
        first_row = self.spec.mode is Mode.INSERT and not self.state.dry_run  # the first row of an id wins (sink.py)
        self.ledger.record(outcome, batch.lines, written, first_row=first_row)
        last = range(max(0, len(batch.ids) - RECENT - len(written.skipped)), len(batch.ids))
        recent = [batch.ids[i] for i in last if i not in written.skipped]
        outcome.recent = (outcome.recent + recent)[-RECENT:]

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.import_checkpoint_seconds)
            await self.checkpoint()

    async def checkpoint(self, **extra: object) -> None:
        """Store the rejections of applied blocks, then the watermark and counters that cover them."""
        self.live()  # samples the rate even when nobody asks for progress
        progress = self.state.progress_fields()
        await self._save_rejections()
        seconds = self.settings.import_retry_seconds
        doc = await retry(
            lambda: self.store.checkpoint(self.state, progress, **extra), seconds=seconds, what="checkpoint"
        )
        if doc is None:
            raise LeaseLost(f"job {self.state.job_id} is no longer owned by this instance")
        if doc.get("cancelRequested"):
            self.control.request_cancel()

    async def _save_rejections(self) -> None:
        """Store the rejections of applied blocks. If that is interrupted (the checkpoint loop is cancelled at the
        end of a run, mid-write) they go back to the ledger: the final checkpoint's watermark covers them, so
        they must be stored by it, not lost."""
        rejections = self.ledger.take_rejections()
        try:
            await retry(
                lambda: self.store.save_rejections(self.state.job_id, rejections),
                seconds=self.settings.import_retry_seconds,
                what="saving rejected rows",
            )
        except BaseException:
            self.ledger.unsaved[:0] = rejections
            raise

    async def _ended(self) -> Status:
        if self.control.shutdown.is_set() and not self.control.cancel.is_set():
            await self.checkpoint(owner=None, heartbeatAt=None)  # release: the next start resumes at once
            return Status.RUNNING
        status = Status.CANCELLED if self.control.cancel.is_set() else Status.COMPLETED
        if status is Status.COMPLETED:  # all of it: a gzip trailer may be read after the last record's block
            self.state.bytes_read = self.state.file_size
        await self._finish(status)
        return status

    async def _failed(self, exc: BaseException) -> Status:
        if isinstance(exc, LeaseLost):
            log.warning("%s; stopped writing", exc)
            return Status.RUNNING
        if not isinstance(exc, ImportFailed | InputError | WriteFailed):
            log.error("import %s failed unexpectedly", self.state.job_id, exc_info=exc)
        await self._finish(Status.FAILED, str(exc) or exc.__class__.__name__)
        return Status.FAILED

    async def _finish(self, status: Status, error: str | None = None) -> None:
        self._measure(self.state.rows_processed)
        self.state.eta_sec = None
        self.state.rate_rows_per_sec = round(self.state.rows_processed / max(self.state.active_seconds, 1e-3), 1)
        await self._save_rejections()
        seconds = self.settings.import_retry_seconds
        if not await retry(lambda: self.store.finish(self.state, status, error), seconds=seconds, what="finish"):
            log.warning("job %s was taken over before it could be marked %s", self.state.job_id, status)


def _first(group: BaseExceptionGroup) -> BaseException:
    """The first real error of a task group (cancellations of siblings are consequences)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
