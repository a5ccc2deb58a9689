"""Pure parsing: block bytes -> encoded documents + rejections (the header: app/imports/reading/header.py).

Runs in worker processes: top-level functions, stdlib csv and bson only (no asyncio, no client, no settings).
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import hashlib
import itertools
import os
import re
from collections.abc import Iterator, Mapping

import bson

from app.customers import rules
from app.customers.document import KEY_SOURCES, index_keys, is_email
from app.customers.rules import ABOUT_MAX_CHARS, ID_MAX_CHARS, RESERVED_IDS, TEXT_MAX_CHARS
from app.imports.model import Batch, Mode, Parsed, ParseSpec, Rejection
from app.imports.reading import quoting

_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)  # \d alone matches any Unicode digit
_SURROGATE = re.compile("[\udc80-\udcff]")
_UNSEEN = dt.datetime.min  # not a date any row can give: "not in the cache"
# Bytes that decode to a control character (rules.CONTROL), per encoding: one C-speed pass per block finds the
# rare block that needs a per-field look. UTF-8 spells C1 controls as \xc2\x80-\xc2\x9f, checked apart.
_C0 = {*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F}
NOT_CONTROL = {  # translate(None, these) keeps only the control bytes: the fastest pass measured (no output)
    encoding: bytes(byte for byte in range(256) if byte not in control)
    for encoding, control in (("utf-8", _C0), ("cp1252", _C0), ("latin-1", _C0 | set(range(0x80, 0xA0))))
}
_C1_UTF8 = re.compile(b"\xc2[\x80-\x9f]")


def parse_date(value: str, cache: dict[str, dt.datetime | None]) -> dt.datetime | None:
    """YYYY-MM-DD that is a real calendar date -> UTC midnight, else None."""
    if value in cache:
        return cache[value]
    match = _DATE.fullmatch(value)
    result = None
    if match:
        try:
            year, month, day = map(int, match.groups())
            result = dt.datetime(year, month, day, tzinfo=dt.UTC)
        except ValueError:
            result = None
    if len(cache) < 100_000:
        cache[value] = result
    return result


def content_hash(values: Mapping[str, object]) -> str:
    """A digest of a row's CSV values (field -> stripped text): the same values give the same digest.

    Stored as `importHash`; a re-sync compares it with the stored one to find the rows whose values changed."""
    text = "\x1f".join(f"{name}\x1e{values[name]}" for name in sorted(values))
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


class _BlockParser:
    """State for one block; `run` is the hot loop."""

    def __init__(self, data: bytes, first_line: int, spec: ParseSpec):
        self.spec = spec
        self.first_line = first_line
        self.newline = "\r" if spec.cr_newlines else "\n"  # what ends a physical line (CR-only files: CR)
        try:
            self.text, self.bad_text = data.decode(spec.encoding), False
        except UnicodeDecodeError:
            self.text, self.bad_text = data.decode(spec.encoding, "surrogateescape"), True
        # True in the rare block holding a control character: only then is each field looked at for one
        self.control = bool(data.translate(None, NOT_CONTROL[spec.encoding])) or (
            spec.encoding == "utf-8" and b"\xc2" in data and _C1_UTF8.search(data) is not None
        )
        self._lines: list[str] | None = None
        self._starts: list[int] | None = None  # where each physical line starts (only after a malformed record)
        self.out = Parsed()
        self.width = spec.columns.width
        fields = spec.columns.fields
        self.id_column = fields.index("customerId")
        # the one column that may be long (about); rows whose other fields total under TEXT_MAX need no look
        self.long_column = fields.index("about") if "about" in fields else self.id_column
        self.email_column = fields.index("email") if "email" in fields else None
        self.date_column = fields.index("subscriptionDate") if "subscriptionDate" in fields else None
        self.values = [(index, name) for index, name in spec.columns.mapped if name != "customerId"]
        self.file_fields = [name for _, name in self.values]
        # The keys a re-sync may remove: those derived from a column the file has (the others are left alone).
        self.file_keys = [key for key, sources in KEY_SOURCES.items() if set(sources) & set(self.file_fields)]
        self.now = dt.datetime.now(dt.UTC)
        self.dates: dict[str, dt.datetime | None] = {}
        self.batch = Batch([], [], [], [])
        self.dry_run, self.batch_size = spec.dry_run, spec.batch_size

    def physical(self, start: int, end: int) -> list[str]:
        """Physical lines start..end of the block (relative, 1-based)."""
        if self._lines is None:
            self._lines = self.text.split(self.newline)
        return self._lines[start - 1 : end]

    def _physical_lines(self) -> Iterator[str]:
        """The block's physical lines, each with its newline, for the csv reader (a split is faster than iterating
        a StringIO, which also turns every LF into a CR when lines end with CR)."""
        self._lines = parts = self.text.split(self.newline)
        newline = self.newline
        lines = [line + newline for line in parts[:-1]]
        if parts[-1]:
            lines.append(parts[-1])
        return iter(lines)

    def raw(self, start: int, end: int) -> str:
        """The record's text (physical lines start..end, relative), truncated; bad bytes shown escaped."""
        text = self.newline.join(self.physical(start, end)).rstrip("\r\n")
        text = text[: self.spec.reject_text_chars]
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")

    def reject(self, start: int, end: int, reason: str) -> None:
        self.out.rows += 1
        self.out.rejections.append(Rejection(self.first_line + start - 1, reason, self.raw(start, end)))

    def _record_after_error(self, start: int, taken_to: int, lines: Iterator[str]) -> tuple[int, list[str]]:
        """The last line of a malformed record by the rules the source cuts blocks by (reading/quoting.py), and
        the lines the reader took past it, to be read again: the reader stops where the error is, which may be
        inside the record's quoted field (its tail must not be read as rows) or past a broken opening quote (the
        next line must be, after all). One match over the block's text from the record's start: linear."""
        starts = self._line_starts()
        spec, newline, count = self.spec, self.newline, len(starts) - 1  # physical lines in the block
        cut = quoting.record_end(self.text, spec.quote, newline, spec.delimiter, pos=starts[start - 1])
        last = count if cut < 0 else min(count, bisect.bisect_left(starts, cut))
        if last >= taken_to:
            for _ in range(last - taken_to):
                next(lines, None)
            return last, []
        return last, [line + newline for line in self.physical(last + 1, taken_to)]

    def _line_starts(self) -> list[int]:
        """Offsets in the block's text where each physical line starts, and the text's end (once per block)."""
        if self._starts is None:
            parts, step = self.text.split(self.newline) if self._lines is None else self._lines, len(self.newline)
            starts = [0]
            for part in parts:
                starts.append(starts[-1] + len(part) + step)
            if parts and parts[-1] == "":  # the text ends with a newline: no line after it
                starts.pop()
            starts[-1] = min(starts[-1], len(self.text))
            self._starts = starts
        return self._starts

    def run(self) -> Parsed:
        csv.field_size_limit(self.spec.max_record_bytes + 1)
        lines = self._physical_lines()
        reader = csv.reader(lines, strict=True, delimiter=self.spec.delimiter, quotechar=self.spec.quote)
        limit = self.spec.max_record_bytes
        end = skipped = 0  # skipped: lines before the reader's first (after a malformed record, a new reader)
        while True:
            start = end + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                end = reader.line_num + skipped
                if "field larger than field limit" in str(exc):
                    self.out.fatal = self._too_large(start)
                    return self.out
                end, again = self._record_after_error(start, end, lines)
                self.reject(start, end, f"malformed CSV: {_plain(exc)}")
                lines = itertools.chain(again, lines)  # a new reader from the line after the record
                reader = csv.reader(lines, strict=True, delimiter=self.spec.delimiter, quotechar=self.spec.quote)
                skipped = end
                continue
            end = reader.line_num + skipped
            chars = sum(map(len, row))
            if (chars + len(row)) * 4 > limit and self._too_long(row):
                self.out.fatal = self._too_large(start)
                return self.out
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank lines are not rows
            self.row(row, start, end, chars)
        self.flush()
        return self.out

    def _too_long(self, row: list[str]) -> bool:
        """Fields and commas over the max in UTF-8 bytes (the csv field limit only catches one long field); the
        caller asks only when characters x 4 (the most bytes a character takes) are over it."""
        return len(",".join(row).encode("utf-8", "surrogateescape")) > self.spec.max_record_bytes

    def _too_large(self, start: int) -> str:
        return (
            f"record at line {self.first_line + start - 1} exceeds IMPORT_MAX_RECORD_BYTES "
            f"({self.spec.max_record_bytes} bytes); an unterminated quote?"
        )

    def row(self, row: list[str], start: int, end: int, chars: int) -> None:
        """Validate against app.customers.rules (the API's rules) plus email and date; build the document only
        for a real import (a dry run validates the same way and builds nothing). `chars`: the row's length."""
        if len(row) != self.width:
            return self.reject(start, end, f"expected {self.width} fields, found {len(row)}")
        if self.bad_text and any(_SURROGATE.search(value) for value in row):
            return self.reject(start, end, f"not valid {self.spec.label}")
        customer_id = row[self.id_column].strip()
        # isalnum and the total length are the common case's cheap answers; the rules decide the rest
        plain_id = customer_id.isalnum() and len(customer_id) <= ID_MAX_CHARS and customer_id not in RESERVED_IDS
        if not plain_id and (problem := rules.id_problem(customer_id)):
            return self.reject(start, end, problem)
        long = chars > ABOUT_MAX_CHARS or chars - len(row[self.long_column]) > TEXT_MAX_CHARS
        if (self.control or long) and (problem := self.field_problem(row)):
            return self.reject(start, end, problem)
        if self.email_column is not None and (email := row[self.email_column].strip()) and not is_email(email):
            return self.reject(start, end, f"invalid email {email[:100]!r}")
        parsed = None
        if self.date_column is not None and (date := row[self.date_column].strip()):
            parsed = self.dates.get(date, _UNSEEN)
            if parsed is _UNSEEN:
                parsed = parse_date(date, self.dates)
            if parsed is None:
                return self.reject(start, end, f"invalid subscription date {date[:40]!r} (expected YYYY-MM-DD)")
        line = self.first_line + start - 1
        batch = self.batch  # its rows are counted when it is flushed
        batch.ids.append(customer_id)
        batch.lines.append(line)
        if not self.dry_run:  # a dry run validates but builds no documents
            doc: dict[str, object] = {name: value for index, name in self.values if (value := row[index].strip())}
            digest = content_hash(doc)  # of the CSV text, before the date becomes a datetime
            if parsed is not None:
                doc["subscriptionDate"] = parsed
            if self.spec.mode is Mode.UPSERT:
                self.upsert(customer_id, doc, digest, line)
            else:
                self.insert(customer_id, doc, digest, line)
        if len(batch.ids) >= self.batch_size:
            self.flush()
        return None

    def field_problem(self, row: list[str]) -> str | None:
        for index, name in self.values:
            if problem := rules.text_problem(name, row[index].strip()):
                return problem
        return None

    def insert(self, customer_id: str, doc: dict[str, object], digest: str, line: int) -> None:
        doc = {
            "_id": customer_id,
            **doc,
            **index_keys(doc),
            "createdAt": self.now,
            "updatedAt": self.now,
            "importJobId": self.spec.job_id,
            "importLine": line,
            "importHash": digest,
        }
        self.batch.docs.append(bson.encode(doc))

    def upsert(self, customer_id: str, doc: dict[str, object], digest: str, line: int) -> None:
        """The update that re-syncs one customer, and its digest: the sink reads the stored customers first and
        writes only new and changed ones (app/imports/run/sink.py). Fields of the file's columns that are empty in
        this row are removed; fields of columns the file does not have are left alone."""
        keys = index_keys(doc)
        to_set = {
            **doc,
            **keys,
            "updatedAt": self.now,
            "importHash": digest,
            "lastImport": {"jobId": self.spec.job_id, "line": line},
        }
        to_unset = {name: "" for name in (*self.file_fields, *self.file_keys) if name not in doc and name not in keys}
        update: dict[str, object] = {
            "$set": to_set,
            "$setOnInsert": {"createdAt": self.now, "importJobId": self.spec.job_id, "importLine": line},
        }
        if to_unset:
            update["$unset"] = to_unset
        self.batch.docs.append(bson.encode(update))
        self.batch.hashes.append(digest)

    def flush(self) -> None:
        if self.batch.ids:
            self.out.rows += len(self.batch.ids)
            self.out.batches.append(self.batch)
            self.batch = Batch([], [], [], [])


def warm_up() -> int:
    """Run once per worker at pool start, so the first block does not pay for process start and imports."""
    return os.getpid()


def parse_block(data: bytes, first_line: int, spec: ParseSpec) -> Parsed:
    """Complete CSV records -> BSON documents in batches, plus every rejected row with its line."""
    return _BlockParser(data, first_line, spec).run()


def _plain(error: csv.Error) -> str:
    """The csv module's message, in plain words where it speaks of its own API."""
    if "new-line character seen in unquoted field" in str(error):
        return "a line break inside an unquoted field (the file mixes CR-only line endings with LF ones)"
    return str(error)
