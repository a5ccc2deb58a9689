"""Reads a CSV file and cuts it into record-aligned blocks with offsets. Knows no columns.

A record ends at a newline (LF, or CR in a CR-only file) outside quoted fields, by the csv reader's rules
(app/imports/reading/quoting.py: regular expressions do the work in C, one await per block, never one per line). This
holds for every encoding read here: UTF-8, cp1252 and latin-1 spell the quote, delimiter, CR and LF as their ASCII
bytes, never inside another character; UTF-16 and gzip are decoded first, in one place (app/imports/reading/decode.py),
and the blocks are cut from the decoded (UTF-8) stream. Offsets are file offsets, or offsets in the decoded
stream for those ("streamed") files.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os

from app.imports.model import Block, CsvFormat
from app.imports.reading import dialect, quoting
from app.imports.reading.decode import GZIP_MAGIC, Decoder, InputError, read_decoded
from app.imports.reading.header import BOM

QUOTE, NEWLINE = b'"', b"\n"
PROBE_BYTES = 1 << 20  # the start of the file that auto detection reads
AUTO = "auto"


class RecordTooLarge(InputError):
    """A record grew past the limit: almost always an unterminated quote swallowing the rest of the file."""

    def __init__(self, line: int, offset: int, limit: int):
        super().__init__(
            f"the record starting at line {line} (byte offset {offset}) is longer than "
            f"IMPORT_MAX_RECORD_BYTES ({limit} bytes); an unterminated quote?"
        )
        self.line, self.offset = line, offset


class UnterminatedQuote(InputError):
    """The file ends inside a quoted field: the quote that opened it (on line `quote_line`) is never closed."""

    def __init__(self, line: int, offset: int, quote_line: int, quote_offset: int):
        super().__init__(
            f"line {quote_line}: a quote opened here (byte offset {quote_offset}) is never closed; "
            f"the rows before line {line} are imported, none from it on"
        )
        self.line, self.offset = line, offset  # where the record that holds it starts


@dataclass(frozen=True, slots=True)
class Header:
    record: bytes  # the first record, BOM stripped
    end: int  # offset where the data records start
    lines: int  # physical lines the header spans


def first_record_end(buf: bytes, quote: bytes = QUOTE, newline: bytes = NEWLINE) -> int:
    """Index just after the first newline outside quoted fields, or -1 if there is none."""
    return dialect.record_end(buf, quote, newline)


async def read_header(path: Path, max_record: int) -> Header:
    """The header of a plain UTF-8, comma, LF/CRLF file (the format every test file has)."""
    return (await inspect(path, CsvFormat(), max_record))[1]


async def inspect(path: Path, wanted: CsvFormat, max_record: int) -> tuple[CsvFormat, Header]:
    """Resolve the format (`auto` encoding, delimiter and line ending detected; gzip by its magic bytes or name)
    and read the header. Raises HeaderError, RecordTooLarge, InputError or OSError."""
    return await asyncio.to_thread(_inspect, path, wanted, max_record)


def _inspect(path: Path, wanted: CsvFormat, max_record: int) -> tuple[CsvFormat, Header]:
    size = max(PROBE_BYTES, max_record + len(BOM) + 1)
    with path.open("rb") as file:
        gzip = file.read(2) == GZIP_MAGIC or path.name.lower().endswith(".gz")
        file.seek(0)
        head = read_decoded(file, size, gzip=gzip, utf16=False)
        encoding = wanted.encoding
        if encoding == AUTO:
            probe = head[:PROBE_BYTES]
            encoding = dialect.detect_encoding(probe, complete=len(head) < size and len(probe) == len(head))
        if encoding == "utf-16":
            file.seek(0)
            head = read_decoded(file, size, gzip=gzip, utf16=True)
    skip = len(BOM) if encoding == "utf-8" and head.startswith(BOM) else 0
    body, quote = head[skip:], wanted.quote.encode()
    line_ending = wanted.line_ending
    if line_ending == AUTO:
        line_ending = dialect.detect_line_ending(body, quote)
    newline = b"\r" if line_ending == "CR" else b"\n"
    codec, delimiter = "utf-8" if encoding == "utf-16" else encoding, wanted.delimiter
    if delimiter == AUTO:
        delimiter = dialect.sniff_delimiter(dialect.first_records(body, quote, newline), codec, wanted.quote)
    # the header as the csv reader reads it with this delimiter (a quote after another delimiter is text)
    end = quoting.record_end(body, wanted.quote, newline.decode(), delimiter)
    if end > max_record or (end < 0 and len(body) > max_record):  # the header is a record like the others
        raise RecordTooLarge(1, 0, max_record)
    if end < 0:
        end = len(body)  # a file that is only a header
    record = body[:end]
    dialect.check_delimiter(record, encoding=codec, delimiter=delimiter, quote=wanted.quote)
    chosen = CsvFormat(delimiter, encoding, wanted.quote, line_ending, "gzip" if gzip else None, wanted.columns)
    return chosen, Header(record=record, end=skip + end, lines=record.count(newline))


async def _file_chunks(path: Path, start: int, size: int, limit: int | None) -> AsyncGenerator[tuple[bytes, int], None]:
    async with aiofiles.open(path, "rb") as file:
        await file.seek(start)
        pos = start
        while (want := size if limit is None else min(size, limit - pos)) > 0 and (chunk := await file.read(want)):
            pos += len(chunk)
            yield chunk, pos


async def _decoded_chunks(
    path: Path, start: int, size: int, limit: int | None, fmt: CsvFormat
) -> AsyncGenerator[tuple[bytes, int], None]:
    """The decoded stream from offset `start`: decoded again from the file's start, the first bytes dropped."""
    with path.open("rb") as file:
        decoder = Decoder(file, gzip=fmt.compression == "gzip", utf16=fmt.encoding == "utf-16", chunk=size, limit=limit)
        skip = start
        while data := await asyncio.to_thread(decoder.read):
            if skip >= len(data):
                skip -= len(data)
                continue
            data, skip = data[skip:], 0
            yield data, decoder.pos


