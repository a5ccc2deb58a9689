"""`python -m app preview FILE`: POST /import/preview's answer for a file, printed as tables (the same service call,
the same database; nothing is written). Every value from the file is printed as text, never as console markup."""

from __future__ import annotations

from pathlib import Path

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from app.db import make_client
from app.errors import AppError
from app.imports.schemas import ImportPreview, ImportRequest
from app.imports.service import ImportService
from app.settings import Settings

RAW_CHARS = 80  # of an invalid row's raw text


async def preview_file(
    settings: Settings, file: Path, *, request: dict[str, object], limit: int, console: Console
) -> int:
    """Print the preview of `file` read with `request` (the fields of a POST /import/sync body); 0, or 2 when
    refused (the reason printed, as the API's 400 says it)."""
    settings = msgspec.structs.replace(settings, csv_file_path=str(file))
    errors = Console(stderr=True, soft_wrap=True)
    client = make_client(settings.mongodb_uri or "")
    service = ImportService(client[settings.mongodb_db], settings)
    try:
        shown = await service.preview(msgspec.convert(request, ImportRequest), limit)
    except msgspec.ValidationError as exc:
        errors.print(f"[red]refused:[/red] {escape(str(exc))}")
        return 2
    except AppError as exc:
        errors.print(f"[red]refused:[/red] {escape(exc.detail)}")
        return 2
    finally:
        await service.close()
        await client.close()
    print_preview(shown, console)
    return 0


def print_preview(shown: ImportPreview, console: Console) -> None:
    """The file and format line, the columns table, the rows table."""
    rows = f"{shown.rows_estimate:,} rows" if shown.rows_estimate_exact else f"about {shown.rows_estimate:,} rows"
    console.print(
        Text(f"{shown.file_path}: {shown.file_size:,} bytes, {rows} (from the first {shown.bytes_read:,} bytes)"),
        soft_wrap=True,
    )
    console.print(Text(f"read as {format_line(shown)}"), soft_wrap=True)
    columns = Table("column", "field", "why", title="Columns", title_justify="left")
    for column in shown.columns:
        columns.add_row(Text(column.name), Text(column.field or "ignored"), Text(column.reason))
    console.print(columns)
    console.print(rows_table(shown))


def format_line(shown: ImportPreview) -> str:
    fmt, how = shown.csv, shown.decided
    packed = "gzip" if fmt.compression else "not compressed"
    return (
        f"{fmt.encoding} ({how.encoding}), delimiter {fmt.delimiter!r} ({how.delimiter}), quote {fmt.quote!r} "
        f"({how.quote}), {fmt.line_ending} line endings ({how.line_ending}), {packed} ({how.compression})"
    )


def rows_table(shown: ImportPreview) -> Table:
    """One row per line: what the import would do, the fields it would store, or why the row is invalid."""
    fields = list(dict.fromkeys(column.field for column in shown.columns if column.field))
    table = Table("line", "outcome", *fields, "problem", title=f"First {len(shown.rows)} rows", title_justify="left")
    for row in shown.rows:
        if row.customer is None:
            raw = row.text or ""
            problem = f"{row.reason}: {raw[:RAW_CHARS]}{'…' if len(raw) > RAW_CHARS else ''}"
            table.add_row(f"{row.line:,}", "invalid", *("" for _ in fields), Text(problem))
        else:
            cells = [Text(row.customer.get(name, "")) for name in fields]
            table.add_row(f"{row.line:,}", Text(row.outcome or ""), *cells, "")
    return table
