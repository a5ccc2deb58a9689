"""POST /import/preview (issue 20): the preview of every format equals what the import of the same file then stores;
mapped columns; what a write would do to each row; no job, no write (its bounds: test_preview_bounds.py)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.answers import assert_problem, start, wait_done
from tests.helpers.csvfiles import ENDINGS, HEADER, csv_text, good_row, intact_customers, write


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


async def test_a_resync_of_an_id_written_twice_is_previewed_as_it_is_imported(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    """Rows of one id in a re-sync are applied in file order, the last one winning. Before, the import compared
    each row of a batch with the customer stored before the batch: a later row equal to it was "unchanged" and
    never written, so the earlier row's change stayed; and a new id's identical second row was written and counted
    "updated". The preview compared each row with the id's first row: a third row equal to the second was an
    "update"."""
    path = write(import_dir / "preview-twice.csv", [HEADER, good_row(1), good_row(2)])
    await start(client, path.name)
    assert (await wait_done(client))["status"] == "COMPLETED"
    lines = [good_row(1, about="Changed"), good_row(3), good_row(1), good_row(3), good_row(2), good_row(2, about="X")]
    write(path, [HEADER, *lines, good_row(1)])
    shown = await preview(client, path.name, mode="upsert")
    outcomes = ["update", "insert", "update", "unchanged", "unchanged", "update", "unchanged"]
    assert [row["outcome"] for row in shown["rows"]] == outcomes
    await start(client, path.name, mode="upsert")
    progress = await wait_done(client)
    counted = [progress[f"rows{name}"] for name in ("Inserted", "Updated", "Unchanged", "Protected", "Duplicate")]
    assert counted == [outcomes.count(name) for name in ("insert", "update", "unchanged", "protected", "duplicate")]
    stored = {doc["_id"]: doc.get("about") async for doc in db.customers.find({}, {"about": 1})}
    assert stored == {"C0000001": "Likes tea", "C0000002": "X", "C0000003": "Likes tea"}  # each id's last row


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


async def test_two_columns_for_one_field_answer_the_columns_so_that_a_client_can_pick_one(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    """The dashboard shows its columns table only from what the 400 answers: without `columns` in it, a file with
    `Email` and `E-mail` could not be mapped from the dashboard, though the API imports it with `columns`."""
    lines = ["Customer Id,Email,E-mail,Shoe size", "C1,a@b.c,old@b.c,38", "C2,b@b.c,,41"]
    path = write(import_dir / "preview-two-emails.csv", lines)
    refused = await client.post("/import/preview", json={"filePath": path.name})
    problem = assert_problem(refused, 400, "Cannot import this file")
    assert "two columns for email: 'Email' and 'E-mail'" in problem["detail"]
    assert (problem["csv"]["delimiter"], problem["decided"]["delimiter"]) == (",", "detected")
    assert [(c["name"], c["field"], c["reason"]) for c in problem["columns"]] == [
        ("Customer Id", "customerId", "recognised"),
        ("Email", "email", "recognised"),
        ("E-mail", "email", "recognised"),
        ("Shoe size", None, "ignored"),
    ]
    columns = {"E-mail": "ignore"}  # what the dashboard sends once that column is set to ignore
    shown = await preview(client, path.name, columns=columns)
    assert [row["customer"] for row in shown["rows"]] == [
        {"customerId": "C1", "email": "a@b.c"},
        {"customerId": "C2", "email": "b@b.c"},
    ]
    await assert_stored_as_previewed(client, db, shown, {"columns": columns})


async def test_a_header_of_a_million_columns_is_a_400(client: AsyncTestClient, import_dir: Path) -> None:
    path = import_dir / "preview-commas.csv"
    path.write_bytes(b"Customer Id" + b"," * 1_000_000 + b"\nC1\n")  # under IMPORT_MAX_RECORD_BYTES
    for route in ("/import/preview", "/import/sync"):
        refused = await client.post(route, json={"filePath": path.name})
        assert "the header has 1,000,001 columns" in assert_problem(refused, 400, "Cannot import this file")["detail"]


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
