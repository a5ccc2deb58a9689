"""The dashboard in headless Chromium: imports, cancel and resume, customers, HTML payloads, the API token."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from playwright.sync_api import Page, expect
from pymongo import MongoClient

from app.customers.document import index_keys
from app.embedded import EmbeddedMongo
from app.settings import Settings
from tests.helpers.answers import COUNTERS
from tests.helpers.browser import WAIT_MS, Watched, browser_settings, shown
from tests.helpers.gates import gate_sinks, wait_until
from tests.helpers.served import Served, serve

XSS_NAME = "<img src=x onerror=alert(1)>"
XSS_ROW = "<script>alert(1)</script>"


def generated(generator: ModuleType, path: Path, rows: int, **rates: float) -> Path:
    generator.generate(path, rows=rows, **rates)
    return path


def tab_to(page: Page, selector: str, limit: int = 20) -> None:
    """Press Tab until the element `selector` has the focus (at most `limit` times)."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Tab")
    pytest.fail(f"{selector} not reached with {limit} Tabs")


def fits(page: Page) -> bool:
    """Nothing sticks out sideways (wide tables scroll inside their own box)."""
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def counters_shown(page: object) -> dict[str, int]:
    return {key: shown(page.locator(f"#counter-{key}").inner_text()) for key in COUNTERS}  # type: ignore[attr-defined]


def test_an_import_started_in_the_dashboard_reaches_100_percent(
    dashboard: Served, watched: Watched, generator: ModuleType
) -> None:
    file = generated(generator, dashboard.import_dir / "generated.csv", 3000, duplicate_rate=0.02, invalid_rate=0.02)
    xss_line = file.read_bytes().count(b"\n") + 1  # physical lines: some generated records span two
    with file.open("a") as out:
        out.write(f"{XSS_ROW}\n")  # a rejected row whose raw text is HTML
    page = watched.page
    page.goto(f"{dashboard.url}/")  # redirects to /ui/
    expect(page).to_have_url(f"{dashboard.url}/ui/")
    expect(page.locator("#status-line")).to_have_text("Database up · external · version 0.1.0")
    page.select_option("#import-file", "generated.csv")
    # its invalid rows hold bytes that are not UTF-8, so `auto` (the dashboard's default) detects cp1252; the
    # preview says so, and the operator says UTF-8
    page.select_option("#import-encoding", "utf-8")
    expect(page.locator("#preview-format [data-format=Encoding] dd")).to_have_text("utf-8 (given)")
    page.fill("#import-batch", "200")
    page.click("#import-start")

    expect(page.locator("#job-status")).to_have_text("COMPLETED")
    expect(page.locator("#job-bar")).to_have_js_property("value", 100)
    expect(page.locator("#job-percent")).to_have_text("100 %")
    progress = dashboard.api("GET", "/import/progress").json()
    assert progress["status"] == "COMPLETED" and progress["percent"] == 100, progress
    assert counters_shown(page) == {key: progress[key] for key in COUNTERS}
    assert progress["rowsProcessed"] == 3001 and progress["rowsDuplicate"] > 0 and progress["rowsInvalid"] > 1
    expect(page.locator("#job-cancel")).to_be_disabled()
    recent = page.locator("#job-recent li")
    expect(recent.first).to_be_visible()
    assert recent.all_inner_texts() == progress["recentCustomers"]
    watched.screenshot("dashboard-import")

    page.click("nav >> text=History")
    row = page.locator(f"#jobs-table tr[data-job-id='{progress['jobId']}']")
    expect(row.locator("[data-counter=rowsInvalid]")).to_have_text(f"{progress['rowsInvalid']:,}")
    row.get_by_role("button").click()
    rejected = page.locator("#rejects-table tbody tr")
    assert 50 < progress["rowsInvalid"] <= 100, progress  # two pages of 50 (the generator is seeded)
    expect(rejected).to_have_count(50)
    page.click("#rejects-more")
    expect(rejected).to_have_count(progress["rowsInvalid"])
    expect(page.locator("#rejects-more")).to_be_disabled()
    last = rejected.last
    expect(last.locator("td").nth(0)).to_have_text(f"{xss_line:,}")
    expect(last.locator("code")).to_have_text(XSS_ROW)
    assert page.locator("#rejects-table script").count() == 0
    watched.screenshot("dashboard-history")


