"""The import preview in headless Chromium (issue 20): a cp1252 `;` CRM export whose id column is `Cust #`, read
with the options auto, mapped in the columns table, started with exactly the options the preview shows."""

from __future__ import annotations

from playwright.sync_api import expect
from pymongo import MongoClient

from app.embedded import EmbeddedMongo
from tests.helpers.browser import WAIT_MS, Watched
from tests.helpers.served import Served

XSS_NAME = "<img src=x onerror=alert(1)>"
CRM = [
    "Cust #;First Name;Last Name;Email;City",
    "FR-1;Zoë;Müller;zoe@example.fr;Besançon",
    "FR-2;François;Lefèvre;francois@example.fr;Orléans",
    f"FR-3;{XSS_NAME};Lee;lee@example.fr;Nice",
    "FR-4;Anaïs;Ré;not-an-email;Nice",
]


def fits(watched: Watched) -> bool:
    return bool(watched.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_a_cp1252_crm_export_is_previewed_mapped_and_imported_from_the_dashboard(
    dashboard: Served, watched: Watched, mongo_server: EmbeddedMongo
) -> None:
    watched.allow(r"status of 400")  # the first preview: no column is the customer id yet
    with MongoClient(mongo_server.uri) as client:
        client[dashboard.settings.mongodb_db].customers.delete_many({})  # the customers view shows these only
    (dashboard.import_dir / "crm-fr.csv").write_bytes(("\r\n".join(CRM) + "\r\n").encode("cp1252"))
    created = dashboard.api(
        "POST",
        "/customers",
        json={"customerId": "FR-2", "firstName": "François", "lastName": "Lefèvre", "email": "francois@example.fr"},
    )
    assert created.status_code == 201, created.text  # already stored: its row is marked
    page = watched.page
    page.goto(f"{dashboard.url}/ui/")
    page.select_option("#import-file", "crm-fr.csv")

    expect(page.locator("#preview-error")).to_contain_text("no customer id column")
    expect(page.locator("#preview-format [data-format=Encoding] dd")).to_have_text("cp1252 (detected)")
    expect(page.locator("#preview-format [data-format=Delimiter] dd")).to_have_text("; semicolon (detected)")
    cust = page.locator("#preview-columns tr[data-column='Cust #'] select")
    expect(cust).to_have_value("ignore")
    page.focus("#import-file")
    for _ in range(20):  # the mapping is reachable by keyboard
        if page.evaluate("document.activeElement === document.querySelector(\"tr[data-column='Cust #'] select\")"):
            break
        page.keyboard.press("Tab")
    else:
        raise AssertionError("the Cust # mapping was not reached by Tab")

    cust.select_option("customerId")
    rows = page.locator("#preview-rows tbody tr")
    expect(rows).to_have_count(4)
    heads = ["Line", "Will be", "customerId", "firstName", "lastName", "email", "city"]
    expect(page.locator("#preview-rows thead th")).to_have_text(heads)
    expect(page.locator("#preview-error")).to_be_empty()
    expect(page.locator("#preview-summary")).to_contain_text("crm-fr.csv")
    expect(page.locator("#preview-summary")).to_contain_text("4 rows")
    expect(page.locator("#preview-columns tr[data-column='Cust #'] td").last).to_have_text("mapped")
    first = page.locator("#preview-rows tr[data-line='2']")
    expect(first.locator("[data-field=firstName]")).to_have_text("Zoë")
    expect(first.locator("[data-field=lastName]")).to_have_text("Müller")
    expect(first.locator("[data-field=city]")).to_have_text("Besançon")
    expect(first.locator(".badge")).to_have_text("new")
    stored = page.locator("#preview-rows tr[data-line='3']")
    expect(stored).to_have_attribute("data-stored", "true")
    expect(stored).to_contain_text("id already stored")
    expect(stored.locator("[data-field=firstName]")).to_have_text("François")
    expect(page.locator("#preview-rows tr[data-line='4'] [data-field=firstName]")).to_have_text(XSS_NAME)
    invalid = page.locator("#preview-rows tr.invalid")
    expect(invalid).to_have_count(1)
    expect(invalid).to_have_attribute("data-line", "5")
    expect(invalid).to_contain_text("invalid email 'not-an-email'")
    assert page.locator("main img").count() == 0 and watched.dialogs == []
    assert fits(watched)
    watched.screenshot("dashboard-preview")
    page.set_viewport_size({"width": 390, "height": 844})
    assert fits(watched)  # the wide tables scroll in their own box
    watched.screenshot("dashboard-preview-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    with page.expect_request("**/import/sync") as sent:
        page.click("#import-start")
    assert sent.value.post_data_json == {
        "filePath": "crm-fr.csv",
        "mode": "insert",
        "dryRun": False,
        "delimiter": "auto",
        "encoding": "auto",
        "quote": '"',
        "columns": {"Cust #": "customerId"},
    }
    expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    progress = dashboard.api("GET", "/import/progress").json()
    counts = (progress["rowsInserted"], progress["rowsDuplicate"], progress["rowsInvalid"])
    assert counts == (2, 1, 1), progress
    assert progress["csv"]["encoding"] == "cp1252" and progress["csv"]["delimiter"] == ";", progress

    page.goto(f"{dashboard.url}/ui/customers")
    names = page.locator("#customers-table tbody td.name")
    expect(names).to_have_count(3)
    expect(names).to_have_text(["Zoë Müller", "François Lefèvre", f"{XSS_NAME} Lee"])
    assert page.locator("main img").count() == 0


def test_two_columns_for_one_field_are_mapped_from_the_dashboard(
    dashboard: Served, watched: Watched, mongo_server: EmbeddedMongo
) -> None:
    """`Email` and `E-mail`: the first preview is a 400 that names both; its columns table lets one be ignored (it
    showed no table before, so the file could only be imported through the API)."""
    watched.allow(r"status of 400")
    with MongoClient(mongo_server.uri) as client:
        client[dashboard.settings.mongodb_db].customers.delete_many({"_id": {"$in": ["TE-1", "TE-2"]}})
    (dashboard.import_dir / "two-emails.csv").write_text("Customer Id,Email,E-mail\nTE-1,a@b.c,x@y.z\nTE-2,b@b.c,\n")
    page = watched.page
    page.goto(f"{dashboard.url}/ui/")
    page.select_option("#import-file", "two-emails.csv")
    expect(page.locator("#preview-error")).to_contain_text("two columns for email: 'Email' and 'E-mail'")
    second = page.locator("#preview-columns tr[data-column='E-mail'] select")
    expect(second).to_have_value("email")
    second.select_option("ignore")
    expect(page.locator("#preview-rows tbody tr")).to_have_count(2)
    expect(page.locator("#preview-error")).to_be_empty()
    expect(page.locator("#preview-rows tr[data-line='2'] [data-field=email]")).to_have_text("a@b.c")
    with page.expect_request("**/import/sync") as sent:
        page.click("#import-start")
    assert sent.value.post_data_json["columns"] == {"E-mail": "ignore"}
    expect(page.locator("#job-status")).to_have_text("COMPLETED", timeout=WAIT_MS)
    assert dashboard.api("GET", "/customers/TE-1").json()["email"] == "a@b.c"
