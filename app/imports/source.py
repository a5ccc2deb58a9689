"""Reads a CSV file with aiofiles and cuts it into record-aligned blocks with byte offsets. Knows no columns.

A record ends at a newline outside quotes. RFC 4180 escapes a quote inside a quoted field by doubling
it, so "outside quotes" is "an even number of quote bytes since the last record boundary": bytes.count
and rfind do the work in C, one await per block, never one per line.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiofiles
import aiofiles.os

from app.imports.model import Block

BOM = b"\xef\xbb\xbf"
QUOTE, NEWLINE = b'"', b"\n"


class RecordTooLarge(Exception):
    """A record grew past the limit: almost always an unterminated quote swallowing the rest of the file."""

    def __init__(self, line: int, offset: int, limit: int):
        super().__init__(
            f"the record starting at line {line} (byte offset {offset}) is longer than "
            f"IMPORT_MAX_RECORD_BYTES ({limit} bytes); an unterminated quote?"
        )
        self.line, self.offset = line, offset


@dataclass(frozen=True, slots=True)
class Header:
    record: bytes  # the first record, BOM stripped
    end: int  # byte offset where the data records start
    lines: int  # physical lines the header spans


def last_record_end(buf: bytes) -> int:
    """Index just after the last newline that is outside quotes, or -1 if there is none."""
    total = buf.count(QUOTE)
    pos, after = len(buf), 0
    while (newline := buf.rfind(NEWLINE, 0, pos)) >= 0:
        after += buf.count(QUOTE, newline, pos)
        if (total - after) % 2 == 0:
            return newline + 1
        pos = newline
    return -1


def first_record_end(buf: bytes) -> int:
    """Index just after the first newline that is outside quotes, or -1 if there is none."""
    pos, quotes = 0, 0
    while (newline := buf.find(NEWLINE, pos)) >= 0:
        quotes += buf.count(QUOTE, pos, newline)
        if quotes % 2 == 0:
            return newline + 1
        pos = newline + 1
    return -1


async def read_header(path: Path, max_record: int) -> Header:
    async with aiofiles.open(path, "rb") as file:
        head = await file.read(max_record + len(BOM) + 1)
    skip = len(BOM) if head.startswith(BOM) else 0
    end = first_record_end(head[skip:])
    if end < 0:
        if len(head) > max_record + skip:
            raise RecordTooLarge(1, 0, max_record)
        end = len(head) - skip  # a file that is only a header
    record = head[skip : skip + end]
    return Header(record=record, end=skip + end, lines=record.count(NEWLINE))


async def read_blocks(
    path: Path, *, start: int, first_line: int, block_bytes: int, max_record: int, first_index: int = 0
) -> AsyncIterator[Block]:
    """Blocks of complete records from byte `start` (a record boundary at physical line `first_line`)."""
    carry, offset, line, index = b"", start, first_line, first_index
    async with aiofiles.open(path, "rb") as file:
        await file.seek(start)
        while chunk := await file.read(block_bytes):
            buf = carry + chunk if carry else chunk
            cut = last_record_end(buf)
            if cut < 0:
                if len(buf) > max_record:
                    raise RecordTooLarge(line, offset, max_record)
                carry = buf
                continue
            data, carry = buf[:cut], buf[cut:]
            lines = data.count(NEWLINE)
            yield Block(index, offset, offset + cut, line, lines, data)
            index, offset, line = index + 1, offset + cut, line + lines
            if len(carry) > max_record:
                raise RecordTooLarge(line, offset, max_record)
    if carry:  # the last record may lack a newline
        yield Block(index, offset, offset + len(carry), line, carry.count(NEWLINE), carry)


async def file_identity(path: Path, sample: int = 1_048_576) -> dict[str, object]:
    """Size, mtime and a hash of the first and last MiB: a resumed job must read the same file."""
    stat = await aiofiles.os.stat(path)
    digest = hashlib.sha256()
    async with aiofiles.open(path, "rb") as file:
        digest.update(await file.read(sample))
        await file.seek(max(0, stat.st_size - sample))
        digest.update(await file.read(sample))
    return {"size": stat.st_size, "mtimeNs": stat.st_mtime_ns, "sha256Ends": digest.hexdigest()}
