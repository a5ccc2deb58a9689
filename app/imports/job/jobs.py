"""import_state: one document per job. Claiming (one RUNNING job, enforced by a unique partial index),
checkpoints conditional on the lease, finishing, takeover of a job whose owner stopped heartbeating."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import msgspec
from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from app.db import DUPLICATE_KEY, IMPORT_ERRORS, IMPORT_STATE, INDEXES, RUNNING_INDEX
from app.errors import Conflict, ImportRunning
from app.imports.model import Counters, CsvFormat, Rejection, Status, counters_of

if TYPE_CHECKING:
    from app.warmup import Warmup

log = logging.getLogger(__name__)
INDEX_NOT_FOUND = 27


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class JobState(Counters, rename="camel", kw_only=True):
    """The import_state document (camelCase in MongoDB), also the owner's in-memory progress; its row counters
    (rowsProcessed, rowsInserted, ...) are the Counters fields it inherits."""

    job_id: str
    status: Status
    file_path: str
    file_size: int
    file_identity: dict[str, Any]
    mode: str
    batch_size: int
    dry_run: bool = False
    ignored_columns: list[str] = []
    csv: CsvFormat = CsvFormat()  # how the file is read (given or detected at start)
    bytes_read: int = 0  # watermark: every record below it is fully accounted (streamed files: see stream_offset)
    stream_offset: int = 0  # gzip/UTF-16: the watermark in the decoded stream; bytes_read is then for percent
    lines_read: int = 0  # physical lines below the watermark
    started_at: dt.datetime = msgspec.field(default_factory=now)
    updated_at: dt.datetime = msgspec.field(default_factory=now)
    finished_at: dt.datetime | None = None
    error: str | None = None
    owner: str | None = None
    heartbeat_at: dt.datetime | None = None
    attempts: int = 1
    cancel_requested: bool = False
    recent_customers: list[str] = []
    rate_rows_per_sec: float = 0.0  # over about the last 10 s while RUNNING; the average over active time after
    eta_sec: float | None = None
    active_seconds: float = 0.0  # time spent RUNNING over every attempt (not the time it was cancelled)

    def to_doc(self) -> dict[str, Any]:
        return {"_id": self.job_id, **msgspec.to_builtins(self, builtin_types=(dt.datetime,))}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> JobState:
        return msgspec.convert({k: v for k, v in doc.items() if k != "_id"}, cls, strict=False)

    def progress_fields(self) -> dict[str, Any]:
        """What a checkpoint writes: the watermark and the counters it describes, in one update."""
        return {
            "bytesRead": self.bytes_read,
            "streamOffset": self.stream_offset,
            "linesRead": self.lines_read,
            **msgspec.to_builtins(counters_of(self)),
            "recentCustomers": self.recent_customers,
            "rateRowsPerSec": self.rate_rows_per_sec,
            "etaSec": self.eta_sec,
            "activeSeconds": self.active_seconds,
        }


class JobStore:
    def __init__(self, db: AsyncDatabase[dict[str, Any]], *, warmup: Warmup | None = None):
        self.jobs = db[IMPORT_STATE]
        self.warmup = warmup  # told of the index drop below, after which secantusd-rs rereads the customers
        self.rejects = db[IMPORT_ERRORS]
        self._claiming = asyncio.Lock()

    async def running(self) -> JobState | None:
        doc = await self.jobs.find_one({"status": Status.RUNNING})
        return None if doc is None else JobState.from_doc(doc)

    async def claim_new(self, state: JobState) -> None:
        """Insert a RUNNING job; MongoDB refuses a second one (unique partial index on status). One instance's
        claims queue behind each other, so two starts at once give one job and one 409 on any server."""
        async with self._claiming:
            for attempt in range(3):
                try:
                    await self.jobs.insert_one(state.to_doc())
                except DuplicateKeyError:
                    if (running := await self.running()) is not None:
                        raise ImportRunning(running.job_id) from None
                    if attempt == 1:  # refused twice with no RUNNING job: not a race with a job that just finished
                        await self.rebuild_running_index()
                    continue
                await self._yield_to_a_concurrent_claim(state)
                return
        raise ImportRunning("unknown")

    async def rebuild_running_index(self) -> None:
        """SecantusDB's Rust server keeps a unique key claimed after an update moves its document out of a partial
        index, so once a job has finished every new RUNNING insert is refused (docs/secantus-rs-differences.md,
        1). Rebuilding the index drops the stale claim. MongoDB never gets here. Another instance may be
        rebuilding it at the same moment: its drop or its creation is then already done."""
        log.warning("import_state: a RUNNING insert was refused with no RUNNING job; rebuilding %s", RUNNING_INDEX)
        async with self.warmup.changing() if self.warmup is not None else contextlib.nullcontext():
            try:
                await self.jobs.drop_index(RUNNING_INDEX)
            except OperationFailure as exc:
                if exc.code != INDEX_NOT_FOUND:  # else dropped by the other instance
                    raise
        await self._create_running_index()

    async def _create_running_index(self) -> None:
        try:
            await self.jobs.create_indexes(
                [model for model in INDEXES[IMPORT_STATE] if model.document["name"] == RUNNING_INDEX]
            )
        except DuplicateKeyError:  # two jobs were claimed while it was missing: the later ones give way, see below
            log.warning("import_state: %s not rebuilt, two RUNNING jobs; the next claim builds it", RUNNING_INDEX)

    async def _yield_to_a_concurrent_claim(self, state: JobState) -> None:
        """While an instance rebuilds the index it refuses nothing: if another job got in then, this claim
        withdraws (its job has not started) and the start is refused as if the index had refused it. Every
        claim checks after its insert, so of two that got in together the later one sees the earlier one (both
        may withdraw; never both stay). On MongoDB the index has already refused any second job: one read."""
        # a collection scan (import_state holds one small document per job): an index being rebuilt on
        # secantusd-rs can miss a document for a moment, and this read must not
        other = await self.jobs.find_one(
            {"status": Status.RUNNING, "_id": {"$ne": state.job_id}}, {"_id": 1}, hint=[("$natural", 1)]
        )
        if other is None:
            return
        await self.jobs.delete_one({"_id": state.job_id, "status": Status.RUNNING})
        await self._create_running_index()
        raise ImportRunning(other["_id"])

    async def checkpoint(
        self, state: JobState, progress: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any] | None:
        """Persist progress (a snapshot taken with the rejections already saved) and renew the lease.

        None means this instance no longer owns the job and must stop writing.
        """
        state.updated_at = state.heartbeat_at = now()
        fields = {
            **(progress or state.progress_fields()),
            "updatedAt": state.updated_at,
            "heartbeatAt": state.heartbeat_at,
            **extra,
        }
        return await self.jobs.find_one_and_update(
            {"_id": state.job_id, "owner": state.owner, "status": Status.RUNNING},
            {"$set": fields},
            projection={"cancelRequested": 1},
            return_document=ReturnDocument.AFTER,
        )

    async def finish(self, state: JobState, status: Status, error: str | None = None) -> bool:
        """End the job. The in-memory state shows the end only once import_state does: a client that saw
        CANCELLED can start the next job at once."""
        finished = now()
        fields = {
            **state.progress_fields(),
            "status": status,
            "error": error,
            "finishedAt": finished,
            "updatedAt": finished,
            "owner": None,
            "heartbeatAt": None,
        }
        result = await self.jobs.update_one(
            {"_id": state.job_id, "owner": state.owner, "status": Status.RUNNING}, {"$set": fields}
        )
        state.status, state.error = status, error
        state.finished_at = state.updated_at = finished
        return result.modified_count == 1

    async def take_over(self, owner: str, lease: dt.timedelta) -> JobState | None:
        """Atomically become the owner of a RUNNING job whose lease expired (or was released)."""
        expired = now() - lease
        doc = await self.jobs.find_one_and_update(
            {"status": Status.RUNNING, "$or": [{"heartbeatAt": None}, {"heartbeatAt": {"$lt": expired}}]},
            {"$set": {"owner": owner, "heartbeatAt": now(), "updatedAt": now()}, "$inc": {"attempts": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else JobState.from_doc(doc)

    async def reopen(self, job_id: str, owner: str) -> JobState:
        """FAILED/CANCELLED -> RUNNING under `owner`, atomically; refused while another job runs."""
        try:
            doc = await self.jobs.find_one_and_update(
                {"_id": job_id, "status": {"$in": [Status.FAILED, Status.CANCELLED]}},
                {
                    "$set": {
                        "status": Status.RUNNING,
                        "owner": owner,
                        "heartbeatAt": now(),
                        "updatedAt": now(),
                        "error": None,
                        "finishedAt": None,
                        "cancelRequested": False,
                    },
                    "$inc": {"attempts": 1},
                },
                return_document=ReturnDocument.AFTER,
            )
        except DuplicateKeyError:
            running = await self.running()
            raise ImportRunning(running.job_id if running else "unknown") from None
        if doc is None:
            raise Conflict(f"job {job_id} is no longer resumable")
        return JobState.from_doc(doc)

    async def request_cancel(self, job_id: str) -> None:
        await self.jobs.update_one({"_id": job_id, "status": Status.RUNNING}, {"$set": {"cancelRequested": True}})

    async def get(self, job_id: str) -> JobState | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return None if doc is None else JobState.from_doc(doc)

    async def latest(self) -> JobState | None:
        """The job that ran last (a resumed older job is the latest once it ran)."""
        doc = await self.jobs.find_one({}, sort=[("updatedAt", DESCENDING)])
        return None if doc is None else JobState.from_doc(doc)

    async def save_rejections(self, job_id: str, rejections: list[Rejection]) -> None:
        """Store rejected rows; idempotent (keyed by job and line) so a resumed job never stores one twice."""
        if not rejections:
            return
        docs = [
            {"_id": f"{job_id}:{r.line}", "jobId": job_id, "line": r.line, "reason": r.reason, "text": r.text}
            for r in rejections
        ]
        try:
            await self.rejects.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e["code"] != DUPLICATE_KEY for e in exc.details["writeErrors"]):
                raise

    async def rejections(self, job_id: str, *, after_line: int, limit: int) -> list[dict[str, Any]]:
        cursor = self.rejects.find({"jobId": job_id, "line": {"$gt": after_line}}, {"_id": 0, "jobId": 0})
        return [doc async for doc in cursor.sort("line", 1).limit(limit)]
