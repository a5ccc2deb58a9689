"""kill -9 of the database server during an import: after its restart (WiredTiger's recovery) the import goes
on, nothing the server acknowledged is lost, and the end result equals an uninterrupted run's, for the
embedded server's default flags (app/embedded.py SERVER_FLAGS). Without --sync-on-commit this failed: rows the
server had acknowledged were missing at the end, with exact counters (docs/performance.md, issue 22)."""

from __future__ import annotations

import signal
import sys
import time

import pytest
from pymongo import MongoClient

from app.embedded import SERVER_FLAGS
from tests.helpers.apps import fraction, start_import, step_until, wait_completed
from tests.helpers.deployment import OwnServer, Result, assert_same_as_reference
from tests.helpers.gates import wait_until

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

# The embedded default; a flag may join it only if this test holds with it (docs/performance.md has the runs).
FLAGS = [SERVER_FLAGS]


@pytest.mark.parametrize("own_server", FLAGS, indirect=True, ids=lambda flags: " ".join(flags) or "default")
def test_kill_9_of_the_database_mid_import_loses_nothing_acknowledged(own_server: OwnServer, reference: Result) -> None:
    server, deployment = own_server.server, own_server.deployment
    app = deployment.start()
    job = start_import(app, deployment.file_name)
    acknowledged: dict[str, int] = {}

    def crash() -> None:
        """While the server is held still: what the owner has counted (only acknowledged writes are); the app
        stopped too (SIGSTOP), so that what the restarted server holds is what survived; then SIGKILL, which a
        stopped process takes at once."""
        progress = app.progress()
        acknowledged.update(inserted=progress["rowsInserted"], duplicate=progress["rowsDuplicate"])
        app.process.send_signal(signal.SIGSTOP)
        assert server.process is not None
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()

    step_until(app, server, lambda p: fraction(p) >= 0.4, "40%", then=crash)
    crashed = time.monotonic()
    server.start()  # the same data folder and port; the server recovers from its log
    print(f"\n{' '.join(server.flags)}: the database answers {time.monotonic() - crashed:.1f}s after kill -9")
    with MongoClient(server.uri, tz_aware=True) as sync_mongo:
        survived = sync_mongo[deployment.database].customers.count_documents({"importJobId": job["jobId"]})
        app.process.send_signal(signal.SIGCONT)
        assert survived >= acknowledged["inserted"] > 0, (survived, acknowledged)
        wait_until(lambda: app.get("/health").status_code == 200, 30, app, "GET /health 200 after the restart")
        assert app.progress()["status"] == "RUNNING"
        wait_completed(app)
        assert app.alive(), app.tail()
        assert_same_as_reference(app, sync_mongo, job["jobId"], reference)
