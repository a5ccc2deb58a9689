"""Real-world CSV files through the API (issue 13) and the file as it was when the job started (issue 12, 5 and 6)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.imports.job.jobs import JobState, JobStore, now
from app.imports.model import Batch, CsvFormat, Status, Written
from app.imports.reading.header import map_header
from app.imports.reading.source import file_identity, inspect, read_blocks, read_header
from app.imports.reading.workers import parser_pool
from app.imports.run.pipeline import Control, ImportRun
from app.imports.run.sink import DrySink
from app.settings import Settings
from tests.helpers.answers import start, wait_done
from tests.helpers.csvfiles import ENDINGS, HEADER, csv_text, good_row, intact_customers, write
from tests.helpers.gates import until
from tests.helpers.settings import with_settings


async def assert_imported(client: AsyncTestClient, rows: list[dict[str, str]], progress: dict[str, Any]) -> None:
    assert progress["status"] == "COMPLETED", progress
    assert (progress["rowsInserted"], progress["rowsInvalid"]) == (len(rows), 1), progress
    for row in rows:
        got = (await client.get(f"/customers/{quote(row['customerId'])}")).json()
        assert {key: got.get(key) for key in row} == row


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "latin-1", "utf-16"])
async def test_every_encoding_delimiter_and_line_ending_imports_exactly(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, encoding: str, delimiter: str, ending: str
) -> None:
    rows = intact_customers(emoji=encoding.startswith("utf"))
    path = import_dir / f"matrix-{encoding}.csv"
    path.write_bytes(csv_text(rows, delimiter, ENDINGS[ending]).encode(encoding))
    asked = "latin-1" if encoding == "latin-1" else "auto"  # auto reads a Latin-1 file as cp1252: say it
    job = await start(client, path.name, encoding=asked)  # the delimiter is sniffed (the default)
    assert job["csv"] == {
        "delimiter": delimiter,
        "encoding": encoding,
        "quote": '"',
        "lineEnding": ending,
        "compression": None,
        "columns": {},
    }
    await assert_imported(client, rows, await wait_done(client))


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
async def test_a_gzip_file_is_decompressed_as_a_stream(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, encoding: str
) -> None:
    rows = intact_customers(emoji=encoding != "cp1252")
    path = import_dir / f"packed-{encoding}.csv.gz"
    path.write_bytes(gzip.compress(csv_text(rows, ";", "\r\n").encode(encoding)))
    job = await start(client, path.name, encoding="auto", delimiter=";")
    assert (job["csv"]["compression"], job["csv"]["encoding"], job["csv"]["lineEnding"]) == ("gzip", encoding, "CRLF")
    progress = await wait_done(client)
    await assert_imported(client, rows, progress)
    assert progress["bytesRead"] == progress["fileSize"] == path.stat().st_size
    assert progress["percent"] == 100


async def test_gzip_magic_bytes_are_enough(client: AsyncTestClient, db: AsyncDatabase, import_dir: Path) -> None:
    rows = intact_customers(emoji=True)
    path = import_dir / "no-suffix.csv"
    path.write_bytes(gzip.compress(csv_text(rows, ",", "\n").encode()))
    assert (await start(client, path.name))["csv"]["compression"] == "gzip"
    await assert_imported(client, rows, await wait_done(client))


async def test_a_mapped_header_imports_a_file_without_a_recognisable_id(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    path = write(import_dir / "mapped.csv", ["Cust #,Given,Family,Mail,Shoe size,First Name", "K1,Ann,Lee,a@b.c,38,X"])
    columns = {"Cust #": "customerId", "Given": "firstName", "Family": "lastName", "Mail": "email"}
    refused = await client.post("/import/sync", json={"filePath": path.name})
    assert refused.status_code == 400 and "no customer id column" in refused.json()["detail"]
    job = await start(client, path.name, columns=columns)
    assert job["csv"]["columns"] == columns
    assert job["ignoredColumns"] == ["Shoe size", "First Name"]  # a mapped field wins over a recognised name
    assert (await wait_done(client))["rowsInserted"] == 1
    got = (await client.get("/customers/K1")).json()
    assert (got["firstName"], got["lastName"], got["email"]) == ("Ann", "Lee", "a@b.c")


@pytest.mark.parametrize(
    ("options", "content"),
    [
        ({"delimiter": ";"}, b"Customer Id;Name\r\nC1;Ann\r\nC2;Bob\r\n"),
        ({"encoding": "cp1252"}, "Customer Id,Name\nC1,Zoë\nC2,Bob\n".encode("cp1252")),
        ({"encoding": "utf-16"}, "Customer Id\tName\nC1\tZoë\nC2\tBob\n".encode("utf-16")),
        ({"quote": "'"}, b"Customer Id,Name\nC1,'Ann, Lee'\nC2,'Bob ''B'''\n"),
        ({"columns": {"Key": "customerId"}}, b"Key,Name\rC1,Ann\rC2,Bob\r"),
        ({"encoding": "auto", "delimiter": "auto"}, gzip.compress("Customer Id|Name\nC1|Zoë\nC2|Bob\n".encode())),
    ],
)
async def test_the_dry_run_takes_each_option(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, options: dict[str, Any], content: bytes
) -> None:
    path = import_dir / "dry.csv"
    path.write_bytes(content)
    await start(client, path.name, dryRun=True, **options)
    progress = await wait_done(client)
    assert (progress["status"], progress["rowsInserted"], progress["rowsInvalid"]) == ("COMPLETED", 2, 0), progress
    assert await db.customers.count_documents({}) == 0


@pytest.mark.parametrize("delimiter", [";", "auto"])
async def test_the_header_ends_where_its_own_delimiter_says(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, delimiter: str
) -> None:
    """`,"` in a `;` header is text, not an opening quote: the header was cut with every delimiter at once, so
    this file read as one long header and imported 0 rows, COMPLETED."""
    path = import_dir / "semicolon-header.csv"
    path.write_bytes(b'Customer Id;First Name,"nick\nA1;Ann\nA2;Bob\nA3;Cy\n')
    response = await client.post("/import/sync", json={"filePath": path.name, "delimiter": delimiter})
    assert response.status_code == 202, response.text
    progress = await wait_done(client)
    assert (progress["status"], progress["rowsInserted"]) == ("COMPLETED", 3), progress
    assert (await client.get("/customers/A2")).json()["customerId"] == "A2"


async def test_ignored_columns_lists_the_first_hundred_names(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    """ignoredColumns goes out in every progress answer and stream snapshot: it stays small however wide the file."""
    extra = [f"Extra {i}" for i in range(150)]
    path = write(import_dir / "wide.csv", [",".join(["Customer Id", *extra]), ",".join(["W1", *"x" * 150])])
    await start(client, path.name)
    progress = await wait_done(client)
    assert (progress["status"], progress["rowsInserted"]) == ("COMPLETED", 1), progress
    assert progress["ignoredColumns"] == extra[:100]


@pytest.mark.parametrize(
    ("body", "content", "fragment"),
    [
        (
            {"delimiter": ","},
            b"Customer Id;Name\nC1;Ann\n",
            "does not split under the delimiter ',' but does under ';'",
        ),
        ({}, "Customer Id,Name\n".encode("utf-16"), "cannot be read as utf-8"),
        ({"delimiter": ";", "quote": ";"}, b"Customer Id;Name\n", "quote and delimiter are both ';'"),
        ({"columns": {"Name": "shoeSize"}}, b"Customer Id,Name\n", "shoeSize"),
        ({"columns": {"Nom": "firstName"}}, b"Customer Id,Name\n", "which the header does not have"),
        (
            {"columns": {"Email": "email", "City": "email"}, "dryRun": True},
            b"Customer Id,Email,City\nC1,a@b.c,Paris\n",
            "columns map 'Email' and 'City' to the same field 'email'",
        ),
        (
            {"columns": {"Key": "customerId", "Id": "customerId", "Mail": "email"}},
            b"Key,Id,Mail\n",
            "columns map 'Key' and 'Id' to the same field 'customerId'",
        ),
        ({}, b"Customer Id,Email,First Name,Email\nC1,a@b.c,Ann,x\n", "two columns for email: 'Email' and 'Email'"),
        ({"encoding": "ebcdic"}, b"Customer Id,Name\n", "ebcdic"),
        ({"delimiter": ":"}, b"Customer Id:Name\n", ":"),
        ({"quote": "ab"}, b"Customer Id,Name\n", ""),
        ({}, gzip.compress(b"Customer Id,Name\n" + b"C1,Ann\n" * 5000)[:-30], "gzip stream ends early"),
        ({}, b"\x1f\x8bCustomer Id,Name\n", "not a valid gzip stream"),
    ],
)
@pytest.mark.parametrize("endpoint", ["/import/sync", "/import/preview"])  # the preview refuses what sync refuses
async def test_unreadable_or_contradictory_settings_are_a_400_before_any_job(
    client: AsyncTestClient,
    db: AsyncDatabase,
    import_dir: Path,
    body: dict[str, Any],
    content: bytes,
    fragment: str,
    endpoint: str,
) -> None:
    path = import_dir / "refused.csv"
    path.write_bytes(content)
    response = await client.post(endpoint, json={"filePath": path.name, **body})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in response.text
    assert await db.import_state.count_documents({}) == 0


async def test_a_broken_quote_is_one_rejected_row_and_the_import_goes_on_at_the_next_line(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    """Issue 12, item 5: the 1,999-row file of the report, its broken quote on line 3. The quoted field it opens
    runs into the next row's quoted field, which cannot close it (a quote before text): line 3 is rejected, with
    its line number, and every other row is imported (it was 2 rows of 1,999 before issue 12, then a FAILED job)."""
    rows = [good_row(i) for i in range(1, 2000)]
    rows[1] = rows[1].replace('"Likes tea"', '"Likes tea')
    path = write(import_dir / "broken-quote.csv", [HEADER, *rows])
    await start(client, path.name)
    progress = await wait_done(client)
    assert (progress["status"], progress["rowsInserted"], progress["rowsInvalid"]) == ("COMPLETED", 1998, 1), progress
    assert await db.customers.count_documents({}) == 1998
    [rejected] = [r async for r in db.import_errors.find({"jobId": progress["jobId"]})]
    assert (rejected["line"], rejected["text"]) == (3, rows[1]), rejected
    assert rejected["reason"].startswith("malformed CSV")


class HeldSink(DrySink):
    """A dry sink whose writes wait until the test lets them go, once `hold()` is true (by default at once)."""

    def __init__(self, hold: Callable[[], bool] = lambda: True) -> None:
        self.writing, self.release = asyncio.Event(), asyncio.Event()
        self.hold, self.line = hold, 0  # the first line of the batch being written

    async def write(self, batch: Batch) -> Written:
        self.line = batch.lines[0]
        if not self.hold():
            return await super().write(batch)
        self.writing.set()
        await self.release.wait()
        return await super().write(batch)


async def dry_job(path: Path, fmt: CsvFormat, header_end: int, header_lines: int) -> JobState:
    """A RUNNING dry-run job of `path` read as `fmt`, from just after its header, owned by "test" with a live lease
    (a job with no heartbeat counts as released: the session app's watcher would take it over)."""
    identity = await file_identity(path)
    return JobState(
        job_id=uuid.uuid4().hex,
        status=Status.RUNNING,
        file_path=str(path),
        file_size=int(identity["size"]),
        file_identity=identity,
        mode="insert",
        batch_size=50,
        dry_run=True,
        csv=fmt,
        bytes_read=0 if fmt.streamed else header_end,
        stream_offset=header_end if fmt.streamed else 0,
        lines_read=header_lines,
        owner="test",
        heartbeat_at=now(),
    )


async def test_a_file_appended_to_during_the_import_is_read_only_up_to_its_size_at_the_start(
    db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    """Issue 12, item 6: the rows appended while the first block is being written are not imported."""
    settings = with_settings(settings, import_block_bytes=4096, import_blocks_in_flight=1)
    path = write(import_dir / "growing.csv", [HEADER, *(good_row(i) for i in range(1, 201))])
    header = await read_header(path, settings.import_max_record_bytes)
    state = await dry_job(path, CsvFormat(), header.end, header.lines)
    store, sink, pool = JobStore(db), HeldSink(), parser_pool(1)
    await store.claim_new(state)
    run = ImportRun(
        state,
        path,
        map_header(header.record),
        store=store,
        sink=sink,
        pool=pool,
        settings=settings,
        control=Control.new(),
    )
    try:
        task = asyncio.create_task(run.run())
        await sink.writing.wait()
        with path.open("ab") as file:
            file.write(("\n".join(good_row(i) for i in range(201, 301)) + "\n").encode())
        sink.release.set()
        assert await task == Status.COMPLETED
    finally:
        pool.shutdown()
    assert (state.rows_processed, state.bytes_read) == (200, state.file_size)


class Submitted(concurrent.futures.Executor):
    """The real pool, keeping every future it was given (the test sees when a block's parse is done)."""

    def __init__(self, pool: concurrent.futures.Executor) -> None:
        self.pool, self.futures = pool, []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        self.futures.append(self.pool.submit(fn, *args, **kwargs))
        return self.futures[-1]

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


async def test_a_block_that_fails_the_job_lets_the_blocks_before_it_finish_and_counts_them(
    db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    """A block whose parse fails the job (here a cp1252 record within the byte limit as read, over it as UTF-8)
    waits for the blocks before it, still being written, to finish and be accounted: FAILED counts every row
    written (a hostile user's import whose file changed under it had written 16,634 rows and counted none)."""
    settings = with_settings(settings, import_block_bytes=4096, import_blocks_in_flight=2, import_max_record_bytes=2000)
    rows = [good_row(i) for i in range(1, 201)]
    rows[69] = good_row(70, about="é" * 1500)  # 1,500 bytes in cp1252, 3,000 in UTF-8
    path = import_dir / "expanding.csv"
    path.write_bytes(("\n".join([HEADER, *rows]) + "\n").encode("cp1252"))
    fmt, header = await inspect(path, CsvFormat(encoding="cp1252"), settings.import_max_record_bytes)
    cuts = [b async for b in read_blocks(path, start=header.end, first_line=2, block_bytes=4096, max_record=2000)]
    assert cuts[2].first_line <= 71 < cuts[3].first_line  # the long record is in block 2
    state = await dry_job(path, fmt, header.end, header.lines)
    second = range(cuts[1].first_line, cuts[2].first_line)  # block 1's writes wait for the test
    store, held, pool = JobStore(db), HeldSink(hold=lambda: held.line in second), Submitted(parser_pool(1))
    await store.claim_new(state)
    try:
        columns = map_header(header.record, encoding="cp1252")
        control = Control.new()
        run = ImportRun(state, path, columns, store=store, sink=held, pool=pool, settings=settings, control=control)
        task = asyncio.create_task(run.run())
        await until(lambda: len(pool.futures) == 3 and pool.futures[2].done())  # block 2's parse has failed
        assert not held.release.is_set() and "IMPORT_MAX_RECORD_BYTES" in (pool.futures[2].result().fatal or "")
        await asyncio.sleep(0.2)  # a pipeline that cancels block 1 now would show it (this one waits for block 1)
        held.release.set()
        assert await task == Status.FAILED
    finally:
        pool.shutdown()
    stored = await store.get(state.job_id)
    assert stored is not None and "IMPORT_MAX_RECORD_BYTES" in (stored.error or ""), stored
    rows_before = cuts[2].first_line - 2
    assert (stored.bytes_read, stored.rows_processed, stored.rows_inserted) == (cuts[2].start, rows_before, rows_before)


@pytest.mark.parametrize(
    ("encoding", "delimiter", "ending", "packed"), [("cp1252", ";", "\r", False), ("utf-16", "\t", "\r\n", True)]
)
async def test_a_cancelled_job_resumes_with_its_stored_format_to_exact_counts(
    db: AsyncDatabase, import_dir: Path, settings: Settings, encoding: str, delimiter: str, ending: str, packed: bool
) -> None:
    settings = with_settings(settings, import_block_bytes=2048, import_blocks_in_flight=1)
    lines = [delimiter.join(["Customer Id", "First Name", "About"])]
    lines += [delimiter.join([f"C{i}", "Zoë", f'"Straße{delimiter} ø{ending}end"']) for i in range(1, 301)]
    lines.append(delimiter.join(["C0", "Bad", "not\udc81cp1252" if encoding == "cp1252" else "x\x07y"]))
    data = ending.join(lines).encode(encoding, "surrogateescape") + ending.encode(encoding)
    path = import_dir / f"resume-{encoding}.csv"
    path.write_bytes(gzip.compress(data) if packed else data)
    fmt, header = await inspect(path, CsvFormat("auto", "auto", '"', "auto"), settings.import_max_record_bytes)
    assert (fmt.encoding, fmt.delimiter, fmt.compression) == (encoding, delimiter, "gzip" if packed else None)
    state = await dry_job(path, fmt, header.end, header.lines)
    codec = "utf-8" if encoding == "utf-16" else encoding
    columns = map_header(header.record, encoding=codec, delimiter=delimiter)
    # the first block is written and accounted; the second one's write is held, and abandoned by the cancel
    store, held, pool = JobStore(db), HeldSink(hold=lambda: state.rows_processed > 0), parser_pool(1)
    await store.claim_new(state)
    try:
        control = Control.new()
        first = asyncio.create_task(
            ImportRun(state, path, columns, store=store, sink=held, pool=pool, settings=settings, control=control).run()
        )
        await held.writing.wait()
        control.request_cancel()
        held.release.set()
        assert await first == Status.CANCELLED
        stored = await store.get(state.job_id)
        assert stored is not None and stored.csv == fmt and 0 < stored.rows_processed < 301, stored
        resumed = await store.reopen(state.job_id, "test")
        second = ImportRun(
            resumed, path, columns, store=store, sink=DrySink(), pool=pool, settings=settings, control=Control.new()
        )
        assert await second.run() == Status.COMPLETED
    finally:
        pool.shutdown()
    final = await store.get(state.job_id)
    assert final is not None
    assert (final.rows_processed, final.rows_inserted, final.rows_invalid) == (301, 300, 1)
    assert (final.bytes_read, final.lines_read) == (final.file_size, 1 + 2 * 300 + 1)
    reason = "not valid CP1252" if encoding == "cp1252" else "about contains a control character"
    assert [r["reason"] async for r in db.import_errors.find({"jobId": state.job_id})] == [reason]
