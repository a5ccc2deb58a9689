"""The dashboard's Export button in headless Chromium: it downloads the current search as the API's CSV, with the
API token in the link when the service needs one."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from pymongo import MongoClient

from app.customers.document import index_keys
from app.embedded import EmbeddedMongo
from app.settings import Settings
from tests.helpers.browser import Watched, browser_settings
from tests.helpers.served import Served, serve

TOKEN = "export from the dashboard"
HOSTILE_COMPANY = 'Quill, "Ink" & <b>Sons</b>'


def seed(uri: str, database: str) -> None:
    """20 customers named Yan… (a third in Norway, one with a hostile company) and 5 named Bea…."""
    now = dt.datetime.now(dt.UTC)
    docs = []
    for i, first in [(i, "Yan") for i in range(20)] + [(i, "Bea") for i in range(20, 25)]:
        doc = {"firstName": f"{first}{i:02d}", "lastName": "Quill", "email": f"c{i:02d}@example.com"}
        doc["country"] = "Norway" if i % 3 == 0 else "Chile"
        if i == 3:
            doc["company"] = HOSTILE_COMPANY
        docs.append({"_id": f"Y{i:03d}", **doc, **index_keys(doc), "createdAt": now, "updatedAt": now})
    with MongoClient(uri, tz_aware=True) as client:
        client[database].customers.delete_many({})
        client[database].customers.insert_many(docs)


def downloaded(page: Page) -> tuple[str, str, list[dict[str, str]]]:
    """Click Export; the download's URL, file name and rows."""
    with page.expect_download() as started:
        page.click("#customers-export")
    download = started.value
    path = download.path()
    assert path is not None, download.failure()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"), newline="")))
    return download.url, download.suggested_filename, rows


def test_export_downloads_the_current_search(dashboard: Served, watched: Watched, mongo_server: EmbeddedMongo) -> None:
    seed(mongo_server.uri, dashboard.settings.mongodb_db)
    page = watched.page
    page.goto(f"{dashboard.url}/ui/customers")
    page.fill("#search-q", "yan")
    page.fill("#search-country", "norway")
    page.press("#search-q", "Enter")
    expect(page.locator("#customers-table tbody tr")).to_have_count(7)
    url, name, rows = downloaded(page)
    assert "q=yan" in url and "country=norway" in url and "access_token" not in url
    assert name == f"customers-{dt.datetime.now(dt.UTC).date().isoformat()}.csv"
    assert [row["Customer Id"] for row in rows] == [f"Y{i:03d}" for i in range(0, 20, 3)]
    assert rows[1]["Company"] == HOSTILE_COMPANY and rows[1]["Country"] == "Norway"
    expect(page.locator("#customers-notice")).to_contain_text("Export started")

    page.click("#search-clear")  # a new search: the next export follows it
    expect(page.locator("#customers-table tbody tr")).to_have_count(25)
    _, _, everyone = downloaded(page)
    assert len(everyone) == 25


@pytest.fixture(scope="module")
def guarded(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("browser-export-token")
    with serve(browser_settings(settings, folder, api_token=TOKEN)) as served:
        yield served


def test_export_sends_the_token_when_one_is_set(guarded: Served, watched: Watched, mongo_server: EmbeddedMongo) -> None:
    watched.allow(r"status of 401")  # the requests made before the token is entered
    seed(mongo_server.uri, guarded.settings.mongodb_db)
    page = watched.page
    page.goto(f"{guarded.url}/ui/customers?q=bea")
    page.fill("#token-input", TOKEN)
    page.press("#token-input", "Enter")
    expect(page.locator("#customers-table tbody tr")).to_have_count(5)
    url, _, rows = downloaded(page)
    assert "access_token=" in url
    assert [row["First Name"] for row in rows] == [f"Bea{i}" for i in range(20, 25)]
