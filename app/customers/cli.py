"""`python -m app export --out FILE|-`: the API's export (the same cursor, columns and encoding: Exporter) written to
a file or to standard output, with a progress bar (rows, rate) on standard error.

A file is written under a temporary name beside it and renamed at the end, so a failed export never leaves a file
that looks complete; on standard output a failure is the exit code (1) and a line on standard error.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pymongo.errors import PyMongoError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn

from app.customers.exporter import Export, Exporter, ExportRequest
from app.customers.repository import CustomerRepository
from app.db import CUSTOMERS, make_client
from app.errors import AppError
from app.settings import Settings

STDOUT = "-"


@contextlib.contextmanager
def output(out: str) -> Iterator[BinaryIO]:
    """Standard output; what `out` names when it is not a regular file (`/dev/stdout`, a pipe: written to, never
    replaced; a folder: refused before the export); else a temporary file beside the file `out` names (through
    symlinks) that becomes it only when the block ends cleanly."""
    if out == STDOUT:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if os.path.exists(out) and not os.path.isfile(out):  # both follow symlinks (/dev/stdout to a pipe too)
        with open(out, "wb") as file:
            yield file
        return
    target = Path(os.path.realpath(out))
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        os.replace(temporary, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


async def export_customers(settings: Settings, request: ExportRequest, out: str, errors: Console) -> int:
    """Run one export to `out`; exit code 0 when complete, 1 when it failed, 2 when refused."""
    client = make_client(settings.mongodb_uri or "")
    repository = CustomerRepository(client[settings.mongodb_db][CUSTOMERS])
    exporter = Exporter(repository, max_concurrent=1, batch_size=settings.export_batch_size)
    started = time.monotonic()
    try:
        unfiltered = request.email is None and request.country is None and request.q is None
        total = await repository.collection.estimated_document_count() if unfiltered else None
        export = await exporter.open(request)
        with output(out) as file:
            await _write(export, file, total, errors)
    except AppError as exc:
        errors.print(f"[red]refused:[/red] {escape(exc.detail)}")
        return 2
    except (PyMongoError, OSError) as exc:
        errors.print(f"[red]export failed:[/red] {escape(str(exc))}")
        return 1
    finally:
        await client.close()
    seconds = max(time.monotonic() - started, 1e-6)
    where = "standard output" if out == STDOUT else out
    errors.print(
        f"exported {export.rows:,} customers ({export.sent / 1e6:,.1f} MB) to {escape(where)} in {seconds:,.1f}s "
        f"({export.rows / seconds:,.0f} rows/s)",
        soft_wrap=True,
    )
    return 0


async def _write(export: Export, file: BinaryIO, total: int | None, errors: Console) -> None:
    """Each piece to `file` as it comes, the bar showing the rows read and their rate."""
    with Progress(
        TextColumn("exporting"),
        BarColumn(),
        TextColumn("{task.completed:,.0f} rows · {task.fields[rate]} rows/s"),
        console=errors,
        transient=False,
    ) as bar:
        task = bar.add_task("export", total=total, rate="0")
        started = time.monotonic()
        async for piece in export.chunks():
            file.write(piece)
            rate = export.rows / max(time.monotonic() - started, 1e-6)
            bar.update(task, completed=export.rows, rate=f"{rate:,.0f}")
        bar.update(task, completed=export.rows, total=export.rows)
