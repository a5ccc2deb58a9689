"""One test's deployment of `python -m app serve` apps (tests/system): what an import left behind, compared with
a reference run, and an owner killed and its job taken over by a new app."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.embedded import EmbeddedMongo
from tests.helpers.apps import INSERT_COUNTERS, App, Apps, step_until
from tests.helpers.gates import wait_until

if TYPE_CHECKING:
    from pymongo import MongoClient


@dataclass(frozen=True)
class Result:
    """What an import left behind: final counters, every customer id, every rejected row."""

    counters: dict[str, int]
    customer_ids: list[str]
    rejected: list[tuple[int, str, str]]  # (line, reason, text)


def rejected_rows(app: App, job_id: str) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    after = 0
    while True:
        response = app.get("/import/errors", jobId=job_id, limit=1000, afterLine=after)
        assert response.status_code == 200, response.text
        page = response.json()
        rows += [(item["line"], item["reason"], item["text"]) for item in page["items"]]
        if page["nextAfterLine"] is None:
            return rows
        after = page["nextAfterLine"]


def result_of(app: App, sync_mongo: MongoClient, job_id: str) -> Result:
    progress = app.progress()
    assert progress["jobId"] == job_id and progress["status"] == "COMPLETED", progress
    assert progress["bytesRead"] == progress["fileSize"] and progress["percent"] == 100, progress
    db = sync_mongo[app.env["MONGODB_DB"]]
    ids = sorted(doc["_id"] for doc in db.customers.find({}, {"_id": 1}))
    assert db.customers.count_documents({}) == len(ids)
    return Result({k: progress[k] for k in INSERT_COUNTERS}, ids, rejected_rows(app, job_id))


def assert_same_as_reference(app: App, sync_mongo: MongoClient, job_id: str, reference: Result) -> None:
    result = result_of(app, sync_mongo, job_id)
    assert result.counters == reference.counters
    assert len(result.customer_ids) == len(reference.customer_ids)
    assert result.customer_ids == reference.customer_ids
    assert result.rejected == reference.rejected


@dataclass
class Deployment:
    """One test's database, import folder and app launcher."""

    apps: Apps
    database: str
    file_name: str
    file: Path
    server: EmbeddedMongo

    def start(self, **kwargs: Any) -> App:
        return self.apps.start(**kwargs)


@dataclass
class OwnServer:
    server: EmbeddedMongo
    deployment: Deployment


def job_doc(sync_mongo: MongoClient, deployment: Deployment, job_id: str) -> dict[str, Any]:
    doc = sync_mongo[deployment.database].import_state.find_one({"_id": job_id})
    assert doc is not None
    return doc


def kill_when(deployment: Deployment, app: App, reached: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """kill -9 the app as soon as its progress satisfies `reached`, with the database held still meanwhile (so a
    fast database cannot finish the job first); the job must still be running."""
    return step_until(app, deployment.server, reached, what, then=app.kill)


TAKEOVER_AFTER_RESTART = 30.0


def restart_and_await_takeover(
    deployment: Deployment, sync_mongo: MongoClient, job_id: str, killed_at: float, attempts: int
) -> tuple[App, int]:
    """Start a new instance; it must adopt the job (attempts + 1) before the safety deadline. Returns it and how
    many rows the dead owner had written beyond the watermark it persisted."""
    before = job_doc(sync_mongo, deployment, job_id)
    assert before["status"] == "RUNNING" and before["owner"] is not None, before
    assert before["attempts"] == attempts - 1
    # rows the dead owner wrote beyond its watermark: the new owner meets them again and must count them inserted
    written = sync_mongo[deployment.database].customers.count_documents({"importJobId": job_id})
    ahead = written - before["rowsInserted"]
    app = deployment.start()
    taken = wait_until(
        lambda: job_doc(sync_mongo, deployment, job_id)["attempts"] == attempts,
        TAKEOVER_AFTER_RESTART,
        app,
        f"takeover of job {job_id} (attempt {attempts})",
    )
    took = time.monotonic() - killed_at
    after = job_doc(sync_mongo, deployment, job_id)
    assert taken and after["owner"] not in (None, before["owner"])
    progress = app.progress()
    # resumed from the watermark, not from the start: it never goes back below what the dead owner persisted
    assert progress["jobId"] == job_id and progress["bytesRead"] >= before["bytesRead"], (before, progress)
    print(
        f"\ntakeover {took:.1f}s after kill -9 (watermark {before['bytesRead']} of {before['fileSize']}, "
        f"{ahead} rows written beyond it)"
    )
    return app, ahead
