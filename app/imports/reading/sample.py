"""The start of a file read as an import reads it: its format, its header and its first rows, from a bounded prefix.

Everything goes through the import's own code: `source.inspect` (decoding, detection, the header record),
`header.map_header`, `source.read_blocks` (records cut by `quoting`) and `parse.parse_block` in the worker pool.
There is no second parser: a row shown here is the row an import of the same file with the same options reads.
No database, no writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path

import bson

from app.customers.document import FIELDS
from app.imports.model import ColumnMap, CsvFormat, Parsed, parse_spec
from app.imports.reading.decode import InputError
from app.imports.reading.header import Unmapped, map_header, read_names
from app.imports.reading.parse import parse_block
from app.imports.reading.source import PROBE_BYTES, Header, inspect, read_blocks

SAMPLE_BYTES = 1 << 20  # records read past the header at most (the rows shown and the estimate come from these)
CHUNK = 64 * 1024  # bytes read per step: a preview of 20 rows reads one or two
AUTO = "auto"


def read_bound(max_record: int, *, utf16: bool = False) -> int:
    """The most bytes a preview reads from a file: the header probe `source.inspect` reads for any import (two
    steps of up to its size), then SAMPLE_BYTES of records and one CHUNK more, or a record still open up to
    `max_record` (where it is a RecordTooLarge). These are bytes of text as the parser reads it: a UTF-16 file
    spends up to two bytes on each (and is probed twice); a gzip file fewer."""
    probe = max(PROBE_BYTES, max_record + 4)
    text = 2 * probe + SAMPLE_BYTES + CHUNK + max_record
    return 2 * (text + 2 * probe) if utf16 else text


@dataclass(frozen=True, slots=True)
class Column:
    name: str  # as the header writes it, trimmed
    field: str | None  # the customer field it feeds; None: ignored
    reason: str  # mapped (by `columns`) | recognised (by its name) | ignored


@dataclass(slots=True)
class Row:
    """A row as the import would store it (`customer`, its values' digest), or rejected (`reason`, `text`)."""

    line: int
    customer: dict[str, str] | None = None
    digest: str | None = None
    reason: str | None = None
    text: str | None = None


@dataclass(slots=True)
class Sample:
    fmt: CsvFormat
    columns: list[Column]
    rows: list[Row] = field(default_factory=list)  # the first `limit`, by line
    rows_read: int = 0  # rows in the records read (blank lines are not rows)
    sampled: int = 0  # bytes of the file those records reach to (compressed bytes for gzip)
    complete: bool = True  # the records read are the whole file
    unmapped: Unmapped | None = None  # no id column, or two for one field: no rows (`fmt` is the format detected)


async def read_format(path: Path, wanted: CsvFormat, max_record: int) -> tuple[CsvFormat, Header, ColumnMap]:
    """The format (detected where `wanted` says auto), the header record and what each column feeds. Raises
    HeaderError, InputError or OSError."""
    fmt, header = await inspect(path, wanted, max_record)
    return fmt, header, columns_of(fmt, header)


def columns_of(fmt: CsvFormat, header: Header) -> ColumnMap:
    """What each column of `header` feeds, read as `fmt`. Raises HeaderError (Unmapped: no customer id, or two
    columns for one field)."""
    return map_header(header.record, encoding=codec(fmt), delimiter=fmt.delimiter, quote=fmt.quote, columns=fmt.columns)


def codec(fmt: CsvFormat) -> str:
    return "utf-8" if fmt.encoding == "utf-16" else fmt.encoding  # UTF-16 is read transcoded to UTF-8


async def read_sample(path: Path, wanted: CsvFormat, *, limit: int, max_record: int, pool: Executor) -> Sample:
    """The format, the columns and the first `limit` rows of `path`, reading at most the header and SAMPLE_BYTES of
    records after it (plus one CHUNK, and IMPORT_MAX_RECORD_BYTES for a record that never ends: RecordTooLarge)."""
    fmt, header = await inspect(path, wanted, max_record)
    try:
        columns = columns_of(fmt, header)
    except Unmapped as exc:  # what each column would feed, so that a client can map one
        return Sample(fmt, list(explain(exc.names, exc.fields, fmt.columns)), unmapped=exc)
    names = read_names(header.record, encoding=codec(fmt), delimiter=fmt.delimiter, quote=fmt.quote)
    sample = Sample(fmt, list(explain(names, columns.fields, fmt.columns)))
    shown = parse_spec(fmt, columns, job_id="preview", batch_size=limit, max_record_bytes=max_record)
    counted = parse_spec(fmt, columns, job_id="preview", batch_size=10_000, max_record_bytes=max_record, dry_run=True)
    blocks = read_blocks(
        path, start=header.end, first_line=header.lines + 1, block_bytes=CHUNK, max_record=max_record, fmt=fmt
    )
    loop = asyncio.get_running_loop()
    async with contextlib.aclosing(blocks):
        async for block in blocks:
            spec = shown if len(sample.rows) < limit else counted  # past the rows shown, rows are only counted
            parsed = await loop.run_in_executor(pool, parse_block, block.data, block.first_line, spec)
            if parsed.fatal:
                raise InputError(parsed.fatal)
            sample.rows = (sample.rows + rows_of(parsed))[:limit] if spec is shown else sample.rows
            sample.rows_read += parsed.rows
            sample.sampled = block.file_end if block.file_end is not None else block.end
            if block.end - header.end >= SAMPLE_BYTES:
                sample.complete = False
                break
    return sample


def explain(names: list[str], fields: Sequence[str | None], mapped: Mapping[str, str]) -> Iterator[Column]:
    """Each header column, the field map_header gave it, and why."""
    for name, target in zip(names, fields, strict=True):
        name = name.strip()
        reason = "mapped" if name in mapped else "recognised" if target else "ignored"
        yield Column(name, target, reason)


def rows_of(parsed: Parsed) -> list[Row]:
    """A block's rows by line: the documents a batch would insert, and the rejections as GET /import/errors has them."""
    rows = [Row(r.line, reason=r.reason, text=r.text) for r in parsed.rejections]
    for batch in parsed.batches:
        rows += [Row(line, *stored_fields(bson.decode(doc))) for line, doc in zip(batch.lines, batch.docs, strict=True)]
    return sorted(rows, key=lambda row: row.line)


def stored_fields(doc: dict[str, object]) -> tuple[dict[str, str], str]:
    """The customer's fields as GET /customers/{id} shows them (a date as YYYY-MM-DD), and its `importHash`."""
    customer = {"customerId": str(doc["_id"])}
    for name in FIELDS[1:]:
        value = doc.get(name)
        if isinstance(value, dt.datetime):
            customer[name] = value.date().isoformat()
        elif value is not None:
            customer[name] = str(value)
    return customer, str(doc["importHash"])
