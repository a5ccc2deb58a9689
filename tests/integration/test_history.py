"""GET /import/jobs, /import/jobs/{jobId} and /import/jobs/{jobId}/errors after several real imports."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.helpers.answers import start, wait_done
from tests.helpers.csvfiles import HEADER, good_row, write

JOBS = 5


@pytest.fixture
async def jobs(client: AsyncTestClient, db: AsyncDatabase, import_dir: Path) -> list[dict[str, Any]]:
    """JOBS finished imports as import_state holds them, oldest first; job n has n invalid rows (lines 2, 4, ...)."""
    finished = []
    for n in range(JOBS):
        rows = [HEADER]
        for i in range(10):
            rows.append(f"{i},H{n}-{i},too,few" if i < n else good_row(i, f"H{n}-{i}"))
            rows.append(good_row(100 + i, f"H{n}-ok-{i}"))
        path = write(import_dir / f"history-{n}.csv", rows)
        job = await start(client, path.name)
        await wait_done(client)
        finished.append(await stored(client, job["jobId"]))
    return finished


async def stored(client: AsyncTestClient, job_id: str) -> dict[str, Any]:
    """The job as the listing (import_state) shows it once finished; the owner's memory may say so first."""
    deadline = time.monotonic() + 10
    while (item := (await listing(client, limit=1))["items"][0])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    assert item["jobId"] == job_id
    return item


async def listing(client: AsyncTestClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/import/jobs", params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_no_jobs_on_a_fresh_database(client: AsyncTestClient, db: AsyncDatabase) -> None:
    assert await listing(client) == {"items": [], "limit": 20, "total": 0, "page": None, "nextAfterStartedAt": None}


async def test_jobs_are_listed_newest_first(client: AsyncTestClient, jobs: list[dict[str, Any]]) -> None:
    page = await listing(client)
    assert page["total"] == JOBS and page["nextAfterStartedAt"] is None
    assert [item["jobId"] for item in page["items"]] == [job["jobId"] for job in reversed(jobs)]
    assert [item["rowsInvalid"] for item in page["items"]] == list(reversed(range(JOBS)))
    assert all(item["status"] == "COMPLETED" for item in page["items"])
    assert page["items"][0] == (await client.get("/import/progress")).json()


@pytest.mark.parametrize("limit", [1, 2, 3, JOBS])
async def test_pages_and_cursor_walk_the_same_order(
    client: AsyncTestClient, jobs: list[dict[str, Any]], limit: int
) -> None:
    newest_first = [job["jobId"] for job in reversed(jobs)]
    by_page: list[str] = []
    for number in range(1, JOBS + 2):
        page = await listing(client, limit=limit, page=number)
        assert page["page"] == number and page["total"] == JOBS and len(page["items"]) <= limit
        by_page += [item["jobId"] for item in page["items"]]
    assert by_page == newest_first

    by_cursor: list[str] = []
    page = await listing(client, limit=limit)
    while True:
        by_cursor += [item["jobId"] for item in page["items"]]
        if page["nextAfterStartedAt"] is None:
            break
        assert page["nextAfterStartedAt"] == page["items"][-1]["startedAt"]
        page = await listing(client, limit=limit, afterStartedAt=page["nextAfterStartedAt"])
    assert by_cursor == newest_first


async def test_a_job_and_its_rejected_rows(client: AsyncTestClient, jobs: list[dict[str, Any]]) -> None:
    for n, job in enumerate(jobs):
        snapshot = (await client.get(f"/import/jobs/{job['jobId']}")).json()
        assert snapshot == job
        errors = (await client.get(f"/import/jobs/{job['jobId']}/errors")).json()
        assert errors["jobId"] == job["jobId"] and errors["rowsInvalid"] == n
        assert [item["line"] for item in errors["items"]] == [2 + 2 * i for i in range(n)]
        assert all("expected 13 fields" in item["reason"] for item in errors["items"])
        assert errors == (await client.get("/import/errors", params={"jobId": job["jobId"]})).json()

    oldest_with_two = jobs[2]["jobId"]
    first = (await client.get(f"/import/jobs/{oldest_with_two}/errors", params={"limit": 1})).json()
    assert [item["line"] for item in first["items"]] == [2] and first["nextAfterLine"] == 2
    rest = (
        await client.get(
            f"/import/jobs/{oldest_with_two}/errors", params={"limit": 1, "afterLine": first["nextAfterLine"]}
        )
    ).json()
    assert [item["line"] for item in rest["items"]] == [4]


@pytest.mark.parametrize("path", ["/import/jobs/nope", "/import/jobs/nope/errors"])
async def test_unknown_job_is_404_problem_json(client: AsyncTestClient, db: AsyncDatabase, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"page": 0},
        {"limit": "x"},
        {"afterStartedAt": "yesterday"},
        {"page": 1, "afterStartedAt": "2024-01-01T00:00:00Z"},
    ],
)
async def test_bad_history_queries_are_400(client: AsyncTestClient, db: AsyncDatabase, params: dict[str, Any]) -> None:
    response = await client.get("/import/jobs", params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
