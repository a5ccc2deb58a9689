"""`python -m app import FILE`: the same engine and import_state rules as the API, with a progress bar."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

from app.customers.repository import migrate_customers
from app.db import ensure_indexes, make_client
from app.errors import AppError
from app.imports.model import Status
from app.imports.schemas import ImportRequest
from app.imports.schemas import Progress as Snapshot
from app.imports.service import ImportService
from app.imports.workers import warm_up
from app.settings import Settings

EXIT = {Status.COMPLETED: 0, Status.CANCELLED: 130}


def _counters(snap: Snapshot) -> str:
    text = f"{snap.rows_processed:,} rows · {snap.rate_rows_per_sec:,.0f} rows/s · inserted {snap.rows_inserted:,}"
    if snap.mode == "upsert":
        text += (
            f" · updated {snap.rows_updated:,} · unchanged {snap.rows_unchanged:,} · protected {snap.rows_protected:,}"
        )
    else:
        text += f" · duplicate {snap.rows_duplicate:,}"
    return text + f" · invalid {snap.rows_invalid:,}"


async def import_file(
    settings: Settings,
    file: Path,
    *,
    mode: str,
    batch_size: int | None,
    dry_run: bool,
    console: Console,
    options: dict[str, object] | None = None,
) -> int:
    """Run one import to its end; exit code 0 when COMPLETED. Ctrl-C cancels it (resumable). `options`: the
    request's CSV options (delimiter, encoding, quote, columns), checked as the API checks them."""
    settings = msgspec.structs.replace(settings, csv_file_path=str(file))
    errors = Console(stderr=True, soft_wrap=True)  # a reason is one line, whatever the terminal's width
    client = make_client(settings.mongodb_uri or "")
    service = ImportService(client[settings.mongodb_db], settings)
    interrupted = False

    def interrupt() -> None:
        # Installed before the job exists: a Ctrl-C between claiming the job and watching it must cancel it too.
        nonlocal interrupted
        interrupted = True
        if service.current is not None:
            service.current.control.cancel.set()

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
        try:
            body = {"mode": mode, "batchSize": batch_size, "dryRun": dry_run, **(options or {})}
            state = await service.start(msgspec.convert(body, ImportRequest))
        except msgspec.ValidationError as exc:
            errors.print(f"[red]refused:[/red] {escape(str(exc))}")
            return 2
        except AppError as exc:
            errors.print(f"[red]refused:[/red] {escape(exc.detail)}")
            return 2
        assert service.current is not None
        if interrupted:
            service.current.control.cancel.set()
        console.print(
            f"job {state.job_id}: {escape(str(file))} ({state.file_size:,} bytes)"
            f"{escape(' [dry run]') if dry_run else ''}",
            soft_wrap=True,
        )
        fmt = state.csv
        console.print(
            escape(f"read as {'gzip, ' if fmt.compression else ''}{fmt.encoding}, delimiter {fmt.delimiter!r}, ")
            + escape(f"quote {fmt.quote!r}, {fmt.line_ending} line endings"),
            soft_wrap=True,
        )
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[counters]}"),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("importing", total=state.file_size, counters="")
            while service.current is not None:
                snap = Snapshot.of(state)
                bar.update(task, completed=state.bytes_read, counters=_counters(snap))
                await asyncio.sleep(0.25)
            bar.update(
                task,
                completed=state.bytes_read if state.status != Status.COMPLETED else state.file_size,
                counters=_counters(Snapshot.of(state)),
            )
        final = Snapshot.of(state)
        console.print(f"{final.status}: {_counters(final)} in {final.elapsed_sec:,.1f}s", soft_wrap=True)
        if final.error:
            errors.print(f"[red]error:[/red] {escape(final.error)}")
        if state.status == Status.CANCELLED:
            console.print("cancelled; resume it with POST /import/resume", soft_wrap=True)
        return EXIT.get(state.status, 1)
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        await service.close()
        await client.close()
