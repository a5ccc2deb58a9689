"""What an export writes (pure: no I/O): its columns, CSV and NDJSON rows from stored customers, gzip, and the
parameters that choose them (fields=, Accept-Encoding).

CSV is RFC 4180 (CRLF after each record; a field holding a comma, a quote, CR or LF is quoted, its quotes
doubled), UTF-8, with a header row of the names the importer recognises (app/imports/reading/header.py), so an
export imports again as it is. Dates are YYYY-MM-DD. Each batch becomes one piece of whole records, and a gzip
piece is flushed at its end, so what a client has received always ends at a record's end.
"""

from __future__ import annotations

import datetime as dt
import enum
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from app.errors import InvalidInput

# Field (as the API names it) -> CSV column: the importer's own names, in the order of the seed files' columns.
IMPORTED = {
    "customerId": "Customer Id",
    "firstName": "First Name",
    "lastName": "Last Name",
    "company": "Company",
    "city": "City",
    "country": "Country",
    "phone1": "Phone 1",
    "phone2": "Phone 2",
    "email": "Email",
    "subscriptionDate": "Subscription Date",
    "website": "Website",
    "about": "About Customer",
}
# The API's bookkeeping, exported when fields= names it (an import ignores these columns and sets its own).
STAMPS = {"createdAt": "Created At", "updatedAt": "Updated At", "handEdited": "Hand Edited"}
COLUMNS = {**IMPORTED, **STAMPS}
DEFAULT_FIELDS = tuple(IMPORTED)
GZIP_LEVEL = 6  # gzip's own default


class Format(enum.StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8; header=present", Format.NDJSON: "application/x-ndjson"}
GZIP_MEDIA_TYPE = "application/gzip"
Doc = Mapping[str, Any]
Convert = Callable[[Any], Any]


def parse_fields(text: str | None) -> tuple[str, ...]:
    """`fields=` (comma-separated API names) as the columns to write, in the order given; DEFAULT_FIELDS without."""
    if text is None:
        return DEFAULT_FIELDS
    names = [name.strip() for name in text.split(",")]
    if unknown := [name for name in names if name not in COLUMNS]:
        raise _bad_fields(f"{unknown[0]!r} is not an exported field (choose among {', '.join(COLUMNS)})")
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise _bad_fields(f"{repeated[0]!r} is named twice")
    return tuple(names)


def _bad_fields(message: str) -> InvalidInput:
    return InvalidInput(f"fields: {message}", errors=[{"message": message, "key": "fields", "source": "query"}])


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header accepts gzip: listed (or `*`) with a weight above 0 (RFC 9110 12.5.3)."""
    weights: dict[str, float] = {}
    for item in (accept_encoding or "").split(","):
        name, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[name.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def file_name(fmt: Format, *, gzip_file: bool, today: dt.date) -> str:
    return f"customers-{today.isoformat()}.{fmt.value}" + (".gz" if gzip_file else "")


def _day(value: Any) -> Any:
    return value.date().isoformat() if isinstance(value, dt.datetime) else value


def _stamp(value: Any) -> Any:
    """A date-time as the API writes it (msgspec's RFC 3339)."""
    return msgspec.json.encode(value).decode()[1:-1] if isinstance(value, dt.datetime) else value


# How a stored value becomes an exported one, where it is not the stored value itself.
CONVERT: dict[str, Callable[[Any], Any]] = {
    "subscriptionDate": _day,
    "createdAt": _stamp,
    "updatedAt": _stamp,
    "handEdited": bool,  # absent on imported customers: false
}
CSV_CONVERT = {**CONVERT, "handEdited": lambda value: "true" if value else "false"}  # as JSON writes it


class Columns:
    """The chosen fields, read from stored documents: `stored` names a field's stored name."""

    def __init__(self, fields: Iterable[str], stored: Callable[[str], str], convert: Mapping[str, Convert]):
        self.fields = tuple(fields)
        self.stored = [stored(field) for field in self.fields]
        self.converts = [(index, convert[field]) for index, field in enumerate(self.fields) if field in convert]

    def values(self, doc: Doc) -> list[Any]:
        row = list(map(doc.get, self.stored))
        for index, convert in self.converts:
            row[index] = convert(row[index])
        return row


def csv_field(value: Any) -> str:
    """One field by RFC 4180: quoted when it holds a comma, a quote, CR or LF, its quotes doubled; None is empty.
    (What csv.writer writes, at a fraction of its cost on long text: each test is one C-speed scan.)"""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if '"' in text:
        return '"' + text.replace('"', '""') + '"'
    if "," in text or "\n" in text or "\r" in text:
        return '"' + text + '"'
    return text


def csv_record(values: list[Any]) -> str:
    """A record's fields joined by commas; most records need no quote, which one scan of the joined line tells."""
    texts = ["" if value is None else value if type(value) is str else str(value) for value in values]
    line = ",".join(texts)
    if '"' in line or "\n" in line or "\r" in line or line.count(",") != len(texts) - 1:
        line = ",".join(map(csv_field, texts))
    return line


class CsvRows:
    """Records of the chosen columns, each ended by CRLF; None and absent fields are empty."""

    def __init__(self, fields: Iterable[str], stored: Callable[[str], str]):
        self.columns = Columns(fields, stored, CSV_CONVERT)
        self.lone = len(self.columns.fields) == 1  # a record of one empty field is "" (an empty line is no record)

    def header(self) -> bytes:
        return self._encoded([[COLUMNS[field] for field in self.columns.fields]])

    def rows(self, docs: Iterable[Doc]) -> bytes:
        return self._encoded(map(self.columns.values, docs))

    def _encoded(self, records: Iterable[list[Any]]) -> bytes:
        lines = list(map(csv_record, records))
        if self.lone:
            lines = [line or '""' for line in lines]
        return "".join(line + "\r\n" for line in lines).encode()


class NdjsonRows:
    """One JSON object per line (API names; absent fields left out, as GET /customers leaves them out)."""

    def __init__(self, fields: Iterable[str], stored: Callable[[str], str]):
        self.columns = Columns(fields, stored, CONVERT)
        self.encoder = msgspec.json.Encoder(enc_hook=str)  # a value of another BSON type (an operator's) as text

    def header(self) -> bytes:
        return b""

    def rows(self, docs: Iterable[Doc]) -> bytes:
        fields, values = self.columns.fields, self.columns.values
        items = [{f: v for f, v in zip(fields, values(doc), strict=True) if v is not None} for doc in docs]
        return self.encoder.encode_lines(items)


def rows_for(fmt: Format, fields: Iterable[str], stored: Callable[[str], str]) -> CsvRows | NdjsonRows:
    return CsvRows(fields, stored) if fmt is Format.CSV else NdjsonRows(fields, stored)


class Gzip:
    """One gzip stream; each piece is flushed (Z_SYNC_FLUSH), so what was sent decompresses to whole records."""

    def __init__(self, level: int = GZIP_LEVEL):
        self.zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip's header and trailer

    def piece(self, data: bytes) -> bytes:
        return self.zip.compress(data) + self.zip.flush(zlib.Z_SYNC_FLUSH)

    def end(self) -> bytes:
        return self.zip.flush(zlib.Z_FINISH)
