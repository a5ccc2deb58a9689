"""What a hostile first user sends (issue 12, items 2, 12, 13 and 17), through the HTTP API: every answer is a 4xx
application/problem+json with a plain-word title, names parameters as the client wrote them, shows no server
path, and changes nothing."""

from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.asgi import create_app
from app.settings import Settings
from tests.helpers.answers import assert_problem, wait_done
from tests.helpers.csvfiles import HEADER, good_row, write
from tests.helpers.settings import with_settings

Client = AsyncTestClient
CUSTOMER = {"firstName": "Ann", "lastName": "Lee", "email": "ann@example.com"}
JSON = {"content-type": "application/json"}


async def nothing_written(db: AsyncDatabase) -> bool:
    return await db.customers.count_documents({}) == 1 and await db.import_state.count_documents({}) == 0


@pytest.fixture
async def one_customer(client: Client, db: AsyncDatabase) -> str:
    response = await client.post("/customers", json={**CUSTOMER, "customerId": "e-1"})
    assert response.status_code == 201, response.text
    return "e-1"


# ---- item 2: deep JSON -----------------------------------------------------------------------------------

DEEP = 1_000  # about 2 KB: the body


@pytest.mark.parametrize(
    "body",
    [
        "[" * DEEP + "]" * DEEP,
        '{"firstName":' + "[" * DEEP + "]" * DEEP + "}",
        '{"filePath":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}",
        '{"nested":' + "[" * DEEP + "]" * DEEP + "}",
    ],
    ids=["root", "in-a-field", "objects", "in-an-unknown-field"],
)
@pytest.mark.parametrize(
    "method, path", [("POST", "/customers"), ("PATCH", "/customers/e-1"), ("POST", "/import/sync")]
)
async def test_deep_json_is_400_on_every_json_endpoint(
    client: Client, db: AsyncDatabase, one_customer: str, method: str, path: str, body: str
) -> None:
    before = await db.customers.find_one({"_id": one_customer})
    assert_problem(await client.request(method, path, content=body, headers=JSON), 400)
    assert await nothing_written(db)
    assert await db.customers.find_one({"_id": one_customer}) == before


# ---- item 12: error bodies -----------------------------------------------------------------------------


