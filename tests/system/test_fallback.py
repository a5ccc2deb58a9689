"""The embedded database `python -m app serve` starts when MONGODB_URI is unset: SecantusDB's Python server when
EMBEDDED_DB_SERVER=python (what runs where secantusd-rs could not be built) serves the whole app; by default it is
secantusd-rs, stopped cleanly when the app gets SIGTERM."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.embedded import find_server, free_port
from tests.helpers.apps import IMPORT_TIMEOUT, App, Apps, terminate
from tests.helpers.csvfiles import HEADER, long_row
from tests.helpers.gates import wait_until
from tests.helpers.processes import alive, command

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="signals, subprocesses")]

STOP_TIMEOUT = 60.0  # uvicorn's graceful shutdown (15 s) + the embedded server's stop (20 s before SIGKILL)
ROWS = 50
CUSTOMER = {"customerId": "fallback-1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}
STOPPED = re.compile(r"embedded database stopped in \d+\.\d+s")


@pytest.fixture
def apps(tmp_path: Path) -> Iterator[Apps]:
    """Apps with no MONGODB_URI: each starts its own embedded server on a free port, data in tmp_path/data."""
    (tmp_path / "data" / "imports").mkdir(parents=True)
    launcher = Apps(
        tmp_path,
        {
            "DATA_DIR": str(tmp_path / "data"),
            "EMBEDDED_DB_PORT": str(free_port()),
            "IMPORT_CHECKPOINT_SECONDS": "0.2",
            "LOG_LEVEL": "INFO",
        },
    )
    try:
        yield launcher
    finally:
        launcher.close()


def server_pid(app: App) -> int:
    """The embedded server the app started, from its pidfile DATA_DIR/db.pid."""
    return json.loads((Path(app.env["DATA_DIR"]) / "db.pid").read_text())["pid"]


def server_command(app: App) -> list[bytes]:
    return command(server_pid(app))


def stop(app: App) -> None:
    """SIGTERM the app: it exits 0 and its embedded server is stopped (and logged so), not left behind."""
    pid = server_pid(app)
    code = terminate(app, STOP_TIMEOUT)
    if code != 0:
        app.fail(f"app exited with {code} after SIGTERM")
    if not STOPPED.search(app.log.read_text(errors="replace")):
        app.fail("no 'embedded database stopped in X s' line after SIGTERM")
    wait_until(lambda: not alive(pid), 10, app, f"embedded server (pid {pid}) gone")


def test_the_python_server_runs_the_app(apps: Apps, tmp_path: Path) -> None:
    app = apps.start(EMBEDDED_DB_SERVER="python")
    text = app.log.read_text(errors="replace")
    assert "embedded SecantusDB (Python server) ready" in text, app.tail()
    assert "(secantusd-rs)" not in text, app.tail()
    assert server_command(app)[1:3] == [b"-m", b"secantus"]

    # a CRUD round trip
    url = f"{app.url}/customers"
    created = httpx.post(url, json=CUSTOMER, timeout=10)
    assert created.status_code == 201, created.text
    got = httpx.get(f"{url}/fallback-1", timeout=10)
    assert got.status_code == 200 and got.json()["email"] == "ada@example.com", got.text
    patched = httpx.patch(f"{url}/fallback-1", json={"city": "London"}, timeout=10)
    assert patched.status_code == 200 and patched.json()["city"] == "London", patched.text
    assert httpx.get(f"{url}/fallback-1", timeout=10).json()["city"] == "London"
    deleted = httpx.delete(f"{url}/fallback-1", timeout=10)
    assert deleted.status_code == 204, deleted.text
    assert httpx.get(f"{url}/fallback-1", timeout=10).status_code == 404

    # a small import
    csv = tmp_path / "data" / "imports" / "small.csv"
    csv.write_text("\n".join([HEADER, *(long_row(i, f"C{i:07d}") for i in range(1, ROWS + 1))]) + "\n")
    started = app.post("/import/sync", {"filePath": csv.name})
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]
    done = wait_until(lambda: (p := app.progress())["status"] != "RUNNING" and p, IMPORT_TIMEOUT, app, "import done")
    assert (done["jobId"], done["status"]) == (job_id, "COMPLETED"), done
    assert (done["rowsProcessed"], done["rowsInserted"], done["rowsDuplicate"], done["rowsInvalid"]) == (
        ROWS,
        ROWS,
        0,
        0,
    ), done
    customer = app.get("/customers/C0000007")
    assert customer.status_code == 200 and customer.json()["firstName"] == "Ann7", customer.text

    stop(app)


@pytest.mark.skipif(
    find_server()[1:] == ["-m", "secantus"],
    reason="secantusd-rs is not installed (`make test` installs it when cargo and cmake exist)",
)
def test_the_default_server_is_secantusd_rs_and_stops_cleanly(apps: Apps) -> None:
    app = apps.start()
    text = app.log.read_text(errors="replace")
    assert "embedded SecantusDB (secantusd-rs) ready" in text, app.tail()
    assert "Python server" not in text, app.tail()
    assert server_command(app)[0].endswith(b"secantusd-rs")
    created = app.post("/customers", CUSTOMER)
    assert created.status_code == 201, created.text

    stop(app)

    # the stop let WiredTiger close: the next start on the same data finds the customer
    again = apps.start()
    assert again.get("/customers/fallback-1").status_code == 200
    stop(again)
