"""Helpers shared by test modules: no test module imports from another, and a conftest holds only fixtures.

Sections: waiting and gating; HTTP answers; CSV files; the examples of other CSV formats (docs/importing.md); processes;
apps served by uvicorn in a thread; the real `python -m app serve` and `python -m app import` in subprocesses
(tests/system); the dashboard in a browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import msgspec
import pytest
import uvicorn

from app.asgi import create_app
from app.embedded import EmbeddedMongo, free_port
from app.imports.job.jobs import JobState
from app.imports.model import Batch, Mode, ParseSpec, Status, Written
from app.imports.reading.header import map_header
from app.imports.reading.parse import parse_block
from app.settings import Settings

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page
    from pymongo import MongoClient
    from pymongo.database import Database

ROOT = Path(__file__).parents[1]
POLL = 0.005  # how often a waiter looks again: a wait ends on a state change, never on a deadline
# Every row counter of a job, as the API names them.
COUNTERS = (
    "rowsProcessed",
    "rowsInserted",
    "rowsDuplicate",
    "rowsUpdated",
    "rowsUnchanged",
    "rowsProtected",
    "rowsInvalid",
)
SETTINGS_ENV = {f.name.upper() for f in msgspec.structs.fields(Settings)}


def with_settings(settings: Settings, **changes: object) -> Settings:
    return msgspec.structs.replace(settings, **changes)


# ---- waiting and gating ---------------------------------------------------------------------------------


class Gate:
    """The job's real sink behind a gate the test opens batch by batch: a database write as slow as the test wants,
    driven by events, never by a clock. The app may run on another event loop (AsyncTestClient runs it in its own
    thread), so the state is guarded by a thread lock and waiters look at it again every POLL seconds."""

    def __init__(self, sink: object):
        self.sink = sink
        self._lock = threading.Lock()
        self.permits = 0
        self.always_open = False
        self.waiting = 0  # writes held at the gate now
        self.written = 0  # writes that went through to the database

    async def write(self, batch: Batch) -> Written:
        with self._lock:
            self.waiting += 1
        try:
            await until(self._take)
        finally:
            with self._lock:
                self.waiting -= 1
        written = await self.sink.write(batch)  # type: ignore[attr-defined]
        with self._lock:
            self.written += 1
        return written

    def _take(self) -> bool:
        with self._lock:
            if self.always_open:
                return True
            if self.permits > 0:
                self.permits -= 1
                return True
            return False

    def open(self, batches: int = 1) -> None:
        with self._lock:
            self.permits += batches

    def open_all(self) -> None:
        with self._lock:
            self.always_open = True

    async def until(self, condition: Callable[[], bool]) -> None:
        await until(condition)


def gate_sinks(services: Any, monkeypatch: pytest.MonkeyPatch) -> list[Gate]:
    """Every job the app (`app.state.services`) starts from now on writes through a closed Gate, appended to the
    returned list in start order."""
    imports = services.imports
    real = imports.make_sink
    made: list[Gate] = []

    def make(state: Any) -> Gate:
        made.append(Gate(real(state)))
        return made[-1]

    monkeypatch.setattr(imports, "make_sink", make)
    return made


async def until(condition: Callable[[], bool]) -> None:
    """Wait until `condition` holds (the suite's timeout bounds a hang)."""
    while not condition():  # noqa: ASYNC110 (set from another thread's loop: an asyncio.Event cannot be)
        await asyncio.sleep(POLL)


class Failing(Protocol):
    def fail(self, message: str) -> None: ...


def wait_until(condition: Callable[[], Any], timeout: float, owner: Failing | None = None, what: str = "") -> Any:
    """Poll `condition` every 50 ms until it returns something truthy, and return that; at the deadline (a hang
    turned into a failure, never a speed requirement) fail, with the log of `owner` (an app) when given."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            message = f"{what or 'condition'} not met within {timeout:.0f}s"
            if owner is not None:
                owner.fail(message)
            pytest.fail(message)
        time.sleep(0.05)


# ---- HTTP answers ---------------------------------------------------------------------------------------

CLASS_NAME = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]+)+")  # NotFoundException, RequestEntityTooLarge


def assert_problem(response: httpx.Response, status: int, title: str | None = None) -> dict[str, Any]:
    """An application/problem+json answer with this status, a plain-word title and a detail; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"], body
    assert "Exception" not in body["title"] and not CLASS_NAME.fullmatch(body["title"]), body["title"]
    if title is not None:
        assert body["title"] == title
    return body


async def start(client: httpx.AsyncClient, file: Path | str, **options: Any) -> dict[str, Any]:
    """POST /import/sync; the 202's body (the job)."""
    response = await client.post("/import/sync", json={"filePath": str(file), **options})
    assert response.status_code == 202, response.text
    return response.json()


async def wait_done(client: httpx.AsyncClient, within: float = 120) -> dict[str, Any]:
    """The first /import/progress that is not RUNNING (`within`: a safety deadline, not a speed requirement)."""
    deadline = time.monotonic() + within
    while (progress := (await client.get("/import/progress")).json())["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"import still running after {within}s: {progress}"
        await asyncio.sleep(0.05)
    return progress


ListingPage = tuple[list[str], int, str | None]  # a listing page: its ids, the total it reports, the next cursor


async def walk(
    page_after: Callable[[str | None], Awaitable[ListingPage]], pages: int = 1000
) -> tuple[list[str], set[int]]:
    """Follow the next cursor from the first page to the end; the ids seen and the totals reported."""
    ids: list[str] = []
    totals: set[int] = set()
    after = None
    for _ in range(pages):
        page_ids, total, after = await page_after(after)
        ids += page_ids
        totals.add(total)
        if not after:
            return ids, totals
    raise AssertionError("the keyset walk did not end")


# ---- CSV files ------------------------------------------------------------------------------------------

HEADER = (
    "Index,Customer Id,First Name,Last Name,Company,City,Country,Phone 1,Phone 2,Email,"
    "Subscription Date,Website,About Customer"
)
EXISTING = {"_id": "EXISTING-1", "firstName": "Keep", "lastName": "Me"}  # in the database before the import


def good_row(i: int, customer_id: str | None = None, about: str = "Likes tea") -> str:
    """A valid row of about 130 bytes under HEADER."""
    cid = customer_id or f"C{i:07d}"
    return (
        f'{i},{cid},Ann{i},Lee,"Acme, ""Best"" Inc",Paris,France,+33 1,,ann{i}@example.com,'
        f'2021-03-{1 + i % 28:02d},https://acme.example,"{about}"'
    )


def plain_row(i: int, customer_id: str | None = None, *, first: str | None = None, company: str = "Acme") -> str:
    """A valid row under HEADER with no quoted field (no quote at all unless `first` or `company` has one)."""
    cid = customer_id or f"C{i:07d}"
    first = first or f"Ann{i}"
    return f"{i},{cid},{first},Lee,{company},Paris,France,+33 1,,ann{i}@example.com,2021-03-01,,Likes tea"


def long_row(i: int, cid: str, *, email: str | None = None, date: str | None = None, about: str | None = None) -> str:
    """A row of about 200 bytes under HEADER (valid unless told otherwise): every field set, its length varying."""
    email = email if email is not None else f"ann{i}@example.com"
    date = date if date is not None else f"2021-03-{1 + i % 28:02d}"
    about = about if about is not None else f"Likes tea and long CSV files; row {i} " + "x" * (i % 40)
    return (
        f'{i},{cid},Ann{i},Lee,"Acme, ""Best"" Inc",Paris,France,+33 1 23 45 67 {i % 100:02d},,{email},'
        f'{date},https://acme.example/{i},"{about}"'
    )


def a_job(job_id: str | None = None) -> JobState:
    """The least a RUNNING import_state document holds (no lease: see test_formats.dry_job for one with a file)."""
    return JobState(
        job_id=job_id or uuid.uuid4().hex,
        status=Status.RUNNING,
        file_path="f.csv",
        file_size=1,
        file_identity={},
        mode="insert",
        batch_size=1,
    )


def write(path: Path, lines: list[str | bytes], *, newline: bytes = b"\n") -> Path:
    path.write_bytes(newline.join(x if isinstance(x, bytes) else x.encode() for x in lines) + newline)
    return path


@dataclass(frozen=True)
class Hostile:
    """The file and what a correct import of it yields, computed while writing it."""

    path: Path
    counters: dict[str, int]
    rejected: dict[int, str]  # physical line -> a fragment of its reason


def write_hostile_csv(path: Path, rows: int = 10_000) -> Hostile:
    """~200-byte rows behind a BOM, CRLF line ends, no final newline; eight kinds of invalid rows (some spanning
    lines), blank lines, quoted newlines, duplicates inside a batch, across distant and neighbouring blocks and
    against a customer that exists before the import (EXISTING: the test creates it)."""
    records: list[bytes] = [HEADER.encode()]
    rejected: dict[int, str] = {}
    valid_ids: list[str] = []  # the customer id of every valid row, in file order
    line = 2  # physical line of the next record
    for i in range(1, rows + 1):
        kind, cid = i % 200, f"C{i:07d}"
        reason: str | None = None
        if kind == 7:
            text, reason = f"{i},{cid},too,few", "expected 13 fields"
        elif kind == 13:
            text, reason = long_row(i, "  "), "customer id is empty"
        elif kind == 17:
            text, reason = long_row(i, cid, email=f"ann{i}@@example.com", about="spans\r\ntwo lines"), "invalid email"
        elif kind == 19:
            text, reason = long_row(i, cid, email="ann lee@example.com"), "invalid email"
        elif kind == 23:
            text, reason = long_row(i, cid, date="2023-02-30"), "invalid subscription date"
        elif kind == 29:
            text, reason = long_row(i, cid).replace("Paris", "Par\udcffis"), "not valid UTF-8"
        elif kind == 53:
            text, reason = long_row(i, cid).replace('"Acme, ""Best"" Inc"', '"Acme"x'), "malformed CSV"
        elif kind == 61:
            text, reason = long_row(i, "Z" * 300), "customer id longer than 64"  # the API's limit (customers/rules.py)
        else:
            if kind in (31, 131):
                records += [b"", b"   "]  # blank lines are not rows
                line += 2
            if i % 100 == 37:
                cid = f"C{i - 1:07d}"  # the row before: the same batch
            elif i % 100 == 41 and i > 5000:
                cid = f"C{i - 5000:07d}"  # a block long written
            elif i % 100 == 43:
                cid = f"C{i + 450:07d}"  # ~90 KB ahead: a neighbouring block, maybe written first
            elif i % 1000 == 501:
                cid = EXISTING["_id"]
            about = 'multi\nline, ""quoted""\r\nabout' if i % 100 == 47 else None
            text = long_row(i, f"  {cid} " if i % 100 == 3 else cid, about=about)
            valid_ids.append(cid)
        if reason is not None:
            rejected[line] = reason
        data = text.encode("utf-8", "surrogateescape")
        records.append(data)
        line += 1 + data.count(b"\n")
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(records))  # the last record has no newline
    inserted = len(set(valid_ids) - {EXISTING["_id"]})
    counters = {"rowsInserted": inserted, "rowsDuplicate": len(valid_ids) - inserted, "rowsInvalid": len(rejected)}
    counters["rowsProcessed"] = sum(counters.values())
    return Hostile(path, counters, rejected)


FORMAT_COLUMNS = ["Customer Id", "First Name", "Last Name", "Company", "City", "Email", "About Customer"]
ENDINGS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}


