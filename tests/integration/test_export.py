"""GET /customers/export on the real server: content of both formats, filters (the list's own), fields, 400s,
gzip, the token, and values that must survive as written. Streaming, backpressure and the bound on concurrent
exports: tests/integration/test_export_stream.py. The round trip: tests/integration/test_export_round_trip.py."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.asgi import create_app
from app.customers.document import index_keys
from app.customers.export import COLUMNS, IMPORTED
from app.customers.repository import _filter
from app.imports.reading.header import map_header
from app.settings import Settings
from tests.helpers.answers import assert_problem
from tests.helpers.settings import with_settings

NOW = dt.datetime(2026, 11, 23, 8, 30, 15, 123000, tzinfo=dt.UTC)
# Values that break naive CSV writers and readers, and an HTML payload: each must come back as written.
HOSTILE = {
    "comma": "Acme, Inc.",
    "quotes": 'The "Best" Company',
    "newlines": "line one\nline two\r\nline three",
    "cr": "carriage\rreturn",
    "non-ascii": "Zoë Łukasz 北京 🙂",
    "html": "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "formula": '=HYPERLINK("http://x")',
    "only-quote": '"',
    "separators": ',;\t|"',
}


def stored(customer_id: str, **fields: Any) -> dict[str, Any]:
    """A customer as the importer stores it, with its internal fields (keys, job id, line, hash)."""
    doc = {"_id": customer_id, **fields, "createdAt": NOW, "updatedAt": NOW}
    internal = {"importJobId": "job-1", "importLine": 7, "importHash": "abc"}
    return {**doc, **index_keys(doc), **internal}


@pytest.fixture
async def people(db: AsyncDatabase) -> list[dict[str, Any]]:
    """40 customers (inserted out of order) with overlapping names, shared emails, missing fields and a hostile
    value in each field in turn."""
    docs = []
    hostile = list(HOSTILE.values())
    for i in range(40):
        fields: dict[str, Any] = {
            "firstName": ["Ann", "Anna", "Bob", "Zoë"][i % 4],
            "lastName": "Lee" if i % 3 else "Annan",
            "email": "shared@x.org" if i % 7 == 0 else f"c{i}@Example.com",
            "subscriptionDate": dt.datetime(2020, 1 + i % 12, 1 + i % 28, tzinfo=dt.UTC),
        }
        if i % 5:
            fields["country"] = ["France", "france", "Sweden", "USA"][i % 4]
        field = list(IMPORTED)[1 + i % (len(IMPORTED) - 1)]
        if field not in ("email", "subscriptionDate"):
            fields[field] = hostile[i % len(hostile)]
        doc = stored(f"c{(i * 17) % 40:03d}", **fields)
        if i == 3:
            doc["handEdited"] = True
        docs.append(doc)
    await db.customers.insert_many(docs)
    return sorted(docs, key=lambda doc: doc["_id"])


def rows_of(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def as_csv(doc: dict[str, Any], field: str) -> str:
    value = doc.get("_id" if field == "customerId" else field)
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    return "" if value is None else str(value)


async def test_csv_has_the_importers_header_and_every_customer_in_id_order(
    client: AsyncTestClient, people: list[dict[str, Any]]
) -> None:
    response = await client.get("/customers/export")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="customers-{dt.datetime.now(dt.UTC).date().isoformat()}.csv"'
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    header, _, _ = response.content.partition(b"\r\n")
    assert header == ",".join(IMPORTED.values()).encode()
    assert map_header(header).fields == tuple(IMPORTED)  # the importer reads every column as the field it was
    rows = rows_of(response.content.decode("utf-8"))
    assert [row["Customer Id"] for row in rows] == [doc["_id"] for doc in people]
    for row, doc in zip(rows, people, strict=True):
        assert row == {IMPORTED[field]: as_csv(doc, field) for field in IMPORTED}


async def test_csv_is_rfc_4180_crlf_records_with_quoted_specials(client: AsyncTestClient, db: AsyncDatabase) -> None:
    await db.customers.insert_many(
        [stored(f"h-{name}", firstName=value, lastName="x") for name, value in HOSTILE.items()]
    )
    response = await client.get("/customers/export", params={"fields": "customerId,firstName"})
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n")
    expected = "Customer Id,First Name\r\n" + "".join(
        f"h-{name},{_quoted(value)}\r\n" for name, value in sorted(HOSTILE.items())
    )
    assert text == expected
    assert {row["First Name"] for row in rows_of(text)} == set(HOSTILE.values())


def _quoted(value: str) -> str:
    """RFC 4180: a field with a comma, quote, CR or LF is quoted and its quotes doubled; others as they are."""
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


async def test_ndjson_is_one_object_per_line_with_the_apis_names(
    client: AsyncTestClient, people: list[dict[str, Any]]
) -> None:
    response = await client.get("/customers/export", params={"format": "ndjson"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].endswith('.ndjson"')
    assert response.content.endswith(b"\n")
    lines = [json.loads(line) for line in response.content.decode("utf-8").splitlines()]
    assert [line["customerId"] for line in lines] == [doc["_id"] for doc in people]
    for line, doc in zip(lines, people, strict=True):
        expected = {field: as_csv(doc, field) for field in IMPORTED if as_csv(doc, field)}  # absent: left out
        assert line == expected
        api = (await client.get(f"/customers/{doc['_id']}")).json()
        assert {key: api[key] for key in line} == line  # as GET /customers/{id} writes each value


FILTERS = [
    {"q": "ann"},
    {"q": "ANNA"},
    {"q": "zoë"},
    {"q": "annan"},
    {"country": "FRANCE"},
    {"email": "Shared@X.org"},
    {"email": "nobody@x.org"},
    {"country": "france", "q": "b"},
    {"email": "shared@x.org", "country": "Sweden", "q": "a"},
]


@pytest.mark.parametrize("filters", FILTERS, ids=str)
@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_filters_export_what_the_list_shows(
    client: AsyncTestClient, people: list[dict[str, Any]], filters: dict[str, str], fmt: str
) -> None:
    listed = (await client.get("/customers", params={**filters, "limit": 500})).json()
    assert listed.get("nextCursor") is None
    response = await client.get("/customers/export", params={**filters, "format": fmt})
    text = response.content.decode("utf-8")
    if fmt == "csv":
        ids = [row["Customer Id"] for row in rows_of(text)]
    else:
        ids = [json.loads(line)["customerId"] for line in text.splitlines()]
    assert ids == [item["customerId"] for item in listed["items"]]


async def test_fields_choose_the_columns_in_the_order_given(
    client: AsyncTestClient, people: list[dict[str, Any]]
) -> None:
    fields = "email,customerId,subscriptionDate,handEdited,createdAt,updatedAt"
    response = await client.get("/customers/export", params={"fields": fields})
    rows = rows_of(response.content.decode())
    assert list(rows[0]) == ["Email", "Customer Id", "Subscription Date", "Hand Edited", "Created At", "Updated At"]
    edited = {doc["_id"] for doc in people if doc.get("handEdited")}
    api = (await client.get(f"/customers/{people[0]['_id']}")).json()
    for row, doc in zip(rows, people, strict=True):
        assert row["Hand Edited"] == ("true" if doc["_id"] in edited else "false")
        assert row["Created At"] == row["Updated At"] == api["createdAt"] == "2026-11-23T08:30:15.123000Z"
        assert row["Subscription Date"] == doc["subscriptionDate"].date().isoformat()
    lines = (await client.get("/customers/export", params={"fields": fields, "format": "ndjson"})).text.splitlines()
    first = json.loads(lines[0])
    assert list(first) == fields.split(",") and first["handEdited"] in (True, False)


@pytest.mark.parametrize("fmt", ["csv", "ndjson"])
async def test_internal_fields_never_leave(client: AsyncTestClient, people: list[dict[str, Any]], fmt: str) -> None:
    every = ",".join(COLUMNS)
    text = (await client.get("/customers/export", params={"format": fmt, "fields": every})).text
    for internal in ("searchKeys", "searchTerms", "emailKey", "countryKey", "importJobId", "importLine", "importHash"):
        assert internal not in text
    assert "job-1" not in text and '"_id"' not in text


@pytest.mark.parametrize(
    "params",
    [
        {"format": "xml"},
        {"format": ""},
        {"fields": "bogus"},
        {"fields": "searchKeys"},
        {"fields": "importJobId"},
        {"fields": "_id"},
        {"fields": "email,email"},
        {"fields": ""},
        {"fields": "email,"},
        {"compress": "zip"},
        {"q": ""},
        {"q": "a\x01"},
        {"email": "x" * 257},
        {"country": "y" * 257},
        {"limit": "10"},
        {"email[$ne]": "x"},
    ],
    ids=str,
)
async def test_bad_parameters_are_400_problems(
    client: AsyncTestClient, people: list[dict[str, Any]], params: dict[str, str]
) -> None:
    response = await client.get("/customers/export", params=params)
    body = assert_problem(response, 400, "Invalid input")
    listing = {key: value for key, value in params.items() if key in ("q", "email", "country")}
    if listing:  # the list refuses the same filter, with the same words
        assert assert_problem(await client.get("/customers", params=listing), 400)["detail"] == body["detail"]


async def test_gzip_when_accepted_and_a_gz_file_when_asked(
    client: AsyncTestClient, people: list[dict[str, Any]]
) -> None:
    plain = (await client.get("/customers/export", headers={"accept-encoding": "identity"})).content
    assert plain.startswith(b"Customer Id,")
    encoded = await client.get("/customers/export", headers={"accept-encoding": "br;q=1, gzip;q=0.5"})
    assert encoded.headers["content-encoding"] == "gzip" and encoded.headers["vary"] == "Accept-Encoding"
    assert encoded.content == plain  # httpx undoes the Content-Encoding
    assert encoded.headers["content-disposition"].endswith('.csv"')
    refused = await client.get("/customers/export", headers={"accept-encoding": "gzip;q=0, *"})
    assert "content-encoding" not in refused.headers and refused.content == plain
    for accept in ("gzip", "identity"):  # a .gz file is never encoded twice
        filed = await client.get("/customers/export", params={"compress": "gzip"}, headers={"accept-encoding": accept})
        assert filed.headers["content-type"] == "application/gzip" and "content-encoding" not in filed.headers
        assert filed.headers["content-disposition"].endswith('.csv.gz"')
        assert gzip.decompress(filed.content) == plain
    ndjson = await client.get("/customers/export", params={"compress": "gzip", "format": "ndjson"})
    assert ndjson.headers["content-disposition"].endswith('.ndjson.gz"')
    assert gzip.decompress(ndjson.content).count(b"\n") == len(people)


async def test_no_match_is_the_header_alone_in_csv_and_empty_in_ndjson(
    client: AsyncTestClient, people: list[dict[str, Any]]
) -> None:
    csv_body = (await client.get("/customers/export", params={"q": "nobody"})).content
    assert csv_body == ",".join(IMPORTED.values()).encode() + b"\r\n"
    ndjson = await client.get("/customers/export", params={"q": "nobody", "format": "ndjson"})
    assert ndjson.status_code == 200 and ndjson.content == b""
    filed = await client.get("/customers/export", params={"q": "nobody", "format": "ndjson", "compress": "gzip"})
    assert gzip.decompress(filed.content) == b""


async def test_a_customer_cannot_be_called_export(client: AsyncTestClient, db: AsyncDatabase) -> None:
    """GET /customers/export is the export: a customer with that id could never be read, changed or deleted."""
    body = {"customerId": "export", "firstName": "A", "lastName": "B", "email": "a@b.c"}
    assert_problem(await client.post("/customers", json=body), 400)
    assert (await client.post("/customers", json={**body, "customerId": "Export"})).status_code == 201


@pytest.mark.parametrize(
    ("filters", "index"),
    [({}, "_id_"), ({"q": "ann"}, "searchKeys_id"), ({"email": "c3@x.org"}, "emailKey_id"), ({"country": "F"}, None)],
    ids=str,
)
async def test_the_export_walks_an_index_in_id_order_without_a_sort(
    db: AsyncDatabase, people: list[dict[str, Any]], filters: dict[str, str], index: str | None
) -> None:
    query = {"email": None, "country": None, "q": None, **filters}
    explained = await db.customers.find(_filter(**query)).sort("_id", 1).batch_size(10).explain()
    plan = _stages(explained["queryPlanner"]["winningPlan"])
    assert not any(stage.startswith("SORT") for stage in plan), plan
    scans = [stage for stage in plan if stage.startswith("IXSCAN")]
    assert len(scans) == 1 and (index is None or scans[0] == f"IXSCAN({index})"), plan


def _stages(plan: dict[str, Any]) -> list[str]:
    named = plan["stage"] + (f"({plan['indexName']})" if "indexName" in plan else "")
    below = [plan["inputStage"]] if "inputStage" in plan else plan.get("inputStages", [])
    return [named, *(stage for child in below for stage in _stages(child))]


TOKEN = "export token"


@pytest.fixture(scope="module")
async def guarded(settings: Settings) -> AsyncIterator[AsyncTestClient]:
    app = create_app(with_settings(settings, api_token=TOKEN, mongodb_db=f"export_{uuid.uuid4().hex[:8]}"))
    async with AsyncTestClient(app, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        ({}, {}, 401),
        ({"authorization": "Bearer wrong"}, {}, 401),
        ({}, {"access_token": "wrong"}, 401),
        ({"authorization": f"Bearer {TOKEN}"}, {}, 200),
        ({}, {"access_token": TOKEN}, 200),  # a browser's download link cannot send a header
    ],
)
async def test_the_token_is_required(
    guarded: AsyncTestClient, headers: dict[str, str], params: dict[str, str], status: int
) -> None:
    response = await guarded.get("/customers/export", headers=headers, params=params)
    if status == 401:
        assert_problem(response, 401)
    else:
        assert response.status_code == 200 and response.content.startswith(b"Customer Id,")


def test_the_openapi_document_describes_the_export(settings: Settings) -> None:
    schema = create_app(settings).openapi_schema.to_schema()
    operation = schema["paths"]["/customers/export"]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"email", "country", "q", "format", "fields", "compress"} <= names
    assert "503" in operation["responses"] and "400" in operation["responses"]
    assert "text/csv" in json.dumps(operation["responses"]["200"])