async def test_framework_errors_have_plain_titles_not_class_names(client: Client, settings: Settings) -> None:
    assert_problem(await client.get("/no/such/thing"), 404, "Not Found")
    assert_problem(await client.get("/customers/nobody"), 404, "Not Found")
    problem = await client.put("/customers")
    assert_problem(problem, 405, "Method Not Allowed")
    assert set(problem.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    too_large = b'{"firstName": "' + b"x" * settings.max_body_bytes + b'"}'
    body = assert_problem(await client.post("/customers", content=too_large, headers=JSON), 413)
    assert body["title"] == "Request body too large"
    assert str(settings.max_body_bytes) in body["detail"]
    assert_problem(await client.post("/customers", content=b"{nope", headers=JSON), 400, "Malformed request body")


@pytest.mark.parametrize(
    "path, params, name",
    [
        ("/import/jobs", {"afterStartedAt": "yesterday"}, "afterStartedAt"),
        ("/import/errors", {"afterLine": "-1"}, "afterLine"),
        ("/import/errors", {"jobId": "j" * 65}, "jobId"),
        ("/import/jobs/any/errors", {"afterLine": "x"}, "afterLine"),
        ("/customers", {"limit": "0"}, "limit"),
    ],
)
async def test_a_bad_query_parameter_is_named_as_the_client_wrote_it(
    client: Client, db: AsyncDatabase, path: str, params: dict[str, str], name: str
) -> None:
    body = assert_problem(await client.get(path, params=params), 400)
    assert [error["key"] for error in body["errors"]] == [name]
    assert body["detail"].startswith(f"{name}: ")
    assert "_" not in body["detail"].split(":")[0]


@pytest.mark.parametrize("path", ["/import/errors", "/import/jobs/{job}/errors"])
async def test_after_line_is_bounded_to_a_line_number(
    client: Client, db: AsyncDatabase, import_dir: Path, path: str
) -> None:
    """A line number past 8 bytes reached MongoDB as an OverflowError (a 500): the bound is 2**53, the largest
    integer a JSON client (the dashboard) reads exactly."""
    write(import_dir / "lines.csv", [HEADER, good_row(1), "2,too,few"])
    job = (await client.post("/import/sync", json={"filePath": "lines.csv", "dryRun": True})).json()["jobId"]
    assert (await wait_done(client))["rowsInvalid"] == 1
    url = path.format(job=job)
    for value in (2**53 + 1, 2**63, 10**30):
        body = assert_problem(await client.get(url, params={"afterLine": str(value)}), 400)
        assert [error["key"] for error in body["errors"]] == ["afterLine"]
        assert body["detail"].startswith("afterLine: ")
    highest = await client.get(url, params={"afterLine": str(2**53)})
    assert highest.status_code == 200 and highest.json()["items"] == [], highest.text
    assert [row["line"] for row in (await client.get(url)).json()["items"]] == [3]


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
async def test_an_after_started_at_outside_the_utc_years_is_400(client: Client, db: AsyncDatabase, value: str) -> None:
    """Valid RFC 3339, but its UTC time is before year 1 or after 9999: no query can hold it (it was a 500)."""
    body = assert_problem(await client.get("/import/jobs", params={"afterStartedAt": value}), 400)
    assert [error["key"] for error in body["errors"]] == ["afterStartedAt"]
    assert body["detail"].startswith("afterStartedAt: ")
    for edge in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2020-01-01T00:00:00"):
        assert (await client.get("/import/jobs", params={"afterStartedAt": edge})).status_code == 200, edge


async def test_a_bad_body_field_is_named_as_the_client_wrote_it(client: Client, db: AsyncDatabase) -> None:
    body = assert_problem(await client.post("/customers", json={**CUSTOMER, "subscriptionDate": "2024-02-30"}), 400)
    assert body["errors"][0]["key"] == "subscriptionDate"
    assert body["detail"].startswith("subscriptionDate: ")


@pytest.mark.parametrize(
    "file_path", ["../outside.csv", "missing.csv", "folder", "../../etc/passwd", "x" * 300 + ".csv", "a/" * 3000]
)
async def test_import_file_errors_show_no_server_path(
    client: Client, db: AsyncDatabase, import_dir: Path, settings: Settings, file_path: str
) -> None:
    (import_dir / "folder").mkdir(exist_ok=True)
    body = assert_problem(await client.post("/import/sync", json={"filePath": file_path}), 400)
    for server_path in {str(import_dir), str(settings.data_path), str(import_dir.parent)}:
        assert server_path not in body["detail"], body["detail"]


async def test_a_missing_configured_csv_file_shows_no_server_path(settings: Settings, tmp_path: Path) -> None:
    secret = tmp_path / "private" / "folder"
    app = create_app(with_settings(settings, csv_file_path=str(secret / "customers.csv"), mongodb_db="errors"))
    async with AsyncTestClient(app) as client:
        body = assert_problem(await client.post("/import/sync"), 400)
    assert "customers.csv" in body["detail"]
    assert str(tmp_path) not in body["detail"]


@pytest.mark.parametrize(
    "escape, lone",
    [(r"\ud800", r"\ud800"), (r"\udc00", r"\udc00"), (r"x\ud83dy", r"\ud83d"), (r"\ude00\ud83d", r"\ude00")],
)
async def test_a_lone_surrogate_gives_a_clear_error(client: Client, db: AsyncDatabase, escape: str, lone: str) -> None:
    body = f'{{"firstName": "{escape}", "lastName": "Lee", "email": "a@b.c"}}'.encode()
    problem = assert_problem(await client.post("/customers", content=body, headers=JSON), 400, "Malformed request body")
    assert "surrogate" in problem["detail"] and lone in problem["detail"]
    assert "truncated" not in problem["detail"]
    assert await db.customers.count_documents({}) == 0


async def test_a_surrogate_pair_is_a_character(client: Client, db: AsyncDatabase) -> None:
    body = b'{"firstName": "\\ud83d\\ude00", "lastName": "Lee", "email": "a@b.c", "customerId": "smile"}'
    response = await client.post("/customers", content=body, headers=JSON)
    assert response.status_code == 201, response.text
    assert response.json()["firstName"] == "\N{GRINNING FACE}"


# ---- item 13: unknown and contradictory query parameters ------------------------------------------------


@pytest.mark.parametrize(
    "path, params",
    [
        ("/customers", {"email[$ne]": "x"}),
        ("/customers", {"limt": "5"}),
        ("/customers", {"email": "ann@example.com", "sort": "-email"}),
        ("/customers/e-1", {"fields": "email"}),
        ("/import/jobs", {"before": "2020-01-01T00:00:00Z"}),
        ("/import/progress", {"jobId": "x"}),
        ("/import/errors", {"job_id": "x"}),
        ("/health", {"verbose": "1"}),
    ],
)
async def test_unknown_query_parameters_are_400(
    client: Client, db: AsyncDatabase, one_customer: str, path: str, params: dict[str, str]
) -> None:
    body = assert_problem(await client.get(path, params=params), 400)
    unknown = next(name for name in params if name not in {"email"})
    assert body["unknownParameters"] == [unknown]
    assert repr(unknown) in body["detail"]


async def test_an_operator_in_a_parameter_name_does_not_list_everyone(
    client: Client, db: AsyncDatabase, one_customer: str
) -> None:
    response = await client.get("/customers?email[$ne]=x")
    assert_problem(response, 400)
    assert "items" not in response.json()


async def test_page_with_a_valid_cursor_is_contradictory(client: Client, db: AsyncDatabase) -> None:
    for i in range(3):
        assert (await client.post("/customers", json={**CUSTOMER, "customerId": f"k-{i}"})).status_code == 201
    cursor = (await client.get("/customers", params={"limit": 1})).json()["nextCursor"]
    assert (await client.get("/customers", params={"limit": 1, "after": cursor})).status_code == 200
    body = assert_problem(await client.get("/customers", params={"limit": 1, "after": cursor, "page": 2}), 400)
    assert "page" in body["detail"] and "after" in body["detail"]


async def test_page_with_after_started_at_is_contradictory(client: Client, db: AsyncDatabase) -> None:
    params = {"page": 1, "afterStartedAt": "2030-01-01T00:00:00Z"}
    assert_problem(await client.get("/import/jobs", params=params), 400)


# ---- item 17: one strictness rule for every field ---------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("batchSize", "100"),
        ("batchSize", 100.0),
        ("dryRun", "yes"),
        ("dryRun", "true"),
        ("dryRun", 1),
        ("mode", 1),
        ("filePath", 5),
    ],
)
async def test_import_request_fields_are_strict(
    client: Client, db: AsyncDatabase, import_dir: Path, field: str, value: object
) -> None:
    write(import_dir / "strict.csv", [HEADER, good_row(1)])
    body = assert_problem(await client.post("/import/sync", json={"filePath": "strict.csv", field: value}), 400)
    assert body["errors"][0]["key"] == field
    assert await db.import_state.count_documents({}) == 0


