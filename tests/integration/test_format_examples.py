"""The examples of other CSV formats ("Other CSV formats" in docs/importing.md), read from the page itself: each
JSON body imports the file it implies through POST /import/sync, exactly. The command-line examples: tests/system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.answers import wait_done
from tests.helpers.formats import ExampleFile, format_examples

EXAMPLES = format_examples()


def test_the_docs_section_shows_examples_and_each_one_is_read() -> None:
    """A reworded page must not make the test below pass with nothing to run."""
    assert EXAMPLES.unparsed == [], "an example line the test cannot read: update tests/helpers/formats.py"
    assert len(EXAMPLES.bodies) >= 2, EXAMPLES  # the option table's and the curl lines'
    assert {option for body in EXAMPLES.bodies for option in body} >= {"delimiter", "encoding", "quote", "columns"}


@pytest.mark.parametrize("body", EXAMPLES.bodies, ids=json.dumps)
async def test_each_documented_body_imports_the_file_it_implies_exactly(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, body: dict[str, Any]
) -> None:
    file = ExampleFile.of(body)
    (import_dir / file.name).write_bytes(file.content())

    response = await client.post("/import/sync", json=body)  # the body as the page shows it

    assert response.status_code == 202, response.text
    job = response.json()
    assert {key: job["csv"][key] for key in file.read_as()} == file.read_as(), job["csv"]
    progress = await wait_done(client)
    rows = file.rows()
    assert (progress["status"], progress["rowsInserted"], progress["rowsInvalid"]) == ("COMPLETED", len(rows), 0), (
        progress
    )
    for row in rows:
        got = (await client.get(f"/customers/{quote(row['customerId'])}")).json()
        assert {key: got.get(key) for key in row} == row
