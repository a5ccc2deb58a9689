"""HTTP answers: problem+json, an import started and awaited over the API, a keyset listing walked to its end."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

# Every row counter of a job, as the API names them.
COUNTERS = (
    "rowsProcessed",
    "rowsInserted",
    "rowsDuplicate",
    "rowsUpdated",
    "rowsUnchanged",
    "rowsProtected",
    "rowsInvalid",
)

CLASS_NAME = re.compile(r"[A-Z][a-z]+(?:[A-Z][a-z]+)+")  # NotFoundException, RequestEntityTooLarge


def assert_problem(response: httpx.Response, status: int, title: str | None = None) -> dict[str, Any]:
    """An application/problem+json answer with this status, a plain-word title and a detail; its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["title"] and body["detail"], body
    assert "Exception" not in body["title"] and not CLASS_NAME.fullmatch(body["title"]), body["title"]
    if title is not None:
        assert body["title"] == title
    return body


async def start(client: httpx.AsyncClient, file: Path | str, **options: Any) -> dict[str, Any]:
    """POST /import/sync; the 202's body (the job)."""
    response = await client.post("/import/sync", json={"filePath": str(file), **options})
    assert response.status_code == 202, response.text
    return response.json()


async def wait_done(client: httpx.AsyncClient, within: float = 120) -> dict[str, Any]:
    """The first /import/progress that is not RUNNING (`within`: a safety deadline, not a speed requirement)."""
    deadline = time.monotonic() + within
    while (progress := (await client.get("/import/progress")).json())["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"import still running after {within}s: {progress}"
        await asyncio.sleep(0.05)
    return progress


ListingPage = tuple[list[str], int, str | None]  # a listing page: its ids, the total it reports, the next cursor


async def walk(
    page_after: Callable[[str | None], Awaitable[ListingPage]], pages: int = 1000
) -> tuple[list[str], set[int]]:
    """Follow the next cursor from the first page to the end; the ids seen and the totals reported."""
    ids: list[str] = []
    totals: set[int] = set()
    after = None
    for _ in range(pages):
        page_ids, total, after = await page_after(after)
        ids += page_ids
        totals.add(total)
        if not after:
            return ids, totals
    raise AssertionError("the keyset walk did not end")