@pytest.mark.parametrize(
    "change", [{"subscriptionDate": 20240101}, {"firstName": 5}, {"phone1": 3312345678}, {"about": True}]
)
async def test_customer_fields_are_strict(client: Client, db: AsyncDatabase, one_customer: str, change: dict) -> None:
    assert_problem(await client.post("/customers", json={**CUSTOMER, **change}), 400)
    assert_problem(await client.patch(f"/customers/{one_customer}", json=change), 400)


async def test_a_strict_request_of_the_right_types_is_accepted(
    client: Client, db: AsyncDatabase, import_dir: Path
) -> None:
    write(import_dir / "strict.csv", [HEADER, good_row(1)])
    body = {"filePath": "strict.csv", "batchSize": 100, "dryRun": True, "mode": "upsert"}
    response = await client.post("/import/sync", json=body)
    assert response.status_code == 202, response.text
    assert (response.json()["batchSize"], response.json()["dryRun"]) == (100, True)
    assert (await wait_done(client))["status"] == "COMPLETED"


@pytest.mark.parametrize("path", ["/customers?limit=1&limit=500", "/import/jobs?page=1&page=2", "/customers?q=a&q=b"])
async def test_a_single_valued_query_parameter_given_twice_is_400(client: Client, db: AsyncDatabase, path: str) -> None:
    name = path.split("?")[1].split("=")[0]
    body = assert_problem(await client.get(path), 400)
    assert body["repeatedParameters"] == [name]


async def test_a_missing_body_says_so(client: Client, db: AsyncDatabase) -> None:
    body = assert_problem(await client.post("/customers", content=b"", headers=JSON), 400)
    assert body["detail"] == "a JSON body is required"