def intact_customers(emoji: bool) -> list[dict[str, str]]:
    """Rows whose text must come back intact: every delimiter and a quote inside fields, é ß ø, emoji, newlines."""
    smile = "\U0001f642" if emoji else ""
    return [
        {
            "customerId": f"C{i}",
            "firstName": f"Zoë{smile}",
            "lastName": "Straße",
            "company": 'Ørsted, "Wind"; A|S\tDK',
            "city": "København",
            "email": f"zoe{i}@example.dk",
            "about": f"line one é ß ø{smile}\nline two",
        }
        for i in range(1, 41)
    ]


def csv_text(rows: list[dict[str, str]], delimiter: str, ending: str, *, invalid: bool = True) -> str:
    """`rows` (of intact_customers) as CSV text under FORMAT_COLUMNS, every field quoted; one invalid row last."""

    def quoted(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    lines = [delimiter.join(FORMAT_COLUMNS)]
    lines += [delimiter.join(quoted(row[key]) for key in rows[0]) for row in rows]
    if invalid:
        lines.append(delimiter.join(["X1", "Bad", "Email", "Co", "City", "not-an-email", "x"]))
    return ending.join(lines) + ending


def batch_of(text: str, job_id: str, mode: Mode) -> Batch:
    """The one batch a small CSV text (header first) parses into, as a worker would send it to the sink."""
    header, _, body = text.partition("\n")
    spec = ParseSpec(map_header(header.encode()), job_id, batch_size=1000, max_record_bytes=65536, mode=mode)
    [batch] = parse_block(body.encode(), 2, spec).batches
    return batch


# ---- the examples of other CSV formats (docs/importing.md) ----------------------------------------------

IMPORTING = ROOT / "docs" / "importing.md"
FORMATS_SECTION = "## Other CSV formats"
# A row of the option table: | `option` | values | `{JSON body}` · `--cli flags` |
TABLE_ROW = re.compile(r"^\| `(?P<option>[^`]+)` \|.*\| `(?P<body>\{[^`]*\})` · `(?P<flags>--[^`]*)` \|$")
CURL_BODY = re.compile(r"^curl -X POST localhost:8000/import/sync .*-d '(?P<body>[^']*)'$")
CLI_LINE = re.compile(r"^\.venv/bin/python -m app import (?P<args>.+)$")
CLI_FOLDER = "data/imports"  # where the page's command line keeps the files it imports (DATA_DIR/imports)
# each customer field of intact_customers() and its usual column name
FIELDS = dict(
    zip(("customerId", "firstName", "lastName", "company", "city", "email", "about"), FORMAT_COLUMNS, strict=True)
)


@dataclass(frozen=True)
class CliExample:
    """A command line of the examples: its arguments after `python -m app import` (the file first, a path relative
    to the working folder) and the import options the file it reads was written for."""

    args: list[str]
    options: dict[str, Any]


@dataclass(frozen=True)
class FormatExamples:
    """Every example of the "Other CSV formats" section of docs/importing.md, and the lines that show one but did
    not parse (a reworded example must not drop out of the test unseen)."""

    bodies: list[dict[str, Any]]  # POST /import/sync bodies: the option table's, then the curl lines'
    commands: list[CliExample]  # the option table's flags (each on its row's file), then the command lines
    unparsed: list[str]


def format_examples(page: Path = IMPORTING) -> FormatExamples:
    """The examples as the page shows them now: JSON and shell quoting read as a client and a shell read them."""
    text = page.read_text(encoding="utf-8")
    start = text.find(f"\n{FORMATS_SECTION}\n")
    section = text[start : text.find("\n## ", start + 1)] if start >= 0 else ""
    bodies: list[dict[str, Any]] = []
    commands: list[CliExample] = []
    unparsed: list[str] = []
    for line in section.replace("\\\n", " ").splitlines():  # a shell line continued with `\` is one line
        if (row := TABLE_ROW.match(line)) is not None:
            body = json.loads(row["body"])
            bodies.append(body)
            commands.append(CliExample([f"{CLI_FOLDER}/{body['filePath']}", *shlex.split(row["flags"])], body))
        elif (curl := CURL_BODY.match(line)) is not None:
            bodies.append(json.loads(curl["body"]))
        elif (cli := CLI_LINE.match(line)) is not None:
            args = shlex.split(cli["args"])
            commands.append(CliExample(args, {"filePath": args[0], **cli_options(args[1:])}))
        elif line.startswith(("| `", "curl ", ".venv/bin/python -m app import")):
            unparsed.append(line)
    return FormatExamples(bodies, commands, unparsed)


def cli_options(flags: list[str]) -> dict[str, Any]:
    """The POST /import/sync options that `--name value` flags stand for (`--column FROM=TO` into `columns`)."""
    assert len(flags) % 2 == 0 and all(flag.startswith("--") for flag in flags[::2]), flags
    options: dict[str, Any] = {}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag == "--column":
            source, _, field = value.partition("=")
            options.setdefault("columns", {})[source] = field
        else:
            options[flag.removeprefix("--")] = value
    return options


@dataclass(frozen=True)
class ExampleFile:
    """The small file an example implies: its encoding, delimiter, quote and column names, gzip for `.gz`."""

    name: str
    encoding: str
    delimiter: str
    quote: str
    columns: dict[str, str]  # header name -> customer field, for the fields not under their usual name
    compression: str | None

    @classmethod
    def of(cls, options: dict[str, Any]) -> ExampleFile:
        """`encoding` auto stands for a cp1252 file (what detection must find), `delimiter` auto for `,`."""
        encoding = options.get("encoding", "utf-8")
        delimiter = {"auto": ",", "\\t": "\t"}.get(options.get("delimiter", "auto"), options.get("delimiter"))
        name = str(options["filePath"])
        return cls(
            name,
            "cp1252" if encoding == "auto" else encoding,
            str(delimiter),
            options.get("quote", '"'),
            dict(options.get("columns", {})),
            "gzip" if name.endswith(".gz") else None,
        )

    def rows(self) -> list[dict[str, str]]:
        """20 customers whose text must come back intact: é ß ø, every delimiter and both quote characters in
        one field, a newline in a quoted field; emoji when the encoding has them."""
        rows = intact_customers(emoji=self.encoding.startswith("utf"))[:20]
        return [{**row, "lastName": "O'Straße"} for row in rows]

    def content(self) -> bytes:
        names = {field: source for source, field in self.columns.items()}
        lines = [self.delimiter.join(names.get(field, usual) for field, usual in FIELDS.items())]
        q = self.quote
        lines += [self.delimiter.join(q + row[field].replace(q, q + q) + q for field in FIELDS) for row in self.rows()]
        data = ("\r\n".join(lines) + "\r\n").encode(self.encoding)
        return gzip.compress(data) if self.compression else data

    def read_as(self) -> dict[str, Any]:
        """What the job must say it read the file as (its `csv`, without line ending and columns)."""
        return {
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "quote": self.quote,
            "compression": self.compression,
        }


# ---- processes ------------------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    """A zombie counts as gone: it has exited and only waits for its parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def command(pid: int) -> list[bytes]:
    """The command line of a process ([] once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


@contextlib.contextmanager
def held(server: EmbeddedMongo) -> Iterator[None]:
    """The database server stopped (SIGSTOP) for the block: an import cannot move while a test looks at it."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


# ---- apps served by uvicorn in a thread -----------------------------------------------------------------


@contextlib.contextmanager
def serving(app: Any, **config: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn in a thread on a free port (lifespan included); its URL. Stopped gracefully
    at the end."""
    port = free_port()
    options = {"host": "127.0.0.1", "port": port, "log_level": "warning", "lifespan": "on", "ws": "none"} | config
    server = uvicorn.Server(uvicorn.Config(app, **options))
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(60)


# ---- `python -m app serve` in subprocesses (tests/system) -----------------------------------------------

START_TIMEOUT = 60.0
IMPORT_TIMEOUT = 90.0
LEASE_SECONDS = 3.0
BATCH_SIZE = 100
STEP_SECONDS = 0.005  # how long step_until lets the database run between two looks at an import (a few writes)
INSERT_COUNTERS = ("rowsProcessed", "rowsInserted", "rowsDuplicate", "rowsInvalid")


@dataclass
class App:
    """One `python -m app serve` subprocess."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, timeout=10)

    def post(self, path: str, body: Any = None) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=10)

    def progress(self) -> dict[str, Any]:
        response = self.get("/import/progress")
        assert response.status_code == 200, response.text
        return response.json()

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        self.process.kill()
        self.process.wait()

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- {self.log.name} ---\n{self.tail()}")


@dataclass
class Apps:
    """Starts apps for one test (same database unless told otherwise) and kills whatever is left at the end."""

    folder: Path
    base_env: dict[str, str]
    started: list[App] = field(default_factory=list)

    def start(self, *, wait: bool = True, **env: str) -> App:
        port = free_port()
        environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV}
        environ |= {**self.base_env, "HOST": "127.0.0.1", "PORT": str(port), **env}
        log = self.folder / f"app-{len(self.started)}.log"
        with log.open("wb") as out:
            # a session of its own: the parser processes it forks can be found (and killed) by its id later
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=environ,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        app = App(process, f"http://127.0.0.1:{port}", log, environ)
        self.started.append(app)
        if wait:
            wait_until(lambda: _healthy(app), START_TIMEOUT, app, "GET /health was not 200")
        return app

    def close(self) -> None:
        """Kill every app and what it left behind: a killed app's parser pool (forkserver, workers, resource
        tracker) outlives it, blocked forever on its queue."""
        for app in self.started:
            if app.process.poll() is None:
                app.process.kill()
            app.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(app.process.pid, signal.SIGKILL)