async def read_blocks(
    path: Path,
    *,
    start: int,
    first_line: int,
    block_bytes: int,
    max_record: int,
    first_index: int = 0,
    limit: int | None = None,
    fmt: CsvFormat = CsvFormat(),  # noqa: B008 (frozen)
    tail: int | None = None,
) -> AsyncGenerator[Block, None]:
    """Blocks of complete records from offset `start` (a record boundary at physical line `first_line`), never
    reading the file past byte `limit` (its size when the job started). With `tail`, a plain file's block
    carries only its last `tail` bytes as `data` (the caller reads it again by offsets): no megabyte is copied."""
    streamed, newline = fmt.streamed, fmt.newline
    if streamed:
        chunks = _decoded_chunks(path, start, block_bytes, limit, fmt)
    else:
        chunks = _file_chunks(path, start, block_bytes, limit)
    keep = streamed or tail is None
    ends = functools.partial(
        quoting.last_record_end, quote=fmt.quote, newline=newline.decode(), separators=fmt.delimiter
    )
    carry, offset, line, index, file_end = b"", start, first_line, first_index, None
    async with contextlib.aclosing(chunks):
        async for chunk, read_to in chunks:
            file_end = read_to if streamed else None
            buf = carry + chunk if carry else chunk  # carry: the start of a record the last block could not end
            cut = ends(buf)
            if cut < 0:
                carry = buf
                if len(carry) > max_record:
                    raise RecordTooLarge(line, offset, max_record)
                continue
            lines = buf.count(newline, 0, cut)
            data = buf[:cut] if keep else buf[max(0, cut - tail) : cut]  # type: ignore[operator]
            yield Block(index, offset, offset + cut, line, lines, data, file_end)
            index, offset, line, carry = index + 1, offset + cut, line + lines, buf[cut:]
            if len(carry) > max_record:
                raise RecordTooLarge(line, offset, max_record)
    if carry:  # the last record may lack a newline, but not a closing quote
        if (opened := quoting.unclosed_quote(carry, fmt.quote, fmt.delimiter)) >= 0:
            raise UnterminatedQuote(line, offset, line + carry.count(newline, 0, opened), offset + opened)
        yield Block(index, offset, offset + len(carry), line, carry.count(newline), carry, file_end)


async def file_identity(path: Path, sample: int = 1_048_576) -> dict[str, int | str]:
    """Size, mtime and a hash of the first and last MiB: a resumed job must read the same file."""
    stat = await aiofiles.os.stat(path)
    digest = hashlib.sha256()
    async with aiofiles.open(path, "rb") as file:
        digest.update(await file.read(sample))
        await file.seek(max(0, stat.st_size - sample))
        digest.update(await file.read(sample))
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns, "sha256Ends": digest.hexdigest()}
