"""Settings: one frozen object built from the environment, with a working local default for each value."""

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Port = Annotated[int, Meta(ge=0, le=65535)]
Positive = Annotated[int, Meta(ge=1)]
# Every float setting has a finite range: msgspec reads "inf" and "nan" as floats (an infinite lease meant a killed
# job was never taken over).
CheckpointSeconds = Annotated[float, Meta(ge=0.1, le=60)]
RetrySeconds = Annotated[float, Meta(ge=1, le=86_400)]
LeaseSeconds = Annotated[float, Meta(ge=1, le=3600)]
DeadlineSeconds = Annotated[float, Meta(ge=0.05, le=60)]
WaitSeconds = Annotated[float, Meta(ge=0, le=5)]
Slots = Annotated[int, Meta(ge=1, le=1000)]


class SettingsError(ValueError):
    """A setting in the environment has a bad value; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    mongodb_uri: str | None = None
    """MongoDB connection string; unset starts the embedded SecantusDB server."""
    mongodb_db: str = "customer_import"
    """Database name."""
    data_dir: str = "./data"
    """Folder for the embedded database (DATA_DIR/db) and default import folder."""
    csv_file_path: str | None = None
    """CSV file imported when POST /import/sync names no file; always allowed."""
    import_dir: str | None = None
    """Folder that request filePaths resolve in; default: folder of CSV_FILE_PATH, else DATA_DIR/imports."""
    host: str = "127.0.0.1"
    """Address the HTTP server binds."""
    port: Port = 8000
    """HTTP port."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Log level of the app and the embedded database."""
    embedded_db_port: Port = 27018
    """Port of the embedded SecantusDB server; a free port is taken when it is busy."""
    embedded_db_server: str = "auto"
    """Embedded server: "auto" = secantusd-rs if installed (PATH or $CARGO_HOME/bin) else the Python server;
    "python" = SecantusDB's Python server (the fallback); or the path of a secantusd-rs binary."""
    max_body_bytes: Positive = 1_048_576
    """Largest accepted request body."""
    import_batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 1000
    """Default documents per insert_many."""
    import_block_bytes: Annotated[int, Meta(ge=4096)] = 4 * 1_048_576
    """Bytes read from the CSV per block handed to a worker."""
    import_max_record_bytes: Annotated[int, Meta(ge=1024)] = 1_048_576
    """Largest CSV record; a longer one (an unterminated quote) fails the job."""
    import_workers: Positive = 2
    """Parser processes."""
    import_worker_nice: Annotated[int, Meta(ge=0, le=19)] = 10
    """Nice increment of the parser processes: parsing yields the CPU to the API's event loop and the database."""
    import_blocks_in_flight: Positive = 4
    """Blocks being parsed or written at once (backpressure bound)."""
    import_writers: Positive = 2
    """Concurrent insert_many calls."""
    import_checkpoint_seconds: CheckpointSeconds = 1.0
    """How often progress is persisted to import_state (0.1 to 60 s)."""
    import_max_rejects: Annotated[int, Meta(ge=0)] = 1000
    """Rejected rows stored per job (all are counted)."""
    import_retry_seconds: RetrySeconds = 60.0
    """How long failed database writes are retried before the job fails (1 s to a day)."""
    import_lease_seconds: LeaseSeconds = 15.0
    """A RUNNING job whose heartbeat is older than this may be taken over by another instance (1 s to an hour)."""
    progress_stream_max_clients: Positive = 100
    """Open GET /import/progress/stream connections per instance (each holds a queue of 16 updates); one more is
    answered 503 with Retry-After."""
    request_timeout_seconds: DeadlineSeconds = 2.0
    """Deadline of each request's database work (0.05 to 60 s): past it the request is a 503 with Retry-After and
    its query is stopped on the server (maxTimeMS)."""
    admission_wait_seconds: WaitSeconds = 0.1
    """How long a request waits for a slot of its class (0 to 5 s) before it is shed with 503 and Retry-After."""
    cheap_slots: Slots = 8
    """Cheap requests (GET by id, email=, POST, PATCH, DELETE, import control) with database work in flight."""
    expensive_slots: Slots = 2
    """Expensive requests (lists, counts, history and rejected-row pages) with database work in flight."""
    expensive_share: Annotated[float, Meta(ge=0, le=64)] = 0.5
    """Database time the expensive requests may take, in operations kept running on average (0 to 64; 0: no such
    bound): beyond it they are shed until it refills, so lists cannot take the database from an import."""
    max_requests_in_flight: Slots = 64
    """Requests this instance holds at once, every class (progress streams aside); one more is a 503."""
    list_total_cache_seconds: Annotated[float, Meta(ge=0, le=3600)] = 5.0
    """How long the unfiltered list's `total` (the collection's count) is reused (0 to 3600 s; 0: every page)."""
    max_connections: Annotated[int, Meta(ge=16, le=100_000)] = 1024
    """Open HTTP connections uvicorn accepts (idle keep-alive and streams included); beyond it uvicorn itself
    answers a plain 503."""
    export_max_concurrent: Annotated[int, Meta(ge=1, le=100)] = 2
    """Exports (GET /customers/export) streaming at once per instance (1 to 100); one more is answered 503 with
    Retry-After. Each holds one cursor and one batch."""
    export_batch_size: Annotated[int, Meta(ge=1, le=10_000)] = 1000
    """Customers per cursor batch of an export: read, encoded and sent as one piece (1 to 10,000)."""
    api_token: Annotated[str, Meta(min_length=1, max_length=4096)] | None = None
    """Bearer token every request must carry (GET/HEAD /health and the dashboard's files stay open); unset: open."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).resolve()

    @property
    def import_path(self) -> Path:
        if self.import_dir:
            return Path(self.import_dir).resolve()
        if self.csv_file_path:
            return Path(self.csv_file_path).resolve().parent
        return self.data_path / "imports"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Build settings from environment variables named after the fields (upper case)."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in msgspec.structs.fields(cls):
            raw = environ.get(field.name.upper())
            if raw is None or raw == "":
                continue
            if field.name == "log_level":
                raw = raw.upper()  # logging's names; `info` means INFO, as it does to uvicorn
            if field.name == "embedded_db_server" and raw not in ("auto", "python") and shutil.which(raw) is None:
                raise SettingsError(
                    f'EMBEDDED_DB_SERVER={raw!r} is invalid: not "auto", "python" or an executable file'
                )
            try:
                values[field.name] = msgspec.convert(raw, field.type, strict=False)
            except msgspec.ValidationError as exc:
                raise SettingsError(f"{field.name.upper()}={raw!r} is invalid: {exc}") from None
        return cls(**values)
