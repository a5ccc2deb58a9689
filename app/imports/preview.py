"""POST /import/preview: the first rows of a file as an import with the same options would store them, and
which of their customer ids are stored already (one `$in` read). Reads a bounded prefix (app/imports/reading/sample.py);
writes nothing, starts no job."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import aiofiles.os
import msgspec
from pymongo.asynchronous.collection import AsyncCollection

from app.errors import ImportFileError
from app.imports.model import Mode
from app.imports.reading.sample import AUTO, Column, Row, Sample, read_sample
from app.imports.schemas import Decided, ImportPreview, ImportRequest, Outcome, PreviewColumn, PreviewRow


async def preview(
    path: Path,
    request: ImportRequest,
    *,
    limit: int,
    max_record: int,
    pool: Executor,
    customers: AsyncCollection[dict[str, Any]],
) -> ImportPreview:
    """Read the start of `path` as `request` says, then look up the rows' ids. Raises what read_sample raises."""
    sample = await read_sample(path, request.csv_format(), limit=limit, max_record=max_record, pool=pool)
    if sample.unmapped is not None:  # the 400 says how the file is read and what each column would feed
        raise ImportFileError(
            f"{path.name}: {sample.unmapped}",
            csv=msgspec.to_builtins(sample.fmt),
            decided=msgspec.to_builtins(decided(request)),
            columns=[msgspec.to_builtins(column(c)) for c in sample.columns],
        )
    ids = list(dict.fromkeys(row.customer["customerId"] for row in sample.rows if row.customer))
    stored = await _stored(customers, ids) if ids else {}
    size = (await aiofiles.os.stat(path)).st_size
    return ImportPreview(
        file_path=request.file_path or path.name,
        file_size=size,
        bytes_read=sample.sampled,
        mode=request.mode,
        csv=sample.fmt,
        decided=decided(request),
        columns=[column(c) for c in sample.columns],
        rows=list(judged(sample.rows, stored, request.mode)),
        limit=limit,
        rows_read=sample.rows_read,
        rows_estimate=estimate(sample, size),
        rows_estimate_exact=sample.complete,
    )


def column(found: Column) -> PreviewColumn:
    return PreviewColumn(found.name, found.field, found.reason)  # type: ignore[arg-type]


async def _stored(customers: AsyncCollection[dict[str, Any]], ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored customers of `ids`: only what tells what a write would do to them."""
    found = customers.find({"_id": {"$in": ids}}, {"handEdited": 1, "importHash": 1})
    return {doc["_id"]: doc async for doc in found}


def decided(request: ImportRequest) -> Decided:
    def how(value: str) -> Any:
        return "detected" if value == AUTO else "given"

    return Decided(how(request.delimiter), how(request.encoding), "given", "detected", "detected")


def estimate(sample: Sample, size: int) -> int:
    """The file's rows at the rate of the records read; exact when they are the whole file."""
    if sample.complete or not sample.sampled:
        return sample.rows_read
    return round(sample.rows_read * size / sample.sampled)


def judged(rows: list[Row], stored: dict[str, dict[str, Any]], mode: Mode) -> Iterator[PreviewRow]:
    """Each row with what the import would do to it: the sink's rules (app/imports/run/sink.py) over what is stored
    now; in insert mode the first row of an id wins, in a re-sync each row is compared with the id's previous one."""
    seen: dict[str, str | None] = {}  # id -> the digest of its latest row shown
    for row in rows:
        if row.customer is None:
            yield PreviewRow(row.line, reason=row.reason, text=row.text)
            continue
        cid = row.customer["customerId"]
        doc = stored.get(cid)
        yield PreviewRow(row.line, row.customer, doc is not None, _outcome(cid, row.digest, doc, seen, mode))
        seen[cid] = row.digest


def _outcome(
    cid: str, digest: str | None, doc: dict[str, Any] | None, seen: dict[str, str | None], mode: Mode
) -> Outcome:
    if mode is Mode.INSERT:
        return "duplicate" if doc is not None or cid in seen else "insert"
    if doc is not None and doc.get("handEdited"):
        return "protected"
    if doc is None and cid not in seen:
        return "insert"
    before = seen[cid] if cid in seen else doc.get("importHash") if doc else None
    return "unchanged" if before == digest else "update"
