"""kill -9 of the database server during an import: after its restart (WiredTiger's recovery) the import goes
on, nothing the server acknowledged is lost, and the end result equals an uninterrupted run's. Run for the
embedded server's default flags and for each flag measured as a speed-up (docs/performance.md, issue 22)."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from pymongo import MongoClient

from tests.helpers import (
    OwnServer,
    Result,
    assert_same_as_reference,
    fraction,
    start_import,
    step_until,
    wait_completed,
    wait_until,
)

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

# The embedded default, then the flags measured faster (docs/performance.md): each may become the default only
# if this test holds for it.
FLAGS = [("--sync-on-commit",), ("--sync-on-commit", "--oplog-async"), ("--sync-on-commit", "--data-nonlogged")] * 2


@pytest.mark.parametrize("own_server", FLAGS, indirect=True, ids=lambda flags: " ".join(flags) or "default")
def test_kill_9_of_the_database_mid_import_loses_nothing_acknowledged(own_server: OwnServer, reference: Result) -> None:
    server, deployment = own_server.server, own_server.deployment
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    acknowledged: dict[str, int] = {}

    def crash() -> None:
        """While the server is held still: what the owner has counted (only acknowledged writes are), then
        SIGKILL, which a stopped process takes at once."""
        progress = app.progress()
        acknowledged.update(inserted=progress["rowsInserted"], duplicate=progress["rowsDuplicate"])
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()

    step_until(app, server, lambda p: fraction(p) >= 0.4, "40%", then=crash)
    assert app.progress()["status"] == "RUNNING"
    crashed = time.monotonic()
    server.start()  # the same data folder and port; the server recovers from its log
    print(f"\n{server.flags or 'default'}: the database answers {time.monotonic() - crashed:.1f}s after kill -9")
    with MongoClient(server.uri, tz_aware=True) as sync_mongo:
        written = sync_mongo[deployment.database].customers.count_documents({"importJobId": job["jobId"]})
        print("written", written, "acknowledged", acknowledged)
        wait_until(lambda: app.get("/health").status_code == 200, 30, app, "GET /health 200 after the restart")
        wait_completed(app)
        assert app.alive(), app.tail()
        assert_same_as_reference(app, sync_mongo, job["jobId"], reference)
