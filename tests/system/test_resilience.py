"""Crashes, outages and restarts around a running import: the end result always equals an uninterrupted run.

Every test runs the real `python -m app serve` in subprocesses against a SecantusDB server the tests own and
compares counters, customer ids and rejected rows with the reference import of the same hostile file.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from pymongo import MongoClient

from tests.system.conftest import (
    LEASE_SECONDS,
    App,
    Deployment,
    Hostile,
    OwnServer,
    Result,
    fraction,
    result_of,
    start_import,
    step_until,
    wait_completed,
    wait_progress,
    wait_until,
)

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

TAKEOVER_AFTER_RESTART = 30.0
TAKEOVER_BY_PEER = 60.0


def job_doc(sync_mongo: MongoClient, deployment: Deployment, job_id: str) -> dict[str, Any]:
    doc = sync_mongo[deployment.database].import_state.find_one({"_id": job_id})
    assert doc is not None
    return doc


def assert_same_as_reference(app: App, sync_mongo: MongoClient, job_id: str, reference: Result) -> None:
    result = result_of(app, sync_mongo, job_id)
    assert result.counters == reference.counters
    assert len(result.customer_ids) == len(reference.customer_ids)
    assert result.customer_ids == reference.customer_ids
    assert result.rejected == reference.rejected


def kill_when(deployment: Deployment, app: App, reached: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    """kill -9 the app as soon as its progress satisfies `reached`, with the database held still meanwhile (so a
    fast database cannot finish the job first); the job must still be running."""
    return step_until(app, deployment.server, reached, what, then=app.kill)


def restart_and_await_takeover(
    deployment: Deployment, sync_mongo: MongoClient, job_id: str, killed_at: float, attempts: int
) -> tuple[App, int]:
    """Start a new instance; it must adopt the job (attempts + 1) within the deadline. Returns it and how many
    rows the dead owner had written beyond the watermark it persisted."""
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


def test_reference_import_matches_what_the_file_holds(reference: Result, hostile: Hostile) -> None:
    assert reference.counters == hostile.counters
    assert len(reference.customer_ids) == hostile.counters["rowsInserted"] + 1  # + the pre-existing customer
    assert [line for line, _, _ in reference.rejected] == sorted(hostile.rejected)
    for line, reason, text in reference.rejected:
        assert hostile.rejected[line] in reason and text


KILL_POINTS: dict[str, Callable[[dict[str, Any]], bool] | None] = {
    "right-after-202": None,
    "30-60%": lambda p: fraction(p) >= 0.3,
    "over-90%": lambda p: fraction(p) >= 0.9,
}
UPPER = {"right-after-202": 1.0, "30-60%": 0.6, "over-90%": 1.0}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_mid_import_then_restart_resumes_to_the_reference_result(
    deployment: Deployment, sync_mongo: MongoClient, reference: Result, point: str
) -> None:
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    reached = KILL_POINTS[point]
    if reached is None:
        app.kill()
    else:
        progress = kill_when(deployment, app, reached, point)
        assert fraction(progress) <= UPPER[point] and progress["status"] == "RUNNING", progress
    killed_at = time.monotonic()

    second, ahead = restart_and_await_takeover(deployment, sync_mongo, job["jobId"], killed_at, attempts=2)
    assert ahead > 0 or point == "right-after-202"  # else the rule "a row this job wrote counts as inserted" is idle
    final = wait_completed(second)
    assert final["attempts"] == 2
    assert_same_as_reference(second, sync_mongo, job["jobId"], reference)


def test_kill_9_twice_in_one_import(deployment: Deployment, sync_mongo: MongoClient, reference: Result) -> None:
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    kill_when(deployment, app, lambda p: fraction(p) >= 0.3, "30%")
    second, _ = restart_and_await_takeover(deployment, sync_mongo, job["jobId"], time.monotonic(), attempts=2)
    kill_when(deployment, second, lambda p: fraction(p) >= 0.7, "70%")
    third, _ = restart_and_await_takeover(deployment, sync_mongo, job["jobId"], time.monotonic(), attempts=3)
    final = wait_completed(third)
    assert final["attempts"] == 3
    assert_same_as_reference(third, sync_mongo, job["jobId"], reference)


def test_database_outage_mid_import(own_server: OwnServer, reference: Result) -> None:
    server, deployment = own_server.server, own_server.deployment
    port = server.port
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    # SIGTERM while held: the database stops before the import can go on.
    step_until(app, server, lambda p: fraction(p) >= 0.3, "30%", then=lambda: server.process.terminate())
    server.stop()
    stopped = time.monotonic()
    wait_until(lambda: app.get("/health").status_code == 503, 10, app, "GET /health 503")
    print(f"\n/health is 503 {time.monotonic() - stopped:.1f}s after the database stopped")
    errors = app.get("/import/errors", jobId=job["jobId"])  # reads the database: 503, not 500
    assert errors.status_code == 503 and errors.headers["content-type"] == "application/problem+json"
    while time.monotonic() - stopped < 8:  # keep the database down ~8 s, checking the app all along
        assert app.alive(), app.tail()
        health = app.get("/health")
        assert health.status_code == 503 and health.headers["content-type"] == "application/problem+json"
        assert app.progress()["status"] == "RUNNING"  # the owner answers from memory
        time.sleep(0.5)

    server.start()
    assert server.port == port, "the database came back on another port"
    restarted = time.monotonic()
    wait_until(lambda: app.get("/health").status_code == 200, 30, app, "GET /health 200 after restart")
    print(f"/health is 200 {time.monotonic() - restarted:.1f}s after the database is back")
    wait_completed(app)
    assert app.alive()
    with MongoClient(server.uri, tz_aware=True) as sync_mongo:
        assert_same_as_reference(app, sync_mongo, job["jobId"], reference)


def test_second_instance_takes_over_when_the_first_is_killed(
    deployment: Deployment, sync_mongo: MongoClient, reference: Result
) -> None:
    first, second = deployment.start(), deployment.start()
    job = start_import(first, deployment.file_name)

    at_kill = kill_when(deployment, first, lambda p: fraction(p) >= 0.3, "30%")
    killed_at = time.monotonic()
    # the non-owner answers from import_state: the same job, as the dead owner last persisted it (until the lease
    # of LEASE_SECONDS expires and it takes the job over)
    seen = second.progress()
    persisted = job_doc(sync_mongo, deployment, job["jobId"])
    assert seen["jobId"] == job["jobId"], seen
    assert seen["status"] == "RUNNING", seen
    assert seen["attempts"] == 1, seen
    assert seen["bytesRead"] == persisted["bytesRead"] <= at_kill["bytesRead"]
    adopted = wait_progress(second, lambda p: p["attempts"] >= 2, TAKEOVER_BY_PEER, "takeover by the peer")
    assert adopted["status"] == "RUNNING" and adopted["jobId"] == job["jobId"]
    print(f"\npeer took over {time.monotonic() - killed_at:.1f}s after kill -9 (lease {LEASE_SECONDS}s)")
    final = wait_completed(second)
    assert final["attempts"] == 2
    assert_same_as_reference(second, sync_mongo, job["jobId"], reference)


def test_sigterm_releases_the_lease_and_the_next_start_completes(
    deployment: Deployment, sync_mongo: MongoClient, reference: Result
) -> None:
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    # SIGTERM while the database is held: the app checkpoints and releases the job once it goes on.
    at = step_until(
        app,
        deployment.server,
        lambda p: fraction(p) >= 0.3,
        "30%",
        then=lambda: app.process.send_signal(signal.SIGTERM),
    )
    began = time.monotonic()
    code, seconds = app.process.wait(25), time.monotonic() - began
    print(f"\nSIGTERM: exited {code} after {seconds:.1f}s")
    assert seconds < 20
    doc = job_doc(sync_mongo, deployment, job["jobId"])
    assert doc["status"] == "RUNNING" and doc["heartbeatAt"] is None and doc["owner"] is None, doc
    assert doc["bytesRead"] >= at["bytesRead"] > job["bytesRead"]

    began = time.monotonic()
    second = deployment.start()
    wait_until(lambda: job_doc(sync_mongo, deployment, job["jobId"])["attempts"] == 2, 10, second, "takeover")
    print(f"released job adopted {time.monotonic() - began:.1f}s after the start command")
    final = wait_completed(second)
    assert final["attempts"] == 2
    assert_same_as_reference(second, sync_mongo, job["jobId"], reference)


def test_resume_refuses_a_changed_file(deployment: Deployment, sync_mongo: MongoClient) -> None:
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    assert app.post("/import/cancel").status_code == 202
    cancelled = wait_until(lambda: (p := app.progress())["status"] == "CANCELLED" and p, 30, app, "CANCELLED")
    assert cancelled["jobId"] == job["jobId"]

    with deployment.file.open("ab") as file:
        file.write(b"\r\n99999,C9999999,Late,Row,Acme,Paris,France,,,late@example.com,2021-01-01,,appended")
    response = app.post("/import/resume")

    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400 and problem["jobId"] == job["jobId"]
    assert "changed" in problem["detail"] and deployment.file_name in problem["detail"]
    assert job_doc(sync_mongo, deployment, job["jobId"])["status"] == "CANCELLED"
    assert app.progress()["status"] == "CANCELLED"
