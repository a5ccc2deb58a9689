"""Plain data passed between the import stages (picklable; no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import msgspec


class Mode(StrEnum):
    INSERT = "insert"  # new ids are written, an id already stored is a skipped duplicate
    UPSERT = "upsert"  # re-sync: new ids inserted, changed ones updated, hand-edited ones never touched


class Status(StrEnum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


class CsvFormat(msgspec.Struct, rename="camel", frozen=True):
    """How a file is read: given or detected when the job starts, stored with it, honoured on resume.

    Gzip and UTF-16 files are "streamed": decoded in one place (to UTF-8 for UTF-16), so their watermark is an
    offset in the decoded stream (`streamOffset`), and resuming decodes the file again from its start up to it.
    """

    delimiter: str = ","
    encoding: str = "utf-8"  # utf-8 | cp1252 | latin-1 | utf-16
    quote: str = '"'
    line_ending: str = "LF"  # LF | CRLF | CR (LF and CRLF are read alike)
    compression: str | None = None  # gzip
    columns: dict[str, str] = {}  # header name -> field, over the names recognised by themselves

    @property
    def streamed(self) -> bool:
        return self.compression is not None or self.encoding == "utf-16"

    @property
    def newline(self) -> bytes:
        return b"\r" if self.line_ending == "CR" else b"\n"


@dataclass(frozen=True, slots=True)
class ColumnMap:
    """What the header says: the field each CSV column feeds (None = ignored) and what was ignored."""

    fields: tuple[str | None, ...]
    ignored: tuple[str, ...]

    @property
    def width(self) -> int:
        return len(self.fields)

    @property
    def mapped(self) -> list[tuple[int, str]]:
        """(column index, field) for the columns that feed a field: the parser's inner loop."""
        return [(index, name) for index, name in enumerate(self.fields) if name is not None]


@dataclass(frozen=True, slots=True)
class ParseSpec:
    """Everything a worker needs besides the bytes; sent with every block (small)."""

    columns: ColumnMap
    job_id: str
    batch_size: int
    max_record_bytes: int
    reject_text_chars: int = 1000
    dry_run: bool = False
    mode: Mode = Mode.INSERT
    delimiter: str = ","
    quote: str = '"'
    encoding: str = "utf-8"  # the codec of the bytes the worker gets (UTF-16 arrives transcoded to UTF-8)
    label: str = "UTF-8"  # the file's encoding, as rejections name it
    cr_newlines: bool = False  # records end with a lone CR


def parse_spec(
    fmt: CsvFormat,
    columns: ColumnMap,
    *,
    job_id: str,
    batch_size: int,
    max_record_bytes: int,
    dry_run: bool = False,
    mode: Mode = Mode.INSERT,
) -> ParseSpec:
    """How a worker parses a file read as `fmt`: the one place an import and a preview build it."""
    return ParseSpec(
        columns,
        job_id,
        batch_size,
        max_record_bytes,
        dry_run=dry_run,
        mode=mode,
        delimiter=fmt.delimiter,
        quote=fmt.quote,
        encoding="utf-8" if fmt.encoding == "utf-16" else fmt.encoding,  # UTF-16 arrives as UTF-8
        label=fmt.encoding.upper(),
        cr_newlines=fmt.line_ending == "CR",
    )


@dataclass(frozen=True, slots=True)
class Block:
    """Complete records from byte offset `start` (physical line `first_line`, 1-based) up to `end`."""

    index: int
    start: int
    end: int
    first_line: int
    lines: int  # newlines in data
    data: bytes
    file_end: int | None = None  # streamed files: bytes of the file read when this block was cut (for percent)


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int
    reason: str
    text: str


@dataclass(slots=True)
class Batch:
    """One bulk write, encoded, with the id and source line of each row (a dry run: no docs).

    Insert mode: `docs` are whole documents. Upsert mode: `docs` are update documents and `hashes` the digests
    of the rows' values (`importHash`), one per row."""

    docs: list[bytes]
    ids: list[str]
    lines: list[int]
    hashes: list[str] = field(default_factory=list)


class Counters(msgspec.Struct, kw_only=True, rename="camel"):
    """The row counters: the one list of them. A job (JobState), its snapshot (Progress), a block's outcome and a
    batch's write all carry these fields; everything else iterates them (`NAMES`). Adding a counter is one line
    here. `rows_processed` is their sum, kept by `add`."""

    rows_processed: int = 0
    rows_inserted: int = 0  # new customers (a row this job already wrote before a crash counts here too)
    rows_duplicate: int = 0  # insert mode: the id was already stored
    rows_updated: int = 0  # upsert: the CSV values changed
    rows_unchanged: int = 0  # upsert: the same values
    rows_protected: int = 0  # upsert: edited through the API (handEdited), never overwritten
    rows_invalid: int = 0  # rejected with a reason and a line

    def add(self, other: Counters) -> None:
        for name in NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.rows_processed = sum(getattr(self, name) for name in NAMES)

    def counts(self) -> dict[str, int]:
        """{attribute name: value}, rows_processed included."""
        return {name: getattr(self, name) for name in ("rows_processed", *NAMES)}


NAMES = tuple(f.name for f in msgspec.structs.fields(Counters) if f.name != "rows_processed")


def counters_of(source: Counters) -> Counters:
    """Only the counters of a struct that carries them (a JobState, a Written)."""
    return Counters(**source.counts())


class Written(Counters, kw_only=True):
    """What one batch did to `customers`; `skipped` are the rows (batch indexes) that changed nothing."""

    skipped: set[int] = msgspec.field(default_factory=set)
    # insert mode: lines of this job's rows whose stored customer an earlier row of the same id replaced (the
    # first row of an id wins, whichever was written first); each of them is a duplicate, not an insert
    displaced: list[int] = msgspec.field(default_factory=list)
    # (line, later): this row's replace of `later` may have been applied (its reply was lost) before an even
    # earlier row replaced this one: if this line is displaced, `later` is too
    chained: list[tuple[int, int]] = msgspec.field(default_factory=list)


@dataclass(slots=True)
class Parsed:
    """A worker's answer for one block."""

    rows: int = 0
    batches: list[Batch] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    fatal: str | None = None


@dataclass(slots=True)
class Outcome:
    """A block fully accounted: what was written and rejected. Applied to the job in block order."""

    block: Block
    counts: Counters = field(default_factory=Counters)
    rejections: list[Rejection] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    inserted_lines: set[int] = field(default_factory=set)  # insert mode: the rows counted inserted so far
