"""Pure parsing: header -> ColumnMap, block bytes -> encoded documents + rejections.

Runs in worker processes: top-level functions, stdlib csv and bson only (no asyncio, no client, no settings).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
from collections.abc import Iterator

import bson

from app.customers import rules
from app.customers.document import KEY_SOURCES, index_keys, is_email
from app.customers.rules import ABOUT_MAX_CHARS, ID_MAX_CHARS, TEXT_MAX_CHARS
from app.imports.model import Batch, ColumnMap, Mode, Parsed, ParseSpec, Rejection

# Normalised header name -> document field. Names match ignoring case, spaces, '_' and '-'.
KNOWN_COLUMNS = {
    "customerid": "customerId",
    "firstname": "firstName",
    "lastname": "lastName",
    "company": "company",
    "city": "city",
    "country": "country",
    "phone1": "phone1",
    "phone2": "phone2",
    "email": "email",
    "subscriptiondate": "subscriptionDate",
    "website": "website",
    "about": "about",
    "aboutcustomer": "about",
}
SKIPPED_COLUMNS = {"index"}
BOM = b"\xef\xbb\xbf"
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


class HeaderError(ValueError):
    """The header cannot drive an import (no customer id column, unreadable)."""


def normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in " _-")


def read_names(header: bytes, *, encoding: str = "utf-8", delimiter: str = ",", quote: str = '"') -> list[str]:
    """The first record's column names."""
    try:
        text = header.removeprefix(BOM).decode(encoding)
        return next(csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter, quotechar=quote))
    except (UnicodeDecodeError, csv.Error, StopIteration) as exc:
        raise HeaderError(f"the header line cannot be read as {encoding}: {exc}") from None


def map_header(
    header: bytes,
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    quote: str = '"',
    columns: dict[str, str] | None = None,
) -> ColumnMap:
    """The first record -> which field each column feeds. `columns` maps header names (as written, trimmed)
    to fields and wins over the names recognised by themselves."""
    names = read_names(header, encoding=encoding, delimiter=delimiter, quote=quote)
    columns = columns or {}
    if missing := [name for name in columns if name not in {name.strip() for name in names}]:
        raise HeaderError(f"columns names {missing!r}, which the header does not have (found {names!r})")
    chosen = [columns.get(name.strip()) or KNOWN_COLUMNS.get(normalise(name)) for name in names]
    fields: list[str | None] = []
    ignored: list[str] = []
    for name, field in zip(names, chosen, strict=True):
        mapped = name.strip() in columns
        if field is None or field in fields or (not mapped and field in columns.values()):
            if mapped or normalise(name) not in SKIPPED_COLUMNS:
                ignored.append(name.strip())
            field = None
        fields.append(field)
    if "customerId" not in fields:
        raise HeaderError(
            f"the header has no customer id column (expected e.g. 'Customer Id', or map one with columns; "
            f"found {names!r})"
        )
    return ColumnMap(fields=tuple(fields), ignored=tuple(ignored))


def parse_date(value: str, cache: dict[str, dt.datetime | None]) -> dt.datetime | None:
    """YYYY-MM-DD that is a real calendar date -> UTC midnight, else None."""
    if value in cache:
        return cache[value]
    match = _DATE.fullmatch(value)
    result = None
    if match:
        try:
            result = dt.datetime(*map(int, match.groups()), tzinfo=dt.UTC)
        except ValueError:
            result = None
    if len(cache) < 100_000:
        cache[value] = result
    return result


def content_hash(values: dict[str, str]) -> str:
    """A digest of a row's CSV values (field -> stripped text): the same values give the same digest.

    Stored as `importHash`; an upsert's filter `importHash != digest` is how "the CSV values differ" is asked
    with a single indexed clause next to `_id` (SecantusDB plans a top-level $or as a collection scan)."""
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

    def run(self) -> Parsed:
        csv.field_size_limit(self.spec.max_record_bytes + 1)
        lines = self._physical_lines()
        reader = csv.reader(lines, strict=True, delimiter=self.spec.delimiter, quotechar=self.spec.quote)
        limit = self.spec.max_record_bytes
        end = skipped = 0  # skipped: lines read past the reader to finish malformed records
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
                # The reader goes on at the next line, which may be inside this record's quotes: its tail would
                # be read as records. Skip to where quotes balance, the record end the source cuts blocks at.
                quote = self.spec.quote
                quotes = sum(line.count(quote) for line in self.physical(start, end))
                while quotes % 2 and (line := next(lines, None)) is not None:
                    quotes += line.count(quote)
                    skipped += 1
                    end += 1
                self.reject(start, end, f"malformed CSV: {exc}")
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
        plain_id = customer_id.isalnum() and len(customer_id) <= ID_MAX_CHARS
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
        """Filter + update of one row. The filter matches a stored customer only when it was not edited through
        the API and its CSV values differ; when it does not match, the upsert's insert of the same _id fails
        with E11000, which the sink classifies as unchanged or protected. Fields of the file's columns that
        are empty in this row are removed; fields of columns the file does not have are left alone."""
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
        self.batch.filters.append(
            bson.encode({"_id": customer_id, "handEdited": {"$ne": True}, "importHash": {"$ne": digest}})
        )

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