def test_cancel_and_resume_from_the_dashboard(
    dashboard: Served, watched: Watched, generator: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = 20_000
    generated(generator, dashboard.import_dir / "long.csv", rows)
    gates = gate_sinks(dashboard.app.state.services, monkeypatch)  # its writes wait for the test, batch by batch
    page = watched.page
    page.goto(f"{dashboard.url}/ui/")
    page.select_option("#import-file", "long.csv")
    page.fill("#import-batch", "50")
    page.click("#import-start")
    expect(page.locator("#job-status")).to_have_text("RUNNING")
    header_end = dashboard.api("GET", "/import/progress").json()["bytesRead"]  # nothing written yet
    # batches let through one by one until a whole block is accounted: progress to keep; the next write waits
    gate = wait_until(lambda: gates[0] if gates else None, WAIT_MS / 1000, what="the job's first write")
    while dashboard.api("GET", "/import/progress").json()["bytesRead"] == header_end or gate.waiting == 0:
        if gate.waiting and not gate.permits:
            gate.open(1)
        time.sleep(0.02)
    expect(page.locator("#counter-rowsProcessed")).not_to_have_text("0")
    with page.expect_response("**/import/cancel") as cancel:
        page.click("#job-cancel")
    assert cancel.value.status == 202
    expect(page.locator("#job-status")).to_have_text("CANCELLED")
    cancelled = dashboard.api("GET", "/import/progress").json()
    assert cancelled["status"] == "CANCELLED" and 0 < cancelled["rowsProcessed"] < rows, cancelled
    assert counters_shown(page) == {key: cancelled[key] for key in COUNTERS}
    expect(page.locator("#job-cancel")).to_be_disabled()

    monkeypatch.undo()  # the resumed job writes freely
    page.click("#job-resume")
    expect(page.locator("#job-status")).to_have_text("COMPLETED")
    final = dashboard.api("GET", "/import/progress").json()
    assert final["jobId"] == cancelled["jobId"] and final["rowsProcessed"] == rows, final
    assert final["rowsInserted"] + final["rowsDuplicate"] == rows, final  # ids may repeat the first test's file
    assert counters_shown(page) == {key: final[key] for key in COUNTERS}
    expect(page.locator("#job-bar")).to_have_js_property("value", 100)


def test_a_failed_job_shows_its_error_in_plain_words(dashboard: Served, watched: Watched) -> None:
    unterminated = b'C2,"never closed,' + b"x" * (dashboard.settings.import_max_record_bytes + 1000) + b"\n"
    (dashboard.import_dir / "broken.csv").write_bytes(b"Customer Id,First Name\nC1,Ann\n" + unterminated)
    watched.allow(r"status of 400")  # its preview: the record is over the limit
    page = watched.page
    page.goto(f"{dashboard.url}/ui/")
    page.select_option("#import-file", "broken.csv")
    expect(page.locator("#preview-error")).to_contain_text("line 3 (byte offset 30) is longer than IMPORT_MAX_RECORD")
    page.focus("#import-file")
    tab_to(page, "#import-start")  # the form is reachable by keyboard
    page.keyboard.press("Enter")
    expect(page.locator("#job-status")).to_have_text("FAILED")
    failed = dashboard.api("GET", "/import/progress").json()
    assert failed["status"] == "FAILED" and "line 3" in failed["error"], failed
    expect(page.locator("#job-error")).to_be_visible()
    expect(page.locator("#job-error")).to_contain_text(f"This import stopped with an error: {failed['error']}")
    expect(page.locator("#job-resume")).to_be_enabled()


@pytest.fixture
def customers(dashboard: Served, mongo_server: EmbeddedMongo) -> Iterator[MongoClient]:
    """30 imported-looking customers named Zed… (not hand-edited), plus whatever the test adds."""
    with MongoClient(mongo_server.uri, tz_aware=True) as client:
        collection = client[dashboard.settings.mongodb_db].customers
        collection.delete_many({})
        now = dt.datetime.now(dt.UTC)
        docs = []
        for i in range(30):
            doc = {
                "firstName": f"Zed{i:02d}",
                "lastName": "Quill",
                "email": f"zed{i:02d}@example.com",
                "country": "Norway",
                "company": "Quill AS",
            }
            docs.append({"_id": f"Z{i:03d}", **doc, **index_keys(doc), "createdAt": now, "updatedAt": now})
        collection.insert_many(docs)
        yield client


def test_search_edit_and_delete_a_customer(dashboard: Served, watched: Watched, customers: MongoClient) -> None:
    watched.allow(r"status of 400")  # the invalid email below: the page shows the problem next to the field
    page = watched.page
    page.goto(f"{dashboard.url}/ui/customers?q=zed")
    expect(page.locator("#search-q")).to_have_value("zed")
    rows = page.locator("#customers-table tbody tr")
    expect(rows).to_have_count(25)
    page.click("#customers-next")
    expect(rows).to_have_count(5)
    expect(rows.first).to_have_attribute("data-customer-id", "Z025")
    page.click("#customers-prev")
    expect(rows).to_have_count(25)

    page.fill("#search-q", "zed07")
    page.press("#search-q", "Enter")  # the keyboard submits the search
    expect(rows).to_have_count(1)
    expect(page).to_have_url(f"{dashboard.url}/ui/customers?q=zed07")
    row = rows.first
    expect(row.locator("td").nth(5)).to_have_text("")  # not hand-edited yet
    row.get_by_role("button", name="Open").click()
    expect(page.locator("#field-email")).to_have_value("zed07@example.com")

    page.fill("#field-email", "not-an-email")
    page.click("#editor-save")
    expect(page.locator("#customer-email-error")).not_to_be_empty()
    page.fill("#field-email", "zed07@example.com")
    page.fill("#field-company", "Quill & Sons")
    page.fill("#field-country", "")  # an emptied optional field is cleared
    page.click("#editor-save")
    expect(page.locator("#customers-notice")).to_have_text("Customer Z007 saved.")
    expect(page.locator("#customer-email-error")).to_be_empty()
    expect(row.locator("td").nth(5)).to_have_text("hand-edited")
    expect(page.locator("#editor-meta")).to_contain_text("Hand-edited")
    stored = dashboard.api("GET", "/customers/Z007").json()
    assert (stored["company"], stored["handEdited"], stored["email"]) == ("Quill & Sons", True, "zed07@example.com")
    assert "country" not in stored, stored
    assert fits(page)
    watched.screenshot("dashboard-customers")
    page.set_viewport_size({"width": 390, "height": 844})
    assert fits(page)
    watched.screenshot("dashboard-customers-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    row.get_by_role("button", name="Delete").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-message")).to_contain_text("Z007")
    page.click("#confirm-yes")
    expect(page.locator("#customers-notice")).to_have_text("Customer Z007 deleted.")
    expect(rows).to_have_count(0)
    assert dashboard.api("GET", "/customers/Z007").status_code == 404


