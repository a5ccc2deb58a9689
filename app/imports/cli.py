"""`python -m app import FILE` and `python -m app import --resume [JOB_ID]`: the same engine and import_state
rules as the API, with a progress bar that shows the live counters and the log lines above it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from app import terminal
from app.customers.repository import migrate_customers
from app.db import ensure_indexes, make_client
from app.errors import AppError
from app.imports.job.jobs import JobState
from app.imports.model import NAMES, Status
from app.imports.reading.workers import warm_up
from app.imports.schemas import ImportRequest
from app.imports.schemas import Progress as Snapshot
from app.imports.service import ImportService
from app.settings import Settings

EXIT = {Status.COMPLETED: 0, Status.CANCELLED: 130}
LATEST = "latest"  # `--resume` without a job id


ALWAYS_SHOWN = {"rows_inserted", "rows_invalid"}  # the others when they are not 0


def _counters(snap: Snapshot) -> str:
    shown = [
        f"{name.removeprefix('rows_')} {getattr(snap, name):,}"
        for name in NAMES
        if name in ALWAYS_SHOWN or getattr(snap, name)
    ]
    return " · ".join([f"{snap.rows_processed:,} rows", f"{snap.rate_rows_per_sec:,.0f} rows/s", *shown])


class ConsoleHandler(logging.Handler):
    """A log record as one line printed by a rich console: above a live progress bar, never across it."""

    def __init__(self, console: Console, formatter: logging.Formatter | None):
        super().__init__()
        self.console = console
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), soft_wrap=True, markup=False, highlight=False)
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def logs_through(console: Console) -> Iterator[None]:
    """While the bar is drawn, log records print through its console, in the format configured at start."""
    root = logging.getLogger()
    saved = root.handlers[:]
    formatter = saved[0].formatter if saved else None
    root.handlers = [ConsoleHandler(console, formatter)]
    try:
        yield
    finally:
        root.handlers = saved


async def import_file(
    settings: Settings, file: Path | None, *, request: dict[str, object], resume: str | None, console: Console
) -> int:
    """Run one import (or resume one: `resume` is a job id or "latest") to its end; exit code 0 when COMPLETED.
    Ctrl-C cancels it (resumable). `request`: the fields of a POST /import/sync body (mode, batchSize, dryRun,
    delimiter, encoding, quote, columns), checked as the API checks them."""
    if file is not None:
        settings = msgspec.structs.replace(settings, csv_file_path=str(file))
    errors = terminal.console(errors=True)
    client = make_client(settings.mongodb_uri or "")
    service = ImportService(client[settings.mongodb_db], settings)
    interrupted = False

    def interrupt() -> None:
        # Installed before the job exists: a Ctrl-C between claiming the job and watching it must cancel it too.
        nonlocal interrupted
        if not interrupted:
            errors.print("cancelling… (the job stays resumable: python -m app import --resume)")
        interrupted = True
        if service.current is not None:
            service.current.control.request_cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        db = client[settings.mongodb_db]
        await ensure_indexes(db)
        await migrate_customers(db)
        await warm_up(service.pool, settings.import_workers)
        if interrupted:
            errors.print("interrupted before the import started")
            return EXIT[Status.CANCELLED]
        state = await _begin(service, resume, request, errors)
        if state is None:
            return 2
        assert service.current is not None
        if interrupted:
            service.current.control.request_cancel()
        _announce(state, console, resumed=resume is not None)
        await _follow(service, state, console)
        _report(state, console, errors)
        return EXIT.get(state.status, 1)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await service.close()
        await client.close()


async def _begin(
    service: ImportService, resume: str | None, body: dict[str, object], errors: Console
) -> JobState | None:
    """Start the job of `body` (the request's fields, checked as the API checks them), or resume one; None
    when refused (the reason printed)."""
    try:
        if resume is not None:
            return await service.resume(None if resume == LATEST else resume)
        return await service.start(msgspec.convert(body, ImportRequest))
    except msgspec.ValidationError as exc:
        errors.print(f"[red]refused:[/red] {escape(str(exc))}")
    except AppError as exc:
        errors.print(f"[red]refused:[/red] {escape(exc.detail)}")
    return None


def _announce(state: JobState, console: Console, *, resumed: bool) -> None:
    """The job's line (id, file, size) and the format it is read as."""
    verb = f"resumed at byte {state.bytes_read:,}" if resumed else "started"
    console.print(
        f"job {state.job_id}: {escape(state.file_path)} ({state.file_size:,} bytes) {verb}"
        f"{escape(' [dry run]') if state.dry_run else ''}",
        soft_wrap=True,
    )
    fmt = state.csv
    console.print(
        escape(f"read as {'gzip, ' if fmt.compression else ''}{fmt.encoding}, delimiter {fmt.delimiter!r}, ")
        + escape(f"quote {fmt.quote!r}, {fmt.line_ending} line endings"),
        soft_wrap=True,
    )


def _report(state: JobState, console: Console, errors: Console) -> None:
    """The line the CLI ends with (`STATUS: counters in N s`), the error, how to resume."""
    final = Snapshot.of(state)
    console.print(f"{final.status}: {_counters(final)} in {final.elapsed_sec:,.1f}s", soft_wrap=True)
    if final.error:
        errors.print(f"[red]error:[/red] {escape(final.error)}")
    if state.status == Status.CANCELLED:
        console.print(f"cancelled; resume it with: python -m app import --resume {state.job_id}", soft_wrap=True)


async def _follow(service: ImportService, state: JobState, console: Console) -> None:
    """Draw the bar (live counters, 4 times a second) until the job ends."""
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counters]}"),
            console=console,
            transient=False,
        ) as bar,
        logs_through(bar.console),
    ):
        task = bar.add_task("importing", total=state.file_size, completed=state.bytes_read, counters="")
        while service.current is not None:
            live = await service.snapshot(state.job_id) or state
            bar.update(task, completed=live.bytes_read, counters=_counters(Snapshot.of(live)))
            await asyncio.sleep(0.25)
        bar.update(
            task,
            completed=state.bytes_read if state.status != Status.COMPLETED else state.file_size,
            counters=_counters(Snapshot.of(state)),
        )
