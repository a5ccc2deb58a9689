"""A gzip import killed with kill -9 part way resumes (re-decoding from the start up to its watermark) to exactly
the result of an uninterrupted import of the same rows uncompressed (issue 13)."""

from __future__ import annotations

import gzip
import sys
import time

import pytest
from pymongo import MongoClient

from tests.helpers.apps import fraction, start_import, wait_completed
from tests.helpers.deployment import (
    Deployment,
    Result,
    assert_same_as_reference,
    job_doc,
    kill_when,
    restart_and_await_takeover,
)

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]


def test_kill_9_mid_gzip_import_then_restart_resumes_to_the_reference_result(
    deployment: Deployment, sync_mongo: MongoClient, reference: Result
) -> None:
    packed = deployment.file.with_name(deployment.file.name + ".gz")
    packed.write_bytes(gzip.compress(deployment.file.read_bytes()))
    app = deployment.start()
    job = start_import(app, packed.name)
    assert job["csv"]["compression"] == "gzip"
    at_kill = kill_when(deployment, app, lambda p: fraction(p) >= 0.4, "40% of the compressed bytes")
    assert at_kill["status"] == "RUNNING" and fraction(at_kill) < 1, at_kill
    persisted = job_doc(sync_mongo, deployment, job["jobId"])
    assert persisted["streamOffset"] > 0, persisted  # the watermark, in bytes of the decompressed text

    second, _ = restart_and_await_takeover(deployment, sync_mongo, job["jobId"], time.monotonic(), attempts=2)
    final = wait_completed(second)
    assert final["attempts"] == 2
    assert_same_as_reference(second, sync_mongo, job["jobId"], reference)
