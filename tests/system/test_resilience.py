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

from tests.helpers.apps import LEASE_SECONDS, fraction, start_import, step_until, wait_completed, wait_progress
from tests.helpers.csvfiles import Hostile
from tests.helpers.deployment import (
    Deployment,
    OwnServer,
    Result,
    assert_same_as_reference,
    job_doc,
    kill_when,
    restart_and_await_takeover,
)
from tests.helpers.gates import wait_until
from tests.helpers.processes import held

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

TAKEOVER_BY_PEER = 60.0


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
        assert fraction(progress) < 1 and progress["status"] == "RUNNING", progress  # killed mid-way
    killed_at = time.monotonic()

    second, _ = restart_and_await_takeover(deployment, sync_mongo, job["jobId"], killed_at, attempts=2)
    # rows written beyond the watermark at the kill (`ahead`, printed) exercise the rule "a row this job wrote counts
    # as inserted"; how many there are depends on timing, so the rule's own test is tests/integration/test_sink.py
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
    # Exits once the job is checkpointed and released; how soon depends on the machine, so no clock is asserted
    # (the wait only turns a hang into a failure; the release itself is checked below).
    code = app.process.wait(60)
    print(f"\nSIGTERM: exited {code} after {time.monotonic() - began:.1f}s")
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
    with held(deployment.server):  # the job cannot end before the cancel arrives, however fast the database
        assert app.post("/import/cancel").status_code == 202  # the owner's cancel needs no database
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
