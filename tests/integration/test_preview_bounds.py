"""POST /import/preview's bounds (issue 20): what it reads of a 2 GB file, a record over the limit, how many run at
once."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.errors import Unavailable
from app.imports.reading.sample import read_bound
from app.imports.schemas import ImportRequest
from app.imports.service import PREVIEWS_AT_ONCE, ImportService
from app.settings import Settings
from tests.helpers.answers import assert_problem
from tests.helpers.csvfiles import HEADER, good_row, write
from tests.helpers.gates import until


async def preview(client: AsyncTestClient, file: str, **options: Any) -> dict[str, Any]:
    response = await client.post("/import/preview?limit=200", json={"filePath": file, **options})
    assert response.status_code == 200, response.text
    return response.json()


def rchar() -> int:
    """Bytes this process has read with read() and its kin, from any file or socket (Linux)."""
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["rchar"])


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
async def test_the_preview_of_a_2_gb_file_reads_at_most_its_bound(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings, encoding: str
) -> None:
    """2 GB whose first 1.5 MiB of text are rows and the rest a hole (a sparse file: no 2 GB written): read past its
    bound, the preview would read the hole's NUL bytes (and fail on a record longer than IMPORT_MAX_RECORD_BYTES)."""
    path = import_dir / f"preview-2gb-{encoding}.csv"
    path.write_bytes(("\n".join([HEADER, *(good_row(i) for i in range(1, 12_000))]) + "\n").encode(encoding))
    rows_bytes = path.stat().st_size
    with path.open("r+b") as file:
        file.truncate(2_000_000_000)
    before = rchar()
    shown = await preview(client, path.name, encoding="auto")
    read = rchar() - before
    bound = read_bound(settings.import_max_record_bytes, utf16=encoding == "utf-16")
    assert read <= bound, (read, bound)
    assert shown["csv"]["encoding"] == encoding
    assert shown["bytesRead"] <= read and shown["rowsRead"] < 12_000 and not shown["rowsEstimateExact"]
    assert (shown["fileSize"], len(shown["rows"])) == (2_000_000_000, 200)
    rows = 2_000_000_000 / (rows_bytes / 12_000)  # the estimate takes the whole file for rows like the ones read
    assert abs(shown["rowsEstimate"] - rows) / rows < 0.05, shown
    path.unlink()


@pytest.mark.parametrize("extra", [10, 2_000_000])  # cut into a block and refused by the parser; never cut
async def test_a_record_longer_than_the_limit_is_a_clear_400(
    client: AsyncTestClient, db: AsyncDatabase, import_dir: Path, settings: Settings, extra: int
) -> None:
    huge = "x" * (settings.import_max_record_bytes + extra)
    path = write(import_dir / "preview-huge.csv", ["Customer Id,About", "C1,fine", f'C2,"{huge}"', "C3,fine"])
    response = await client.post("/import/preview", json={"filePath": path.name})
    detail = assert_problem(response, 400, "Cannot import this file")["detail"]
    assert detail.startswith("preview-huge.csv: ") and "line 3 " in detail, detail
    assert f"IMPORT_MAX_RECORD_BYTES ({settings.import_max_record_bytes} bytes); an unterminated quote?" in detail
    assert await db.import_state.count_documents({}) == 0


class HeldPool(concurrent.futures.Executor):
    """A worker pool whose parses wait until the test lets them run (here, in this process)."""

    def __init__(self) -> None:
        self.held: list[tuple[concurrent.futures.Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self.held.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in self.held:
            future.set_result(fn(*args))


async def test_one_preview_more_than_the_bound_is_a_503(
    db: AsyncDatabase, import_dir: Path, settings: Settings
) -> None:
    """On a service of its own (the test client answers one request at a time): its parses wait for the test."""
    path = write(import_dir / "preview-busy.csv", [HEADER, good_row(1)])
    service = ImportService(db, settings)
    service.pool.shutdown()  # never started: no process
    service.pool = held = HeldPool()  # type: ignore[assignment]
    request = ImportRequest(file_path=path.name)
    running = [asyncio.create_task(service.preview(request, 20)) for _ in range(PREVIEWS_AT_ONCE)]
    await until(lambda: len(held.held) == PREVIEWS_AT_ONCE)  # each holds its slot, parsing
    with pytest.raises(Unavailable) as refused:
        await service.preview(request, 20)
    assert (refused.value.status, refused.value.headers) == (503, {"Retry-After": "1"})
    assert refused.value.detail == f"{PREVIEWS_AT_ONCE} previews are being read; retry in a moment"
    held.release()
    assert [len((await task).rows) for task in running] == [1] * PREVIEWS_AT_ONCE
    held.held.clear()
    again = asyncio.create_task(service.preview(request, 20))  # the slots are free again
    await until(lambda: len(held.held) == 1)
    held.release()
    assert len((await again).rows) == 1
