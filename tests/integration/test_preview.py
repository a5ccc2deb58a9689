"""POST /import/preview (issue 20): the preview of every format equals what the import of the same file then stores;
mapped columns; what a write would do to each row; the bound on what it reads; no job, no write."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.errors import Unavailable
from app.imports.sample import read_bound
from app.imports.schemas import ImportRequest
from app.imports.service import PREVIEWS_AT_ONCE, ImportService
from app.settings import Settings
from tests.helpers import (
    ENDINGS,
    HEADER,
    assert_problem,
    csv_text,
    good_row,
    intact_customers,
    start,
    until,
    wait_done,
    write,
)


async def preview(client: AsyncTestClient, file: str, limit: int = 200, **options: Any) -> dict[str, Any]:
    response = await client.post(f"/import/preview?limit={limit}", json={"filePath": file, **options})
    assert response.status_code == 200, response.text
    return response.json()


async def assert_stored_as_previewed(
    client: AsyncTestClient, db: AsyncDatabase, shown: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """Import the previewed file with the same body; every row is stored (or rejected) as the preview said."""
    job = await start(client, shown["filePath"], **options)
    assert job["csv"] == shown["csv"], (job["csv"], shown["csv"])
    progress = await wait_done(client)
    assert progress["status"] == "COMPLETED", progress
    valid = [row for row in shown["rows"] if row["customer"]]
    invalid = [{key: row[key] for key in ("line", "reason", "text")} for row in shown["rows"] if not row["customer"]]
    assert shown["rowsRead"] == progress["rowsProcessed"] == len(shown["rows"])  # the whole file was shown
    for row in valid:
        got = (await client.get(f"/customers/{quote(row['customer']['customerId'], safe='')}")).json()
        assert {key: got.get(key) for key in row["customer"]} == row["customer"]
        assert set(got) - set(row["customer"]) <= {"createdAt", "updatedAt", "handEdited"}, got  # nothing more
        stored = await db.customers.find_one({"_id": row["customer"]["customerId"]}, {"importLine": 1})
        assert stored is not None and stored["importLine"] == row["line"]
    assert await db.customers.count_documents({}) == len(valid) == progress["rowsInserted"]
    errors = (await client.get("/import/errors")).json()["items"]
    assert errors == invalid
    return progress


@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "latin-1", "utf-16"])
async def test_the_preview_of_every_format_is_what_the_import_stores(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, encoding: str, delimiter: str, ending: str
) -> None:
    rows = intact_customers(emoji=encoding.startswith("utf"))
    path = import_dir / f"preview-{encoding}.csv"
    path.write_bytes(csv_text(rows, delimiter, ENDINGS[ending]).encode(encoding))
    options = {"encoding": "latin-1" if encoding == "latin-1" else "auto"}
    shown = await preview(client, path.name, **options)
    assert shown["csv"] == {
        "delimiter": delimiter,
        "encoding": encoding,
        "quote": '"',
        "lineEnding": ending,
        "compression": None,
        "columns": {},
    }
    how = "given" if encoding == "latin-1" else "detected"
    expected = {"delimiter": "detected", "encoding": how, "quote": "given", "lineEnding": "detected"}
    assert shown["decided"] == {**expected, "compression": "detected"}
    assert [row["customer"] for row in shown["rows"][:-1]] == rows
    assert [(row["stored"], row["outcome"]) for row in shown["rows"]][:2] == [(False, "insert")] * 2
    assert (shown["rowsEstimate"], shown["rowsEstimateExact"], shown["fileSize"]) == (41, True, path.stat().st_size)
    assert await db.import_state.count_documents({}) == 0  # no job
    await assert_stored_as_previewed(client, db, shown, options)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
async def test_a_gzip_file_previews_like_any_other(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, encoding: str
) -> None:
    rows = intact_customers(emoji=encoding != "cp1252")
    path = import_dir / f"preview-{encoding}.csv.gz"
    path.write_bytes(gzip.compress(csv_text(rows, ";", "\r\n").encode(encoding)))
    shown = await preview(client, path.name, encoding="auto")
    assert (shown["csv"]["compression"], shown["csv"]["encoding"], shown["csv"]["lineEnding"]) == (
        "gzip",
        encoding,
        "CRLF",
    )
    assert [row["customer"] for row in shown["rows"][:-1]] == rows
    await assert_stored_as_previewed(client, db, shown, {"encoding": "auto"})


async def test_a_mapped_file_previews_and_imports_what_the_preview_showed(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    lines = ["Cust #,Given,Family,Mail,Shoe size,First Name", "K1,Ann,Lee,a@b.c,38,X", "K2,Bob,,not-mail,41,Y"]
    path = write(import_dir / "preview-mapped.csv", [*lines, "K3,<script>alert(1)</script>,Roe,,40,Z"])
    refused = await client.post("/import/preview", json={"filePath": path.name})
    problem = assert_problem(refused, 400, "Cannot import this file")
    assert "no customer id column" in problem["detail"]
    assert (problem["csv"]["delimiter"], problem["decided"]["delimiter"]) == (",", "detected")
    unmapped = [(c["name"], c["field"], c["reason"]) for c in problem["columns"]]  # what a client can map
    assert unmapped == [(n, None, "ignored") for n in lines[0].split(",")[:5]] + [
        ("First Name", "firstName", "recognised")
    ]
    columns = {"Cust #": "customerId", "Given": "firstName", "Family": "lastName", "Mail": "email"}
    shown = await preview(client, path.name, columns=columns)
    assert [(c["name"], c["field"], c["reason"]) for c in shown["columns"]] == [
        ("Cust #", "customerId", "mapped"),
        ("Given", "firstName", "mapped"),
        ("Family", "lastName", "mapped"),
        ("Mail", "email", "mapped"),
        ("Shoe size", None, "ignored"),
        ("First Name", None, "ignored"),  # recognised by its name, but `columns` gives firstName to Given
    ]
    assert shown["rows"][0]["customer"] == {"customerId": "K1", "firstName": "Ann", "lastName": "Lee", "email": "a@b.c"}
    assert shown["rows"][1] == {
        "line": 3,
        "customer": None,
        "stored": False,
        "outcome": None,
        "reason": "invalid email 'not-mail'",
        "text": "K2,Bob,,not-mail,41,Y",
    }
    assert shown["rows"][2]["customer"]["firstName"] == "<script>alert(1)</script>"
    progress = await assert_stored_as_previewed(client, db, shown, {"columns": columns})
    assert progress["ignoredColumns"] == ["Shoe size", "First Name"]


async def test_each_row_says_what_a_write_would_do_to_it(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    path = write(
        import_dir / "preview-outcomes.csv", [HEADER, *(good_row(i) for i in range(1, 5)), good_row(9, "C0000001")]
    )
    first = await preview(client, path.name)
    assert [row["outcome"] for row in first["rows"]] == ["insert"] * 4 + ["duplicate"]  # the first row of an id wins
    await start(client, path.name)
    await wait_done(client)
    again = await preview(client, path.name)
    assert [(row["stored"], row["outcome"]) for row in again["rows"]] == [(True, "duplicate")] * 5
    assert (await client.patch("/customers/C0000002", json={"city": "Lyon"})).status_code == 200
    write(path, [HEADER, good_row(1), good_row(2), good_row(3, about="Changed"), good_row(4), good_row(5)])
    resync = await preview(client, path.name, mode="upsert")
    assert [row["outcome"] for row in resync["rows"]] == ["unchanged", "protected", "update", "unchanged", "insert"]
    assert [row["stored"] for row in resync["rows"]] == [True] * 4 + [False]


async def test_a_preview_writes_nothing_and_bounds_its_limit(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    path = write(import_dir / "preview-limit.csv", [HEADER, *(good_row(i) for i in range(1, 301))])
    default = await preview(client, path.name, limit=20)
    assert [row["line"] for row in default["rows"]] == list(range(2, 22))
    widest = await preview(client, path.name, limit=200)
    assert len(widest["rows"]) == 200 and widest["rowsRead"] == widest["rowsEstimate"] == 300
    for limit in (0, 201):
        assert_problem(await client.post(f"/import/preview?limit={limit}", json={"filePath": path.name}), 400)
    assert await db.customers.count_documents({}) == 0
    assert await db.import_state.count_documents({}) == 0


def rchar() -> int:
    """Bytes this process has read with read() and its kin, from any file or socket (Linux)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["rchar"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
async def test_the_preview_of_a_2_gb_file_reads_at_most_its_bound(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings, encoding: str
) -> None:
    """2 GB whose first 1.5 MiB of text are rows and the rest a hole (a sparse file: no 2 GB written): read past its
    bound, the preview would read the hole's NUL bytes (and fail on a record longer than IMPORT_MAX_RECORD_BYTES)."""
    path = import_dir / f"preview-2gb-{encoding}.csv"
    path.write_bytes(("\n".join([HEADER, *(good_row(i) for i in range(1, 12_000))]) + "\n").encode(encoding))
    rows_bytes = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(2_000_000_000)
    before = rchar()
    shown = await preview(client, path.name, encoding="auto")
    read = rchar() - before
    bound = read_bound(settings.import_max_record_bytes, utf16=encoding == "utf-16")
    assert read <= bound, (read, bound)
    assert shown["csv"]["encoding"] == encoding
    assert shown["bytesRead"] <= read and shown["rowsRead"] < 12_000 and not shown["rowsEstimateExact"]
    assert (shown["fileSize"], len(shown["rows"])) == (2_000_000_000, 200)
    rows = 2_000_000_000 / (rows_bytes / 12_000)  # the estimate takes the whole file for rows like the ones read
    assert abs(shown["rowsEstimate"] - rows) / rows < 0.05, shown
    path.unlink()


@pytest.mark.parametrize("extra", [10, 2_000_000])  # cut into a block and refused by the parser; never cut
async def test_a_record_longer_than_the_limit_is_a_clear_400(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings, extra: int
) -> None:
    huge = "x" * (settings.import_max_record_bytes + extra)
    path = write(import_dir / "preview-huge.csv", ["Customer Id,About", "C1,fine", f'C2,"{huge}"', "C3,fine"])
    response = await client.post("/import/preview", json={"filePath": path.name})
    detail = assert_problem(response, 400, "Cannot import this file")["detail"]
    assert detail.startswith("preview-huge.csv: ") and "line 3 " in detail, detail
    assert f"IMPORT_MAX_RECORD_BYTES ({settings.import_max_record_bytes} bytes); an unterminated quote?" in detail
    assert await db.import_state.count_documents({}) == 0


async def test_a_recognised_column_mapped_to_ignore_feeds_nothing(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    path = write(import_dir / "preview-ignore.csv", ["Customer Id,First Name,Phone 1", "C1,Ann,+33 1", "C2,Bob,+44 2"])
    columns = {"Phone 1": "ignore", "First Name": "ignore"}
    shown = await preview(client, path.name, columns=columns)
    assert [(c["name"], c["field"], c["reason"]) for c in shown["columns"]] == [
        ("Customer Id", "customerId", "recognised"),
        ("First Name", None, "mapped"),
        ("Phone 1", None, "mapped"),
    ]
    assert [row["customer"] for row in shown["rows"]] == [{"customerId": "C1"}, {"customerId": "C2"}]
    progress = await assert_stored_as_previewed(client, db, shown, {"columns": columns})
    assert progress["ignoredColumns"] == ["First Name", "Phone 1"]
    refused = await client.post("/import/preview", json={"filePath": path.name, "columns": {"Customer Id": "ignore"}})
    assert "no customer id column" in assert_problem(refused, 400)["detail"]


async def test_the_openapi_document_describes_the_preview(client: AsyncTestClient) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    operation = schema["paths"]["/import/preview"]["post"]
    assert "#/components/schemas/ImportRequest" in str(operation["requestBody"])  # the body of POST /import/sync
    [limit] = operation["parameters"]
    assert (limit["name"], limit["schema"]["minimum"], limit["schema"]["maximum"]) == ("limit", 1, 200)
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ImportPreview")
    components = schema["components"]["schemas"]
    assert {"csv", "decided", "columns", "rows", "rowsEstimate", "fileSize"} <= set(
        components["ImportPreview"]["properties"]
    )
    assert components["PreviewRow"]["properties"]["outcome"]["enum"][:5] == [
        "insert",
        "duplicate",
        "update",
        "unchanged",
        "protected",
    ]


class HeldPool(concurrent.futures.Executor):
    """A worker pool whose parses wait until the test lets them run (here, in this process)."""

    def __init__(self) -> None:
        self.held: list[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.held.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in self.held:
            future.set_result(fn(*args))


async def test_one_preview_more_than_the_bound_is_a_503(
    db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    """On a service of its own (the test client answers one request at a time): its parses wait for the test."""
    path = write(import_dir / "preview-busy.csv", [HEADER, good_row(1)])
    service = ImportService(db, settings)
    service.pool.shutdown()  # never started: no process
    service.pool = held = HeldPool()  # type: ignore[assignment]
    request = ImportRequest(file_path=path.name)
    running = [asyncio.create_task(service.preview(request, 20)) for _ in range(PREVIEWS_AT_ONCE)]
    await until(lambda: len(held.held) == PREVIEWS_AT_ONCE)  # each holds its slot, parsing
    with pytest.raises(Unavailable) as refused:
        await service.preview(request, 20)
    assert (refused.value.status, refused.value.headers) == (503, {"Retry-After": "1"})
    assert refused.value.detail == f"{PREVIEWS_AT_ONCE} previews are being read; retry in a moment"
    held.release()
    assert [len((await task).rows) for task in running] == [1] * PREVIEWS_AT_ONCE
    held.held.clear()
    again = asyncio.create_task(service.preview(request, 20))  # the slots are free again
    await until(lambda: len(held.held) == 1)
    held.release()
    assert len((await again).rows) == 1
