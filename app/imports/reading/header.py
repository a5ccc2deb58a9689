"""Pure: the header record -> which field each column feeds (ColumnMap). Runs in the app and in tests; stdlib only."""

from __future__ import annotations

import csv
import io

from app.imports.model import ColumnMap

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
# A header of more columns is refused: a 1 MiB header of commas has a million, which took seconds of the event loop
# to map and made a preview answer of 44 MB. A customer file has a dozen or so.
MAX_COLUMNS = 1000
IGNORE = "ignore"  # a `columns` target: the column feeds no field, even when its name is recognised
BOM = b"\xef\xbb\xbf"  # UTF-8's, stripped from a header


class HeaderError(ValueError):
    """The header cannot drive an import (no customer id column, unreadable)."""


class Unmapped(HeaderError):
    """The columns need a mapping; `names` and `fields` say what each column would feed (so a client can map one)."""

    def __init__(self, message: str, names: list[str], fields: list[str | None]):
        super().__init__(message)
        self.names, self.fields = names, fields


class NoIdColumn(Unmapped):
    """No column feeds customerId."""


class TwoColumns(Unmapped):
    """Two columns feed one field, and `columns` does not say which one is meant."""


def normalise(name: str) -> str:
    return "".join(ch for ch in name.strip().lower() if ch not in " _-")


def read_names(header: bytes, *, encoding: str = "utf-8", delimiter: str = ",", quote: str = '"') -> list[str]:
    """The first record's column names."""
    try:
        text = header.removeprefix(BOM).decode(encoding)
        return next(csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter, quotechar=quote))
    except StopIteration:  # no record at all (its message was empty: "cannot be read as utf-8: ")
        raise HeaderError("the file is empty: it has no header line") from None
    except (UnicodeDecodeError, csv.Error) as exc:
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
    to fields (or IGNORE) and wins over the names recognised by themselves."""
    names = read_names(header, encoding=encoding, delimiter=delimiter, quote=quote)
    if len(names) > MAX_COLUMNS:
        raise HeaderError(f"the header has {len(names):,} columns; an import reads at most {MAX_COLUMNS:,}")
    columns = columns or {}
    if missing := [name for name in columns if name not in {name.strip() for name in names}]:
        raise HeaderError(f"columns names {missing!r}, which the header does not have (found {names!r})")
    chosen = [_target(name.strip(), columns) for name in names]
    fields: list[str | None] = []
    ignored: list[str] = []
    twice: str | None = None  # the first field two columns feed
    for name, field in zip(names, chosen, strict=True):
        mapped = name.strip() in columns
        if field is not None and not mapped and field in columns.values():
            field = None  # `columns` names another column for this field: the mapping wins
        if field is not None and field in fields and twice is None:  # which one is meant is not ours to guess
            twice = f"{field}: {names[fields.index(field)].strip()!r} and {name.strip()!r}"
        if field is None and (mapped or normalise(name) not in SKIPPED_COLUMNS):
            ignored.append(name.strip())
        fields.append(field)
    if twice is not None:
        message = f"the header has two columns for {twice}; remove one, or name the one to use with columns"
        raise TwoColumns(message, names, fields)
    if "customerId" not in fields:
        raise NoIdColumn(
            f"the header has no customer id column (expected e.g. 'Customer Id', or map one with columns; "
            f"found {names!r})",
            names,
            fields,
        )
    return ColumnMap(fields=tuple(fields), ignored=tuple(ignored))


def _target(name: str, columns: dict[str, str]) -> str | None:
    """The field a (trimmed) header name feeds: as `columns` maps it (IGNORE: none), else as it is recognised."""
    if name in columns:
        return None if columns[name] == IGNORE else columns[name]
    return KNOWN_COLUMNS.get(normalise(name))