def _healthy(app: App) -> bool:
    if not app.alive():
        app.fail(f"app exited with {app.process.returncode} before it was healthy")
    try:
        return app.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def app_env(server: EmbeddedMongo, folder: Path, database: str) -> dict[str, str]:
    (folder / "imports").mkdir(parents=True, exist_ok=True)
    return {
        "MONGODB_URI": server.uri,
        "MONGODB_DB": database,
        "IMPORT_DIR": str(folder / "imports"),
        "DATA_DIR": str(folder / "data"),
        "IMPORT_LEASE_SECONDS": str(LEASE_SECONDS),
        "IMPORT_CHECKPOINT_SECONDS": "0.2",
        "IMPORT_BLOCK_BYTES": "65536",
        # Two blocks in flight: they still finish out of order, but the watermark moves by at most two blocks
        # (about 6 % of the hostile file) at once, so a test stepping the database (step_until) sees each point.
        "IMPORT_BLOCKS_IN_FLIGHT": "2",
        "IMPORT_RETRY_SECONDS": "60",
        "LOG_LEVEL": "INFO",
    }


def start_import(app: App, file_name: str, **options: Any) -> dict[str, Any]:
    response = app.post("/import/sync", {"filePath": file_name, "batchSize": BATCH_SIZE, **options})
    assert response.status_code == 202, response.text
    return response.json()


