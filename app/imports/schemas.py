"""Import API models (msgspec, camelCase on the wire)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from app.imports.files import ImportableFile
from app.imports.job.jobs import JobState
from app.imports.model import Counters, CsvFormat, Mode, Status
from app.imports.reading.header import IGNORE

Field = Literal[
    "customerId",
    "firstName",
    "lastName",
    "company",
    "city",
    "country",
    "phone1",
    "phone2",
    "email",
    "subscriptionDate",
    "website",
    "about",
    "ignore",
]
ColumnName = Annotated[str, Meta(min_length=1, max_length=256)]


class ImportRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    file_path: (
        Annotated[
            str,
            Meta(min_length=1, max_length=4096, description="CSV path, relative to IMPORT_DIR; default CSV_FILE_PATH"),
        ]
        | None
    ) = None
    batch_size: Annotated[int, Meta(ge=1, le=10_000, description="documents per insert_many")] | None = None
    mode: Annotated[
        Mode,
        Meta(
            description=(
                "insert: a customer id already stored is a skipped duplicate. upsert (re-sync): new ids are inserted, "
                "customers whose CSV values changed are updated, unchanged ones are not written, and customers "
                "created or edited through the API (handEdited) are never overwritten"
            )
        ),
    ] = Mode.INSERT
    dry_run: bool = msgspec.field(default=False)
    """Read, parse and validate the whole file and report the counters, writing no customers."""
    delimiter: Annotated[
        Literal[",", ";", "\t", "|", "auto"],
        Meta(description="field separator; auto: the one that splits the header into the most columns"),
    ] = "auto"
    encoding: Annotated[
        Literal["utf-8", "cp1252", "latin-1", "utf-16", "auto"],
        Meta(description="auto: a BOM, else UTF-8 if the first MiB is valid UTF-8, else cp1252"),
    ] = "utf-8"
    quote: Annotated[
        str, Meta(min_length=1, max_length=1, pattern=r"^[!-/:-@\[-`{-~]$", description="quote character (ASCII)")
    ] = '"'
    columns: (
        Annotated[
            dict[ColumnName, Field],
            Meta(max_length=64, description='header name -> customer field, or "ignore" (the column feeds nothing)'),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.quote == self.delimiter:
            raise ValueError(f"quote and delimiter are both {self.quote!r}")
        mapped: dict[str, str] = {}
        for column, field in (self.columns or {}).items():  # one column per field: else the last one silently won
            if field != IGNORE and (other := mapped.setdefault(field, column)) != column:
                raise ValueError(f"columns map {other!r} and {column!r} to the same field {field!r}")

    def csv_format(self) -> CsvFormat:
        """What to read the file with; `auto` values are detected from the file when the job starts."""
        columns: dict[str, str] = dict(self.columns or {})  # a copy typed as CsvFormat stores it
        return CsvFormat(self.delimiter, self.encoding, self.quote, "auto", None, columns)


class ResumeRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    job_id: (
        Annotated[str, Meta(min_length=1, max_length=64, description="the job to resume; default the latest")] | None
    ) = None


class Progress(Counters, rename="camel", kw_only=True):
    """A job's snapshot; `percent` is by bytes of the file (compressed bytes for gzip), exactly 100 when COMPLETED.
    The row counters (rowsProcessed, rowsInserted, ...) are the Counters fields it inherits."""

    status: Status
    job_id: str | None = None
    file_path: str | None = None
    file_size: int = 0
    mode: str | None = None
    dry_run: bool = False
    batch_size: int | None = None
    csv: CsvFormat | None = None
    bytes_read: int = 0
    percent: float = 0.0
    rate_rows_per_sec: float = msgspec.field(default=0.0)
    """Rows per second over about the last 10 s while RUNNING; once ended, the average over the active time."""
    elapsed_sec: float = msgspec.field(default=0.0)
    """Wall-clock seconds since the job started (including time it spent cancelled or failed)."""
    active_sec: float = msgspec.field(default=0.0)
    """Seconds the job spent RUNNING, over every attempt."""
    eta_sec: float | None = msgspec.field(default=None)
    """Seconds to the end at the recent byte rate (RUNNING only)."""
    started_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None
    attempts: int = 0
    recent_customers: list[str] = []
    ignored_columns: list[str] = []

    @classmethod
    def of(cls, state: JobState | None) -> Progress:
        if state is None:
            return cls(status=Status.IDLE)
        end = state.finished_at or dt.datetime.now(dt.UTC)
        elapsed = max((end - state.started_at).total_seconds(), 1e-3)
        done = state.status == Status.COMPLETED
        fraction = 1.0 if done else state.bytes_read / state.file_size if state.file_size else 0.0
        running = state.status == Status.RUNNING
        return cls(
            status=state.status,
            job_id=state.job_id,
            file_path=state.file_path,
            file_size=state.file_size,
            mode=state.mode,
            dry_run=state.dry_run,
            batch_size=state.batch_size,
            csv=state.csv,
            bytes_read=state.bytes_read,
            percent=round(fraction * 100, 2),
            **state.counts(),
            rate_rows_per_sec=state.rate_rows_per_sec,
            elapsed_sec=round(elapsed, 1),
            active_sec=round(state.active_seconds, 1),
            eta_sec=state.eta_sec if running else None,
            started_at=state.started_at,
            updated_at=state.updated_at,
            finished_at=state.finished_at,
            error=state.error,
            attempts=state.attempts,
            recent_customers=state.recent_customers,
            ignored_columns=state.ignored_columns,
        )


class RejectedRow(msgspec.Struct, rename="camel"):
    line: int
    reason: str
    text: str


class RejectedRows(msgspec.Struct, rename="camel"):
    job_id: str
    rows_invalid: int
    items: list[RejectedRow]
    next_after_line: int | None = None


class JobPage(msgspec.Struct, rename="camel"):
    """Import jobs newest first; pass `nextAfterStartedAt` as `afterStartedAt` for the next page."""

    items: list[Progress]
    limit: int
    total: int
    page: int | None = None
    next_after_started_at: dt.datetime | None = None

    @classmethod
    def of(cls, states: list[JobState], *, limit: int, total: int, page: int | None) -> JobPage:
        after = states[-1].started_at if len(states) == limit else None
        return cls(
            items=[Progress.of(state) for state in states],
            limit=limit,
            total=total,
            page=page,
            next_after_started_at=after,
        )


class ImportFile(msgspec.Struct, rename="camel"):
    name: str
    """Path relative to IMPORT_DIR: the filePath of POST /import/sync."""
    size: int
    modified_at: dt.datetime


class ImportFiles(msgspec.Struct, rename="camel"):
    """Importable files under IMPORT_DIR by name; `truncated` when there were more than the list holds."""

    items: list[ImportFile]
    truncated: bool

    @classmethod
    def of(cls, files: list[ImportableFile], truncated: bool) -> ImportFiles:
        return cls([ImportFile(f.name, f.size, f.modified_at) for f in files], truncated)


How = Literal["given", "detected"]
Outcome = Literal["insert", "duplicate", "update", "unchanged", "protected"]


class Decided(msgspec.Struct, rename="camel"):
    """How each value of `csv` was decided: given in the request, or detected from the file."""

    delimiter: How
    encoding: How
    quote: How
    line_ending: How
    compression: How


class PreviewColumn(msgspec.Struct, rename="camel"):
    name: str
    field: str | None
    """The customer field the column feeds; null: ignored."""
    reason: Literal["mapped", "recognised", "ignored"]
    """mapped: by `columns`; recognised: by its name; ignored: neither (or `columns` gave its field to another)."""


class PreviewRow(msgspec.Struct, rename="camel"):
    """A row as the import would store it (`customer`), or invalid (`reason`, `text`: as GET /import/errors)."""

    line: int
    customer: dict[str, str] | None = None
    """The customer's fields as GET /customers/{customerId} would show them; null when the row is invalid."""
    stored: bool = False
    """The customer id is already stored."""
    outcome: Outcome | None = None
    """What the import would do with the row, given what is stored now; null when the row is invalid."""
    reason: str | None = None
    text: str | None = None


class ImportPreview(msgspec.Struct, rename="camel"):
    """What POST /import/sync with the same body would read and store, from the start of the file; nothing is
    written. `rowsEstimate` is the rows of the file at the rate of the bytes read (exact when they are the whole
    file)."""

    file_path: str
    file_size: int
    bytes_read: int
    """How far into the file the rows read reach (compressed bytes for gzip)."""
    mode: Mode
    csv: CsvFormat
    decided: Decided
    columns: list[PreviewColumn]
    rows: list[PreviewRow]
    limit: int
    rows_read: int
    rows_estimate: int
    rows_estimate_exact: bool
