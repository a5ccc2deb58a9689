"""`python -m app preview FILE`: POST /import/preview's answer for a file, printed as tables (the same service call,
the same database; nothing is written). Every value from the file is printed as text, never as console markup."""

from __future__ import annotations

from pathlib import Path

import msgspec
from rich.console import Console, Group
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from app import terminal
from app.db import make_client
from app.errors import AppError
from app.imports.schemas import ImportPreview, ImportRequest, PreviewRow
from app.imports.service import ImportService
from app.settings import Settings

RAW_CHARS = 80  # of an invalid row's raw text
CELL_CHARS = 120  # of a value in the rows (an About Customer runs to 100,000 characters)


async def preview_file(
    settings: Settings, file: Path, *, request: dict[str, object], limit: int, console: Console
) -> int:
    """Print the preview of `file` read with `request` (the fields of a POST /import/sync body); 0, or 2 when
    refused (the reason printed, as the API's 400 says it)."""
    settings = msgspec.structs.replace(settings, csv_file_path=str(file))
    errors = terminal.console(errors=True)
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
    table = rows_table(shown)  # one column per field; too narrow for it (a generated file at 80 characters cut every
    # value to one letter), the rows are listed field by field
    narrowest = Measurement.get(console, console.options.update_width(1 << 20), table).minimum  # unclamped
    console.print(table if narrowest <= console.width else rows_listed(shown))


def format_line(shown: ImportPreview) -> str:
    fmt, how = shown.csv, shown.decided
    packed = "gzip" if fmt.compression else "not compressed"
    return (
        f"{fmt.encoding} ({how.encoding}), delimiter {fmt.delimiter!r} ({how.delimiter}), quote {fmt.quote!r} "
        f"({how.quote}), {fmt.line_ending} line endings ({how.line_ending}), {packed} ({how.compression})"
    )


def rows_table(shown: ImportPreview) -> Table:
    """One row per line: what the import would do, the fields it would store, or why the row is invalid."""
    fields = shown_fields(shown)
    table = Table("line", "outcome", *fields, "problem", title=f"First {len(shown.rows)} rows", title_justify="left")
    for row in shown.rows:
        if row.customer is None:
            table.add_row(f"{row.line:,}", "invalid", *("" for _ in fields), Text(problem(row)))
        else:
            cells = [Text(cut(row.customer.get(name, ""), CELL_CHARS)) for name in fields]
            table.add_row(f"{row.line:,}", Text(row.outcome or ""), *cells, "")
    return table


def rows_listed(shown: ImportPreview) -> Group:
    """The rows of rows_table, each as a table of its own: a field and its value a line."""
    fields, listed = shown_fields(shown), []
    for row in shown.rows:
        table = Table(show_header=False, title=f"line {row.line:,}: {row.outcome or 'invalid'}", title_justify="left")
        customer = row.customer or {}
        for name in fields if row.customer else ():
            table.add_row(name, Text(cut(customer.get(name, ""), CELL_CHARS)))
        if row.customer is None:
            table.add_row("problem", Text(problem(row)))
        listed.append(table)
    return Group(Text(f"First {len(shown.rows)} rows"), *listed)


def shown_fields(shown: ImportPreview) -> list[str]:
    return list(dict.fromkeys(column.field for column in shown.columns if column.field))


def problem(row: PreviewRow) -> str:
    return f"{row.reason}: {cut(row.text or '', RAW_CHARS)}"


def cut(text: str, chars: int) -> str:
    return f"{text[:chars]}…" if len(text) > chars else text