def wait_progress(
    app: App, predicate: Callable[[dict[str, Any]], bool], timeout: float = IMPORT_TIMEOUT, what: str = "progress"
) -> dict[str, Any]:
    """The first /import/progress answer that satisfies `predicate`; the job must not end in between."""

    def check() -> dict[str, Any] | None:
        progress = app.progress()
        if predicate(progress):
            return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        return None

    return wait_until(check, timeout, app, what)


def step_until(
    app: App,
    server: EmbeddedMongo,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    then: Callable[[], None] | None = None,
    timeout: float = IMPORT_TIMEOUT,
) -> dict[str, Any]:
    """The owner's /import/progress (served from its memory) looked at with the database held still, and the
    database let run for STEP_SECONDS between looks: however fast the database, the import stops at each look
    and advances about one slice between two, so the test sees it pass `predicate` while still RUNNING. `then`
    runs while the database is still held (kill -9 the app, say), then the database goes on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with held(server):
            progress = app.progress()
            if predicate(progress):
                if then is not None:
                    then()
                return progress
        if progress["status"] not in ("RUNNING", "IDLE"):
            app.fail(f"job ended {progress['status']} while waiting for {what}: {progress}")
        time.sleep(STEP_SECONDS)
    app.fail(f"{what} not reached within {timeout:.0f}s")
    raise AssertionError(what)


def wait_completed(app: App, timeout: float = IMPORT_TIMEOUT) -> dict[str, Any]:
    return wait_progress(app, lambda p: p["status"] == "COMPLETED", timeout, "COMPLETED")


def fraction(progress: dict[str, Any]) -> float:
    return progress["bytesRead"] / progress["fileSize"] if progress["fileSize"] else 0.0


def terminate(app: App, timeout: float) -> int:
    """SIGTERM; the exit code (`timeout`: a hang turned into a failure)."""
    app.process.send_signal(signal.SIGTERM)
    try:
        return app.process.wait(timeout)
    except subprocess.TimeoutExpired:
        app.fail(f"app did not exit within {timeout:.0f}s of SIGTERM")
        raise


@dataclass(frozen=True)
class Result:
    """What an import left behind: final counters, every customer id, every rejected row."""

    counters: dict[str, int]
    customer_ids: list[str]
    rejected: list[tuple[int, str, str]]  # (line, reason, text)


def rejected_rows(app: App, job_id: str) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    after = 0
    while True:
        response = app.get("/import/errors", jobId=job_id, limit=1000, afterLine=after)
        assert response.status_code == 200, response.text
        page = response.json()
        rows += [(item["line"], item["reason"], item["text"]) for item in page["items"]]
        if page["nextAfterLine"] is None:
            return rows
        after = page["nextAfterLine"]


def result_of(app: App, sync_mongo: MongoClient, job_id: str) -> Result:
    progress = app.progress()
    assert progress["jobId"] == job_id and progress["status"] == "COMPLETED", progress
    assert progress["bytesRead"] == progress["fileSize"] and progress["percent"] == 100, progress
    db = sync_mongo[app.env["MONGODB_DB"]]
    ids = sorted(doc["_id"] for doc in db.customers.find({}, {"_id": 1}))
    assert db.customers.count_documents({}) == len(ids)
    return Result({k: progress[k] for k in INSERT_COUNTERS}, ids, rejected_rows(app, job_id))


def assert_same_as_reference(app: App, sync_mongo: MongoClient, job_id: str, reference: Result) -> None:
    result = result_of(app, sync_mongo, job_id)
    assert result.counters == reference.counters
    assert len(result.customer_ids) == len(reference.customer_ids)
    assert result.customer_ids == reference.customer_ids
    assert result.rejected == reference.rejected


@dataclass
class Deployment:
    """One test's database, import folder and app launcher."""

    apps: Apps
    database: str
    file_name: str
    file: Path
    server: EmbeddedMongo

    def start(self, **kwargs: Any) -> App:
        return self.apps.start(**kwargs)