def test_an_html_payload_renders_as_text(dashboard: Served, watched: Watched, customers: MongoClient) -> None:
    page = watched.page
    page.goto(f"{dashboard.url}/ui/customers")
    page.click("#customer-new")  # created through the dashboard's form
    page.fill("#field-customerId", "XSS-1")
    page.fill("#field-firstName", XSS_NAME)
    page.fill("#field-lastName", "Lee")
    page.fill("#field-email", "x@y.z")
    page.click("#editor-save")
    expect(page.locator("#customers-notice")).to_have_text("Customer XSS-1 saved.")
    assert dashboard.api("GET", "/customers/XSS-1").json()["firstName"] == XSS_NAME
    page.goto(f"{dashboard.url}/ui/customers?q=%3Cimg")  # read back from the database
    rows = page.locator("#customers-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.name")).to_have_text(f"{XSS_NAME} Lee")
    rows.first.get_by_role("button", name="Open").click()
    expect(page.locator("#field-firstName")).to_have_value(XSS_NAME)
    expect(page.locator("#editor-title")).to_have_text("Customer XSS-1")
    assert page.locator("main img").count() == 0
    # the fixture checks that no dialog opened and that the console stayed clean


@pytest.fixture(scope="module")
def guarded(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("browser-token")
    (folder / "waiting.csv").write_text("Customer Id,First Name\n")
    with serve(browser_settings(settings, folder, api_token="correct horse battery staple")) as served:
        yield served


def test_the_dashboard_asks_for_the_token(guarded: Served, watched: Watched) -> None:
    watched.allow(r"status of 401")  # the requests made before and with the wrong token
    page = watched.page
    page.goto(f"{guarded.url}/ui/")
    dialog = page.locator("#token-dialog")
    expect(dialog).to_be_visible()
    page.fill("#token-input", "wrong")
    page.press("#token-input", "Enter")
    expect(page.locator("#token-error")).to_have_text("Wrong token: the service answered 401.")
    expect(dialog).to_be_visible()

    with page.expect_response(lambda response: "/import/progress/stream" in response.url) as stream:
        page.fill("#token-input", guarded.settings.api_token or "")
        page.press("#token-input", "Enter")
    assert stream.value.status == 200  # the EventSource's token in the query is accepted
    assert "access_token=" in stream.value.url
    expect(dialog).to_be_hidden()
    expect(page.locator("#import-file option")).to_have_count(1)
    expect(page.locator("#import-file option")).to_contain_text("waiting.csv (23 B, modified ")
    expect(page.locator("#job-status")).to_have_text("IDLE")  # the stream's first snapshot
    page.goto(f"{guarded.url}/ui/customers")  # kept in sessionStorage: asked once per tab
    expect(page.locator("#customers-summary")).to_have_text("No customer matches.")
    assert page.locator("#token-dialog").is_hidden()
    assert guarded.api("GET", "/import/files").status_code == 200
    refused = httpx.get(f"{guarded.url}/import/files", timeout=10)
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    watched.screenshot("dashboard-token")
