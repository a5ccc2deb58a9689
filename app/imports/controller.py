"""HTTP <-> ImportService: /import/*. No pymongo here."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from app.admission import Work, admitted
from app.auth import QUERY_TOKEN, TOKEN_IN_QUERY
from app.errors import NotFound
from app.imports.broadcast import Broadcaster
from app.imports.schemas import (
    ImportFiles,
    ImportPreview,
    ImportRequest,
    JobPage,
    Progress,
    RejectedRow,
    RejectedRows,
    ResumeRequest,
)
from app.imports.service import ImportService

Service = NamedDependency[ImportService]
# A line number: at most 2**53, the largest integer a JSON client reads exactly (and far below MongoDB's 8 bytes).
AfterLine = Annotated[
    int, QueryParameter(name="afterLine", ge=0, le=2**53, description="nextAfterLine of the previous page")
]


async def _rejected_rows(service: ImportService, job_id: str | None, *, after_line: int, limit: int) -> RejectedRows:
    """A job's rejected rows (default: the latest job), one page by line."""
    state, rows = await service.rejections(job_id, after_line=after_line, limit=limit)
    items = [RejectedRow(**row) for row in rows]
    return RejectedRows(
        job_id=state.job_id,
        rows_invalid=state.rows_invalid,
        items=items,
        next_after_line=items[-1].line if len(items) == limit else None,
    )


CHEAP = admitted(Work.CHEAP)
EXPENSIVE = admitted(Work.EXPENSIVE)
# Starting, stopping, resuming and previewing a job read files and claim jobs: they finish even if the client left.
CONTROL = admitted(Work.CHEAP, cancellable=False)


class ImportController(Controller):
    path = "/import"
    tags = ["import"]

    @post("/sync", status_code=HTTP_202_ACCEPTED, summary="Start importing a CSV file (409 while one runs)", **CONTROL)
    async def sync(self, service: Service, data: JSONBody[ImportRequest | None] = None) -> Progress:
        return Progress.of(await service.start(data or ImportRequest()))

    @post(
        "/preview",
        status_code=HTTP_200_OK,
        summary="How POST /import/sync with this body would read the file, and its first rows as they would be stored",
        description=(
            "Reads the start of the file (its header and up to 1 MiB of records) through the import's own decoding, "
            "header and parser code; starts no job and writes nothing. The same 400s as POST /import/sync."
        ),
        **CONTROL,  # its database work is one `_id $in`; its file work has a bound of its own (PREVIEWS_AT_ONCE)
    )
    async def preview(
        self,
        service: Service,
        data: JSONBody[ImportRequest | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200, description="rows shown")] = 20,
    ) -> ImportPreview:
        return await service.preview(data or ImportRequest(), limit)

    @get("/progress", summary="Snapshot of the running job, else the latest job, else IDLE")
    async def progress(self, service: Service) -> Progress:
        return Progress.of(await service.snapshot())

    @post("/cancel", status_code=HTTP_202_ACCEPTED, summary="Stop the running job; it ends CANCELLED", **CONTROL)
    async def cancel(self, service: Service) -> Progress:
        return Progress.of(await service.cancel())

    @post(
        "/resume",
        status_code=HTTP_202_ACCEPTED,
        summary="Resume a FAILED or CANCELLED job (default: the latest) from its watermark; 409 while one runs",
        **CONTROL,
    )
    async def resume(self, service: Service, data: JSONBody[ResumeRequest | None] = None) -> Progress:
        return Progress.of(await service.resume(data.job_id if data else None))

    @get("/errors", summary="Rejected rows of a job (default: the latest), by line", **EXPENSIVE)
    async def errors(
        self,
        service: Service,
        job_id: Annotated[str | None, QueryParameter(name="jobId", max_length=64)] = None,
        after_line: AfterLine = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> RejectedRows:
        return await _rejected_rows(service, job_id, after_line=after_line, limit=limit)

    @get("/files", summary="Files in IMPORT_DIR an import accepts (name, size, modified time), by name")
    async def files(self, service: Service) -> ImportFiles:
        return ImportFiles.of(*await service.files())

    @get(
        "/progress/stream",
        summary="Server-sent events: snapshot, progress while a job runs, done/error/cancelled",
        **admitted(Work.STREAM, **TOKEN_IN_QUERY),
    )
    async def stream(
        self,
        broadcaster: NamedDependency[Broadcaster],
        access_token: Annotated[
            str | None,
            QueryParameter(
                name=QUERY_TOKEN,
                max_length=4096,
                description="API_TOKEN, for clients that cannot send headers (a browser's EventSource)",
            ),
        ] = None,
    ) -> ServerSentEvent:
        # access_token is declared for the OpenAPI document and the query checks; app/auth.py verifies it
        events = broadcaster.events()
        return ServerSentEvent(
            ServerSentEventMessage(data=e.data, event=e.kind, id=e.id, retry=e.retry, comment=e.comment)
            async for e in events
        )

    @get("/jobs", summary="Import jobs, newest first, by page or afterStartedAt cursor", **EXPENSIVE)
    async def jobs(
        self,
        service: Service,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        page: Annotated[int | None, QueryParameter(ge=1, le=1_000_000, description="1-based page (skip)")] = None,
        after_started_at: Annotated[
            dt.datetime | None,
            QueryParameter(name="afterStartedAt", description="nextAfterStartedAt of the previous page"),
        ] = None,
    ) -> JobPage:
        states, total = await service.history(limit=limit, page=page, before=after_started_at)
        return JobPage.of(states, limit=limit, total=total, page=page)

    @get("/jobs/{job_id:str}", summary="One job's progress snapshot", **CHEAP)
    async def job(self, service: Service, job_id: FromPath[str]) -> Progress:
        state = await service.snapshot(job_id)
        if state is None:
            raise NotFound(f"import job {job_id!r} does not exist")
        return Progress.of(state)

    @get("/jobs/{job_id:str}/errors", summary="One job's rejected rows, by line", **EXPENSIVE)
    async def job_errors(
        self,
        service: Service,
        job_id: FromPath[str],
        after_line: AfterLine = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> RejectedRows:
        return await _rejected_rows(service, job_id, after_line=after_line, limit=limit)
