"""API_TOKEN over HTTP, GET /import/files, and the dashboard's routes with their Content-Security-Policy."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient
from pymongo import AsyncMongoClient

from app.asgi import create_app
from app.settings import Settings
from app.ui.routes import CSP
from tests.helpers.answers import assert_problem
from tests.helpers.settings import with_settings

TOKEN = "correct horse battery staple"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("access")
    (folder / "sub").mkdir()
    (folder / "sub" / "one.csv").write_text("Customer Id,First Name\nC1,Ann\n")
    return folder


@pytest.fixture(scope="module")
async def guarded(settings: Settings, folder: Path) -> AsyncIterator[AsyncTestClient]:
    app = create_app(
        with_settings(settings, api_token=TOKEN, mongodb_db=f"access_{uuid.uuid4().hex[:8]}", import_dir=str(folder))
    )
    async with AsyncTestClient(app, timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/customers"),
        ("POST", "/customers"),
        ("GET", "/customers/C1"),
        ("GET", "/customers/export"),
        ("DELETE", "/customers/C1"),
        ("POST", "/import/sync"),
        ("GET", "/import/progress"),
        ("GET", "/import/files"),
        ("GET", "/import/progress/stream"),
        ("GET", "/metrics"),
        ("GET", "/schema/openapi.json"),
    ],
)
@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}])
async def test_without_the_token_every_request_is_401(
    guarded: AsyncTestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = await guarded.request(method, path, headers=headers, json={} if method == "POST" else None)
    body = assert_problem(response, 401)
    assert body["title"] == "Unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_with_the_token_requests_work_and_nothing_was_changed_without_it(
    guarded: AsyncTestClient, mongo: AsyncMongoClient, folder: Path
) -> None:
    refused = await guarded.post("/import/sync", json={"filePath": "sub/one.csv"})
    assert refused.status_code == 401
    assert (await guarded.get("/import/progress", headers=AUTH)).json()["status"] == "IDLE"  # no job started
    assert (await guarded.get("/customers", headers=AUTH)).status_code == 200
    assert (await guarded.get("/schema/openapi.json", headers=AUTH)).status_code == 200


async def test_the_query_token_is_accepted_by_the_stream_only(guarded: AsyncTestClient) -> None:
    assert_problem(await guarded.get("/import/progress", params={"access_token": TOKEN}), 401)
    assert_problem(await guarded.get("/import/progress/stream", params={"access_token": "wrong"}), 401)
    # The right one opens the stream, which never ends by itself: tests/browser/ reads it (EventSource).


async def test_health_and_the_dashboard_files_stay_open(guarded: AsyncTestClient) -> None:
    health = await guarded.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "up", "version": "0.1.0", "databaseServer": "external"}
    head = await guarded.head("/health")
    assert head.status_code == 200 and head.content == b""
    redirect = await guarded.get("/", follow_redirects=False)
    assert (redirect.status_code, redirect.headers["location"]) == (302, "/ui/")
    for path in ("/ui/", "/ui", "/ui/jobs", "/ui/customers", "/ui/static/js/main.js", "/ui/static/style.css"):
        response = await guarded.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-security-policy"] == CSP, path
        assert response.headers["x-content-type-options"] == "nosniff", path
    page = await guarded.get("/ui/customers", params={"q": "ann"})
    assert page.headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="/ui/static/js/main.js">' in page.content


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/ui/nope", 404),
        ("GET", "/ui/static/nope.js", 404),
        ("GET", "/ui/jobs/nope", 404),
        ("POST", "/ui", 405),
        ("POST", "/", 405),
        ("GET", "/", 302),
    ],
)
async def test_every_dashboard_response_carries_the_policy_errors_included(
    guarded: AsyncTestClient, method: str, path: str, status: int
) -> None:
    response = await guarded.request(method, path, follow_redirects=False)
    assert response.status_code == status, response.text
    assert response.headers.get_list("content-security-policy") == [CSP], path
    assert response.headers.get_list("x-content-type-options") == ["nosniff"], path


def test_the_policy_allows_this_origin_only() -> None:
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'none'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no remote origin
    assert all(value in ("'self'", "'none'") for value in directives.values()), directives


async def test_import_files_lists_the_import_folder(guarded: AsyncTestClient, folder: Path) -> None:
    response = await guarded.get("/import/files", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    stat = (folder / "sub" / "one.csv").stat()
    assert body["truncated"] is False
    assert [(f["name"], f["size"]) for f in body["items"]] == [("sub/one.csv", stat.st_size)]
    assert body["items"][0]["modifiedAt"].endswith("Z")
    # the name it lists is what POST /import/sync takes
    started = await guarded.post("/import/sync", json={"filePath": "sub/one.csv"}, headers=AUTH)
    assert started.status_code == 202, started.text


@pytest.fixture
def undecodable(tmp_path: Path) -> Path:
    """An import folder with good.csv and a file whose name is not valid UTF-8."""
    for name in ("good.csv", os.fsdecode(b"bad\xff.csv")):
        (tmp_path / name).write_text("Customer Id\nC1\n")
    return tmp_path


async def test_import_files_leaves_out_a_name_that_is_not_utf8(settings: Settings, undecodable: Path) -> None:
    """Such a name cannot be sent in a JSON filePath: it is left out and the rest is listed (it was a 500)."""
    folder = str(undecodable)
    app = create_app(with_settings(settings, mongodb_db=f"files_{uuid.uuid4().hex[:8]}", import_dir=folder))
    async with AsyncTestClient(app, timeout=30) as client:
        response = await client.get("/import/files")
    assert response.status_code == 200, response.text
    assert [f["name"] for f in response.json()["items"]] == ["good.csv"]


@pytest.fixture
def empty_folders(import_dir: Path) -> Iterator[Path]:
    """20,001 empty folders under IMPORT_DIR, and a file in the last one."""
    tree = import_dir / "empty-folders"
    for i in range(20_001):
        (tree / f"{i:05d}").mkdir(parents=True)
    (tree / "20000" / "after.csv").write_text("Customer Id\nC1\n")
    yield tree
    shutil.rmtree(tree)


async def test_import_files_is_cut_short_by_a_tree_of_empty_folders(
    client: AsyncTestClient, empty_folders: Path
) -> None:
    """The listing looks at 20,000 entries at most, folders as much as files (only files counted: a tree of empty
    folders was walked to its end, the request with it)."""
    response = await client.get("/import/files")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["truncated"] is True
    assert "empty-folders/20000/after.csv" not in [f["name"] for f in body["items"]]


async def test_the_openapi_document_declares_the_bearer_scheme(guarded: AsyncTestClient) -> None:
    schema = (await guarded.get("/schema/openapi.json", headers=AUTH)).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"]["type"] == "http"
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert schema["security"] == [{"bearerAuth": []}]
    assert schema["paths"]["/health"]["get"]["security"] == [{}]  # open
    stream = schema["paths"]["/import/progress/stream"]["get"]["parameters"]
    assert [p["name"] for p in stream] == ["access_token"]
    assert "/import/files" in schema["paths"] and not any(p.startswith("/ui") for p in schema["paths"])
