"""Reading a file's format from its first bytes: encoding, line ending, delimiter (pure: no I/O).

`head` is the start of the decoded stream (after gzip; before UTF-16 is transcoded for `detect_encoding`).
"""

from __future__ import annotations

import csv
import io

from app.imports.reading import quoting
from app.imports.reading.header import BOM, HeaderError, read_names

ENCODINGS = ("utf-8", "cp1252", "latin-1", "utf-16")
DELIMITERS = (",", ";", "\t", "|")
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
SNIFF_RECORDS = 20


def detect_encoding(head: bytes, *, complete: bool) -> str:
    """A BOM; else UTF-8 if `head` (the first MiB, or the whole file when `complete`) is valid UTF-8; else cp1252."""
    if head.startswith(BOM):
        return "utf-8"
    if head.startswith(UTF16_BOMS):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        cut_short = not complete and exc.reason == "unexpected end of data" and exc.start >= len(head) - 3
        return "utf-8" if cut_short else "cp1252"
    return "utf-8"


def record_end(buf: bytes, quote: bytes, newline: bytes) -> int:
    """Index just after the first `newline` outside quoted fields, or -1 (app/imports/reading/quoting.py)."""
    return quoting.record_end(buf, quote.decode("latin-1"), newline.decode("latin-1"))


def detect_line_ending(head: bytes, quote: bytes) -> str:
    """LF, CRLF or CR: whichever ends the first record."""
    lf, cr = record_end(head, quote, b"\n"), record_end(head, quote, b"\r")
    if cr < 0 or 0 <= lf < cr:
        return "LF"
    return "CRLF" if lf == cr + 1 else "CR"


def first_records(head: bytes, quote: bytes, newline: bytes, count: int = SNIFF_RECORDS) -> list[bytes]:
    records: list[bytes] = []
    while head and len(records) < count and (end := record_end(head, quote, newline)) > 0:
        records.append(head[:end])
        head = head[end:]
    return records or ([head] if head else [])


def _widths(records: list[bytes], encoding: str, delimiter: str, quote: str) -> list[int]:
    text = b"".join(records).decode(encoding, "replace").replace("\r", "\n")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote)
    try:
        return [len(row) for row in reader if row]
    except csv.Error:
        return []


def sniff_delimiter(records: list[bytes], encoding: str, quote: str) -> str:
    """The candidate that splits the header into the most columns; on a tie, the one whose first rows most often
    have the header's width; then the order of DELIMITERS (so a one-column file reads with ',')."""

    def score(delimiter: str) -> tuple[int, int, int]:
        widths = _widths(records, encoding, delimiter, quote) or [1]
        return widths[0], sum(width == widths[0] for width in widths[1:]), -DELIMITERS.index(delimiter)

    return max((delimiter for delimiter in DELIMITERS if delimiter != quote), key=score)


def check_delimiter(header: bytes, *, encoding: str, delimiter: str, quote: str) -> None:
    """A header that stays one column under `delimiter` but splits under another: the delimiter is wrong."""
    if len(read_names(header, encoding=encoding, delimiter=delimiter, quote=quote)) > 1:
        return
    for other in DELIMITERS:
        if other not in (delimiter, quote) and (_widths([header], encoding, other, quote) or [1])[0] > 1:
            raise HeaderError(
                f"the header does not split under the delimiter {delimiter!r} but does under {other!r}: "
                f"pass delimiter {other!r} or 'auto'"
            )
