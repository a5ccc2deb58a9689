"""ImportService: the process pool and the job this instance runs. Controllers talk only to this.

It starts jobs, cancels them, answers progress (from memory while it runs the job, from import_state
otherwise), and watches for a RUNNING job whose owner stopped heartbeating, which it takes over and
resumes from the watermark.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from app.admission import detached
from app.db import CUSTOMERS
from app.errors import Conflict, ImportFileError, ImportRunning, NotFound, Unavailable
from app.imports.files import ImportableFile, list_files
from app.imports.job.history import recent_jobs
from app.imports.job.jobs import JobState, JobStore, now
from app.imports.model import NAMES, ColumnMap, CsvFormat, Mode, Status
from app.imports.paths import readable, resolve
from app.imports.preview import preview
from app.imports.reading.sample import read_format
from app.imports.reading.source import file_identity
from app.imports.reading.workers import parser_pool, warm_up
from app.imports.run.pipeline import Control, ImportRun
from app.imports.run.sink import DrySink, Sink
from app.imports.schemas import ImportPreview, ImportRequest
from app.settings import Settings
from app.warmup import Warmup

log = logging.getLogger(__name__)
RESUMABLE = (Status.FAILED, Status.CANCELLED)
IGNORED_LISTED = 100  # ignoredColumns is in every progress answer and snapshot: the first 100 names
PREVIEWS_AT_ONCE = 4  # each reads a few MiB and parses in the worker pool, holding a cheap admission slot; a
# preview its client gave up on (the dashboard replaces one as its options change) still finishes and holds one


@dataclass
class Running:
    run: ImportRun
    task: asyncio.Task[None]

    @property
    def state(self) -> JobState:
        return self.run.state

    @property
    def control(self) -> Control:
        return self.run.control


class ImportService:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], settings: Settings, *, warmup: Warmup | None = None):
        self.db = db
        self.settings = settings
        self.store = JobStore(db, warmup=warmup)
        self.instance_id = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.pool = parser_pool(settings.import_workers, settings.import_worker_nice)
        self.current: Running | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._previews = asyncio.Semaphore(PREVIEWS_AT_ONCE)

    # ---- commands -------------------------------------------------------------------------------------

    async def start(self, request: ImportRequest) -> JobState:
        path = resolve(request.file_path, self.settings.import_path, self.settings.csv_file_path)
        fmt, columns, header_end, header_lines = await self._read_header(path, request.csv_format())
        identity = await file_identity(path)
        state = JobState(
            job_id=uuid.uuid4().hex,
            status=Status.RUNNING,
            file_path=str(path),
            file_size=int(identity["size"]),
            file_identity=identity,
            mode=request.mode,
            dry_run=request.dry_run,
            batch_size=request.batch_size or self.settings.import_batch_size,
            ignored_columns=list(columns.ignored[:IGNORED_LISTED]),
            csv=fmt,
            bytes_read=0 if fmt.streamed else header_end,
            stream_offset=header_end if fmt.streamed else 0,
            lines_read=header_lines,
            owner=self.instance_id,
            heartbeat_at=now(),
        )
        await self.store.claim_new(state)
        log.info("import %s started: %s (%d bytes)", state.job_id, path, state.file_size)
        self._launch(state, path, columns)
        return state

    async def cancel(self) -> JobState:
        if self.current is not None:
            self.current.control.request_cancel()
            return self.current.state
        running = await self.store.running()
        if running is None:
            raise Conflict("no import is running")
        await self.store.request_cancel(running.job_id)  # its owner sees this at its next checkpoint
        return running

    async def resume(self, job_id: str | None = None) -> JobState:
        """Resume a FAILED or CANCELLED job from its watermark (default: the latest job), if its file did not
        change. 409 while a job runs (naming it) or when the named job cannot be resumed."""
        if (running := await self.store.running()) is not None:
            raise ImportRunning(running.job_id)
        target = await self._resumable(job_id)
        path = Path(target.file_path)
        _, columns, _, _ = await self._read_header(path, target.csv)
        await self._check_unchanged(target, path)
        try:
            state = await self.store.reopen(target.job_id, self.instance_id)
        except Conflict:  # another resume reopened it (or started a job) since the checks above
            if (running := await self.store.running()) is not None:
                raise ImportRunning(running.job_id) from None
            raise
        log.info("import %s resumed at byte %d", state.job_id, state.bytes_read)
        self._launch(state, path, columns)
        return state

    async def _resumable(self, job_id: str | None) -> JobState:
        """The job to resume: `job_id`, or the latest job; the error says why there is none."""
        target = await (self.store.get(job_id) if job_id is not None else self.store.latest())
        if target is None:
            raise NotFound(
                f"import job {job_id!r} does not exist" if job_id else "no import has run yet; nothing to resume"
            )
        if target.status == Status.RUNNING:  # another resume reopened it since `running()` found none
            raise ImportRunning(target.job_id)
        if target.status in RESUMABLE:
            return target
        if job_id is None:
            raise NotFound(
                f"the latest import job {target.job_id} is {target.status}, so nothing resumes by default; "
                'to resume an earlier FAILED or CANCELLED job, name it: {"jobId": "..."} '
                "(python -m app import --resume JOB_ID)"
            )
        raise Conflict(f"import job {job_id} is {target.status}; only FAILED or CANCELLED jobs resume", jobId=job_id)

    # ---- queries --------------------------------------------------------------------------------------

    async def snapshot(self, job_id: str | None = None) -> JobState | None:
        if self.current is not None and job_id in (None, self.current.state.job_id):
            return self.current.run.live()
        return await (self.store.get(job_id) if job_id else self.store.latest())

    async def files(self) -> tuple[list[ImportableFile], bool]:
        """Files under IMPORT_DIR that an import would accept, and whether the list is cut short."""
        return await asyncio.to_thread(list_files, self.settings.import_path)

    async def rejections(
        self, job_id: str | None, *, after_line: int, limit: int
    ) -> tuple[JobState, list[dict[str, Any]]]:
        """A job (default: the latest) and one page of its rejected rows, by line."""
        state = await self.snapshot(job_id)
        if state is None:
            raise NotFound(f"import job {job_id!r} does not exist" if job_id else "no import has run yet")
        return state, await self.store.rejections(state.job_id, after_line=after_line, limit=limit)

    async def history(
        self, *, limit: int, page: int | None = None, before: dt.datetime | None = None
    ) -> tuple[list[JobState], int]:
        return await recent_jobs(self.store, limit=limit, page=page, before=before)

    async def preview(self, request: ImportRequest, limit: int) -> ImportPreview:
        """What `start(request)` would read and store, from the start of the file; no job, no write. At most
        PREVIEWS_AT_ONCE run at once (each reads up to a few MiB and parses in the worker pool): 503 beyond."""
        path = resolve(request.file_path, self.settings.import_path, self.settings.csv_file_path)
        if self._previews.locked():
            raise Unavailable(f"{PREVIEWS_AT_ONCE} previews are being read; retry in a moment", retry_after=1)
        async with self._previews:
            with readable(path):
                return await preview(
                    path,
                    request,
                    limit=limit,
                    max_record=self.settings.import_max_record_bytes,
                    pool=self.pool,
                    customers=self.db[CUSTOMERS],
                )

    def worker_pids(self) -> list[int]:
        """Pids of the live parser processes (for memory metrics)."""
        processes = getattr(self.pool, "_processes", None) or {}
        return list(processes)

    # ---- internals ------------------------------------------------------------------------------------

    async def _read_header(self, path: Path, wanted: CsvFormat) -> tuple[CsvFormat, ColumnMap, int, int]:
        """The format (detected where `wanted` says auto) and the header; a resumed job passes its stored format."""
        with readable(path):
            fmt, header, columns = await read_format(path, wanted, self.settings.import_max_record_bytes)
        return fmt, columns, header.end, header.lines

    async def _check_unchanged(self, state: JobState, path: Path) -> None:
        try:
            identity = await file_identity(path)
        except OSError as exc:
            raise ImportFileError(f"{path.name} cannot be read ({exc.strerror})") from None
        if identity != state.file_identity:
            raise ImportFileError(
                f"{path.name} changed since job {state.job_id} started; it cannot be resumed", jobId=state.job_id
            )

    def make_sink(self, state: JobState) -> Sink | DrySink:
        """Where a job's batches go (tests wrap it to hold writes back)."""
        if state.dry_run:
            return DrySink()
        return Sink(
            self.db[CUSTOMERS],
            job_id=state.job_id,
            retry_seconds=self.settings.import_retry_seconds,
            writers=self.settings.import_writers,
            mode=Mode(state.mode),
        )

    def _launch(self, state: JobState, path: Path, columns: ColumnMap) -> None:
        sink = self.make_sink(state)
        run = ImportRun(
            state,
            path,
            columns,
            store=self.store,
            sink=sink,
            pool=self.pool,
            settings=self.settings,
            control=Control.new(),
            warm=functools.partial(self.store.warmup.ready, None) if self.store.warmup is not None else None,
        )
        task = detached(self._supervise(run), name=f"import-{state.job_id}")
        self.current = Running(run, task)

    async def _supervise(self, run: ImportRun) -> None:
        try:
            status = await run.run()
            s = run.state
            counts = ", ".join(f"{getattr(s, name)} {name.removeprefix('rows_')}" for name in NAMES)
            log.info("import %s ended %s: %d rows (%s)", s.job_id, status, s.rows_processed, counts)
        except Exception:
            log.exception("import %s stopped; another instance (or the next start) takes it over", run.state.job_id)
        finally:
            if self.current is not None and self.current.run is run:  # not a job started since this one's end
                self.current = None

    async def take_over(self) -> JobState | None:
        """Adopt a RUNNING job whose owner's lease expired; resume it, or fail it if its file changed."""
        if self.current is not None:
            return None
        state = await self.store.take_over(self.instance_id, dt.timedelta(seconds=self.settings.import_lease_seconds))
        if state is None:
            return None
        path = Path(state.file_path)
        try:
            _, columns, _, _ = await self._read_header(path, state.csv)
            await self._check_unchanged(state, path)
        except ImportFileError as exc:
            await self.store.finish(state, Status.FAILED, exc.detail)
            return state
        log.info("took over import %s at byte %d (attempt %d)", state.job_id, state.bytes_read, state.attempts)
        self._launch(state, path, columns)
        return state

    async def watch(self) -> None:
        """Check now and every few seconds for an orphaned RUNNING job."""
        interval = max(1.0, self.settings.import_lease_seconds / 3)
        while True:
            try:
                await self.take_over()
            except Exception as exc:  # the database may be down; try again later
                log.warning("takeover check failed: %s", exc)
            if (task := asyncio.current_task()) and task.cancelling():
                return  # PyMongo swallowed our cancel (asyncio.wait_for in server selection, Python 3.11)
            await asyncio.sleep(interval)

    async def open(self) -> None:
        """Start the parser processes, then watch for orphaned jobs (the first check runs at once)."""
        await warm_up(self.pool, self.settings.import_workers)
        self._watcher = asyncio.create_task(self.watch(), name="import-watcher")

    async def close(self) -> None:
        """Graceful stop: the running job checkpoints and releases its lease; the next start continues it."""
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        if self.current is not None:
            self.current.control.request_shutdown()
            task = self.current.task
            try:
                async with asyncio.timeout(20):
                    await asyncio.shield(task)
            except TimeoutError:
                task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)
        # and, off the event loop, wait for the pool's manager thread to end (at most a block's parse): left to
        # interpreter exit, concurrent.futures' atexit hook races it (Python 3.11: "Exception ignored ... Bad file
        # descriptor" after a CLI import, once in about ten suite runs)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.to_thread(self.pool.shutdown, wait=True), 10)
