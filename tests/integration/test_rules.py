"""Issue 12, item 4: the importer stores only what the API accepts, and every stored id is reachable over HTTP."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.answers import start, wait_done
from tests.helpers.ids import GOOD_IDS

BAD_ROWS = {  # CSV row -> the start of its rejection reason
    "a/b,Ann,x": "customer id 'a/b' has",
    "a?b,Ann,x": "customer id 'a?b' has",
    "a#b,Ann,x": "customer id 'a#b' has",
    "a%2Fb,Ann,x": "customer id 'a%2Fb' has",
    '"a b",Ann,x': "customer id 'a b' has",
    "a\tb,Ann,x": "customer id 'a\\tb' has",
    "a\x00b,Ann,x": "customer id 'a\\x00b' has",
    "..,Ann,x": "customer id '..' has",
    ".,Ann,x": "customer id '.' has",
    "I" * 65 + ",Ann,x": "customer id longer than 64 characters",
    "I" * 256 + ",Ann,x": "customer id longer than 64 characters",
    "N1," + "n" * 5000 + ",x": "firstName longer than 256 characters",
    "N2,A\x00nn,x": "firstName contains a control character",
    "N3,Ann,x\x1by": "about contains a control character",
    "N4,Ann," + "a" * 100_001: "about longer than 100000 characters",
}


async def test_every_imported_id_is_reachable_and_api_refused_rows_are_invalid(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path
) -> None:
    lines = ["Customer Id,First Name,About", *(f'"{i}",Ann,"tab\tand\nnewline"' for i in GOOD_IDS), *BAD_ROWS]
    path = import_dir / "rules.csv"
    path.write_bytes("\n".join(lines).encode() + b"\n")
    await start(client, path.name)
    progress = await wait_done(client)
    assert progress["status"] == "COMPLETED", progress
    assert (progress["rowsInserted"], progress["rowsInvalid"]) == (len(GOOD_IDS), len(BAD_ROWS))
    errors = (await client.get("/import/errors", params={"limit": 100})).json()["items"]
    first_bad = 2 + 2 * len(GOOD_IDS)  # the header, the good records (two lines each), then the bad ones
    expected = {line: reason for line, reason in enumerate(BAD_ROWS.values(), first_bad)}
    assert {e["line"]: e["reason"][: len(expected.get(e["line"], ""))] for e in errors} == expected

    stored = sorted(await db.customers.distinct("_id"))
    assert stored == sorted(GOOD_IDS)
    for customer_id in stored:
        url = f"/customers/{quote(customer_id, safe='')}"
        got = await client.get(url)
        assert got.status_code == 200, (customer_id, got.text)
        assert got.json()["customerId"] == customer_id
        assert got.json()["about"] == "tab\tand\nnewline"
        patched = await client.patch(url, json={"city": "Oslo"})
        assert patched.status_code == 200, (customer_id, patched.text)
        assert (await client.delete(url)).status_code == 204, customer_id
        assert (await client.get(url)).status_code == 404, customer_id
    assert await db.customers.count_documents({}) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"customerId": "a/b"},
        {"customerId": ".."},
        {"customerId": "I" * 65},
        {"customerId": "a\x00b"},
        {"customerId": "nl\n"},  # `$` in a Python pattern also matches before a final newline
        {"customerId": "..\n"},
        {"email": "a@b.c\n"},
        {"firstName": "n" * 257},
        {"firstName": " "},  # the importer trims it to nothing
        {"lastName": "\t\n"},
        {"firstName": "A\x00nn"},
        {"about": "x\x1by"},
        {"city": "x\x7fy"},
        {"email": "a\x00@b.c"},
    ],
)
async def test_the_api_refuses_what_the_importer_refuses(
    client: AsyncTestClient, db: AsyncDatabase, body: dict
) -> None:
    response = await client.post("/customers", json={"firstName": "Ann", "lastName": "Lee", "email": "a@b.c", **body})
    assert response.status_code == 400, response.text
    assert await db.customers.count_documents({}) == 0


async def test_the_api_accepts_tabs_and_newlines_in_text(client: AsyncTestClient, db: AsyncDatabase) -> None:
    body = {"customerId": "\u00e9t\u00e9", "firstName": "Ann", "lastName": "Lee", "email": "a@b.c", "about": "a\tb\nc"}
    assert (await client.post("/customers", json=body)).status_code == 201
    assert (await client.get(f"/customers/{quote(body['customerId'])}")).json()["about"] == "a\tb\nc"