@dataclass
class OwnServer:
    server: EmbeddedMongo
    deployment: Deployment


def job_doc(sync_mongo: MongoClient, deployment: Deployment, job_id: str) -> dict[str, Any]:
    doc = sync_mongo[deployment.database].import_state.find_one({"_id": job_id})
    assert doc is not None
    return doc


def kill_when(deployment: Deployment, app: App, reached: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """kill -9 the app as soon as its progress satisfies `reached`, with the database held still meanwhile (so a
    fast database cannot finish the job first); the job must still be running."""
    return step_until(app, deployment.server, reached, what, then=app.kill)


TAKEOVER_AFTER_RESTART = 30.0


def restart_and_await_takeover(
    deployment: Deployment, sync_mongo: MongoClient, job_id: str, killed_at: float, attempts: int
) -> tuple[App, int]:
    """Start a new instance; it must adopt the job (attempts + 1) before the safety deadline. Returns it and how
    many rows the dead owner had written beyond the watermark it persisted."""
    before = job_doc(sync_mongo, deployment, job_id)
    assert before["status"] == "RUNNING" and before["owner"] is not None, before
    assert before["attempts"] == attempts - 1
    # rows the dead owner wrote beyond its watermark: the new owner meets them again and must count them inserted
    written = sync_mongo[deployment.database].customers.count_documents({"importJobId": job_id})
    ahead = written - before["rowsInserted"]
    app = deployment.start()
    taken = wait_until(
        lambda: job_doc(sync_mongo, deployment, job_id)["attempts"] == attempts,
        TAKEOVER_AFTER_RESTART,
        app,
        f"takeover of job {job_id} (attempt {attempts})",
    )
    took = time.monotonic() - killed_at
    after = job_doc(sync_mongo, deployment, job_id)
    assert taken and after["owner"] not in (None, before["owner"])
    progress = app.progress()
    # resumed from the watermark, not from the start: it never goes back below what the dead owner persisted
    assert progress["jobId"] == job_id and progress["bytesRead"] >= before["bytesRead"], (before, progress)
    print(
        f"\ntakeover {took:.1f}s after kill -9 (watermark {before['bytesRead']} of {before['fileSize']}, "
        f"{ahead} rows written beyond it)"
    )
    return app, ahead


# ---- `python -m app import` in a subprocess (tests/system) ----------------------------------------------

RUN_TIMEOUT = 60.0
# rich reads these; the tests look at what a user sees in a log file (no terminal, no colours)
TERMINAL_ENV = {"COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "TERM"}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"exit code {self.code}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


@dataclass
class Cli:
    """One test's database (fresh, on the session server), folder and environment."""

    folder: Path
    env: dict[str, str]
    db: Database[dict[str, Any]]
    server: EmbeddedMongo
    started: list[subprocess.Popen[bytes]]

    def popen(self, *args: str, stdout: Any, stderr: Any, command: str = "import") -> subprocess.Popen[bytes]:
        # a session of its own: a signal to the process group is what Ctrl-C in a terminal sends, and whatever
        # the CLI leaves behind (forkserver, parser workers) can be found by its id
        process = subprocess.Popen(
            [sys.executable, "-m", "app", command, *args],
            env=self.env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
        self.started.append(process)
        return process

    def run(self, *args: str, command: str = "import") -> Run:
        process = self.popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, command=command)
        try:
            out, err = process.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(
                f"`python -m app {command} {' '.join(args)}` did not end within {RUN_TIMEOUT:.0f}s\n"
                f"{Run(-1, out.decode(errors='replace'), err.decode(errors='replace'))}"
            )
        return Run(process.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.db.import_state.find({}))

    def only_job(self) -> dict[str, Any]:
        jobs = self.jobs()
        assert len(jobs) == 1, jobs
        return jobs[0]

    def close(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
            process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def assert_clean(run: Run) -> None:
    assert "Traceback" not in run.out + run.err, str(run)


# ---- the dashboard in a browser (tests/browser) ---------------------------------------------------------

ARTIFACTS = ROOT / "artifacts"
WAIT_MS = 120_000  # an upper bound for slow machines, never a speed requirement


@dataclass
class Served:
    """One app served by uvicorn over TCP: its URL, settings and import folder."""

    url: str
    settings: Settings
    import_dir: Path
    app: Any = None  # the Litestar app itself, for a test that holds its writes (gate_sinks)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.settings.api_token}"} if self.settings.api_token else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[Served]:
    """The app built from `settings`, served by uvicorn in a thread."""
    app = create_app(settings)
    with serving(app) as url:
        yield Served(url, settings, settings.import_path, app)


def browser_settings(settings: Settings, folder: Path, **changes: Any) -> Settings:
    """A database of its own; small blocks and one writer, so that an import lasts long enough to cancel."""
    folder.mkdir(parents=True, exist_ok=True)
    return with_settings(
        settings,
        mongodb_db=f"browser_{uuid.uuid4().hex[:8]}",
        import_dir=str(folder),
        csv_file_path=None,
        import_block_bytes=65536,
        import_writers=1,
        **changes,
    )


@dataclass
class Watched:
    """A page whose console errors, uncaught exceptions and dialogs are recorded; `allow` excuses console
    errors matching a pattern (an expected 401 or 400 the page shows to the user)."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not any(p.search(message.text) for p in self.allowed):
            self.errors.append(message.text)

    def screenshot(self, name: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shown(text: str) -> int:
    """A counter as the page shows it ("12,345") as a number."""
    return int(text.replace(",", ""))


# Customer ids the API and the importer both accept (app/customers/rules.py): odd but reachable over HTTP.
GOOD_IDS = [
    "a.b",
    "a+b",
    "a&b",
    "a=b",
    "a:b",
    "a@b",
    "a!b",
    "a$b",
    "a;b",
    "a'b",
    "(a)",
    "a~b",
    "...",
    "a..b",
    "\u00e9t\u00e9",
    "\U0001f642",
    "a\\b",
    "a|b",
    "a*b",
    "a^b",
    "I" * 64,
]
