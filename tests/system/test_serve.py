"""`python -m app serve` as a real subprocess: start, stop, crash and restart around the embedded database."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from app.embedded import EmbeddedMongo, free_port
from tests.helpers.apps import START_TIMEOUT
from tests.helpers.gates import wait_until
from tests.helpers.processes import alive, command
from tests.helpers.settings import SETTINGS_ENV

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="uses /proc and flock")]

STOP_TIMEOUT = 20.0
CUSTOMER = {"customerId": "sys-1", "firstName": "Ada", "lastName": "Lovelace", "email": "ada@example.com"}


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    def db(self) -> dict[str, int]:
        """The embedded database's pidfile: {"pid": ..., "port": ...}."""
        return json.loads((self.data_dir / "db.pid").read_text())

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- app log ---\n{self.log.read_text(errors='replace')[-3000:]}")


Launch = Callable[..., Service]


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def healthy(service: Service) -> bool:
    if service.process.poll() is not None:
        service.fail(f"app exited with {service.process.returncode} before it was healthy")
    try:
        return httpx.get(f"{service.url}/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def stop(service: Service, signum: int = signal.SIGTERM) -> int:
    service.process.send_signal(signum)
    try:
        return service.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        service.fail(f"app did not exit within {STOP_TIMEOUT:.0f}s of signal {signum}")
        raise


def kill_leftover_database(data_dir: Path) -> None:
    try:
        pid = json.loads((data_dir / "db.pid").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    if alive(pid) and b"secantus" in command(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launch]:
    """Start `python -m app serve` (MONGODB_URI unset, free ports, DATA_DIR in tmp_path) and wait for /health."""
    services: list[Service] = []

    def run(**env: str) -> Service:
        port = free_port()
        environ = {key: value for key, value in os.environ.items() if key not in SETTINGS_ENV}
        environ |= {
            "DATA_DIR": str(tmp_path / "data"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "EMBEDDED_DB_PORT": str(free_port()),
            **env,
        }
        log = tmp_path / f"app-{len(services)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve"],
                env=environ,
                cwd=tmp_path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        service = Service(process, f"http://127.0.0.1:{port}", Path(environ["DATA_DIR"]), log)
        services.append(service)
        wait_until(lambda: healthy(service), START_TIMEOUT, service, "GET /health was 200")
        return service

    try:
        yield run
    finally:
        for service in services:
            if service.process.poll() is None:
                service.process.kill()
                service.process.wait()
            kill_leftover_database(service.data_dir)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_app_and_database_and_data_persists(launch: Launch, signum: int) -> None:
    first = launch()
    db_pid = first.db()["pid"]
    assert httpx.post(f"{first.url}/customers", json=CUSTOMER, timeout=10).status_code == 201

    assert stop(first, signum) == 0
    assert not alive(db_pid)
    assert not (first.data_dir / "db.pid").exists()

    second = launch()
    assert httpx.get(f"{second.url}/health", timeout=10).json()["databaseServer"] == "embedded"
    response = httpx.get(f"{second.url}/customers/sys-1", timeout=10)
    assert response.status_code == 200
    assert response.json()["email"] == CUSTOMER["email"]
    assert stop(second) == 0


def test_next_start_works_after_kill_9(launch: Launch) -> None:
    first = launch()
    db_pid = first.db()["pid"]
    assert httpx.post(f"{first.url}/customers", json=CUSTOMER, timeout=10).status_code == 201
    first.process.kill()
    first.process.wait()

    # started at once: the old database may still be shutting down (its watchdog stops it) and hold the data's lock
    second = launch()
    assert second.db()["pid"] != db_pid
    assert not alive(db_pid)
    assert httpx.get(f"{second.url}/customers/sys-1", timeout=10).status_code == 200
    assert stop(second) == 0


def test_database_left_over_by_a_crashed_run_is_stopped(launch: Launch, tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    data_dir.mkdir()
    orphan = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "secantus",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data_dir / "db"),
            "--log-level",
            "WARNING",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    # reap it as soon as it exits: a zombie would look alive to the app's pid check
    threading.Thread(target=orphan.wait, daemon=True).start()
    try:
        (data_dir / "db.pid").write_text(json.dumps({"pid": orphan.pid, "port": port}))
        assert wait_until(lambda: listening(port), START_TIMEOUT)

        service = launch(EMBEDDED_DB_PORT=str(port))
        assert orphan.wait(STOP_TIMEOUT) is not None
        assert service.db()["pid"] != orphan.pid
        assert service.db()["port"] == port
        assert stop(service) == 0
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


def test_busy_database_port_does_not_prevent_start(launch: Launch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        service = launch(EMBEDDED_DB_PORT=str(port))
        assert service.db()["port"] != port
        assert stop(service) == 0


def test_nothing_is_spawned_when_mongodb_uri_is_set(launch: Launch, mongo_server: EmbeddedMongo) -> None:
    service = launch(MONGODB_URI=mongo_server.uri, MONGODB_DB="system_test")
    children = "".join(path.read_text() for path in Path(f"/proc/{service.process.pid}/task").glob("*/children"))
    # the import process pool may have started helpers (forkserver, resource tracker), but no database
    assert not any(b"secantus" in command(int(pid)) for pid in children.split())
    assert not (service.data_dir / "db.pid").exists()
    assert not (service.data_dir / "db").exists()
    assert httpx.get(f"{service.url}/health", timeout=10).json()["databaseServer"] == "external"
    assert stop(service) == 0


# ---- a second process beside the server (issue 12, item 1) -------------------------------------------------


def cli_env(service: Service) -> dict[str, str]:
    """The environment of `python -m app import` beside `make run`: the same DATA_DIR, no MONGODB_URI."""
    environ = {key: value for key, value in os.environ.items() if key not in SETTINGS_ENV}
    return environ | {"DATA_DIR": str(service.data_dir), "EMBEDDED_DB_PORT": str(free_port())}


def test_a_cli_import_beside_the_server_uses_its_database(launch: Launch, tmp_path: Path) -> None:
    service = launch()
    db = service.db()
    imports = service.data_dir / "imports"
    imports.mkdir(exist_ok=True)
    (imports / "beside.csv").write_text(
        "Customer Id,First Name,Last Name,Email\n" + "".join(f"cli-{i},Ann,Lee,ann{i}@example.com\n" for i in range(50))
    )
    run = subprocess.run(
        [sys.executable, "-m", "app", "import", str(imports / "beside.csv")],
        env=cli_env(service),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "left over" not in run.stderr and "using the embedded database" in run.stderr, run.stderr
    # the server's database was used, and is still the same live process
    assert service.db() == db and alive(db["pid"])
    assert httpx.get(f"{service.url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{service.url}/customers/cli-49", timeout=10).json()["email"] == "ann49@example.com"
    assert stop(service) == 0
    assert wait_until(lambda: not alive(db["pid"]), STOP_TIMEOUT)  # the last user stopped it


def test_the_database_outlives_its_starter_while_another_process_uses_it(launch: Launch) -> None:
    service = launch()
    db = service.db()
    guest = EmbeddedMongo(service.data_dir / "db", free_port())
    try:
        assert guest.start() == f"mongodb://127.0.0.1:{db['port']}/?directConnection=true"
        assert guest.joined and guest.pid == db["pid"]
        assert stop(service) == 0
        assert alive(db["pid"])  # the app left it running for this process
        with MongoClient(guest.uri, serverSelectionTimeoutMS=5000) as client:
            assert client.admin.command("ping")["ok"] == 1
    finally:
        guest.stop()
    assert not alive(db["pid"]) and not (service.data_dir / "db.pid").exists()


def test_a_database_whose_users_all_died_is_stopped_by_its_watchdog(launch: Launch) -> None:
    service = launch()
    db = service.db()
    service.process.kill()
    service.process.wait()
    pidfile = service.data_dir / "db.pid"
    wait_until(
        lambda: not alive(db["pid"]) and not pidfile.exists(), STOP_TIMEOUT, what="its end (it outlived every user)"
    )


def test_serve_creates_the_import_folder_and_logs_its_path(launch: Launch, tmp_path: Path) -> None:
    """Issue 12 item 16: the first POST /import/sync of a file copied into DATA_DIR/imports was a 400, because
    nothing had created the folder."""
    imports = tmp_path / "data" / "imports"
    assert not imports.exists()
    service = launch()
    assert imports.is_dir()
    assert f"import folder (request filePaths resolve here): {imports}" in service.log.read_text()
    (imports / "first.csv").write_text("Customer Id,First Name,Last Name,Email\nf-1,Ann,Lee,ann@example.com\n")
    response = httpx.post(f"{service.url}/import/sync", json={"filePath": "first.csv"}, timeout=10)
    assert response.status_code == 202, response.text
    assert stop(service) == 0


def test_api_token_guards_the_served_app_and_stays_out_of_its_log(launch: Launch, mongo_server: EmbeddedMongo) -> None:
    token = "system-test-token"
    service = launch(MONGODB_URI=mongo_server.uri, MONGODB_DB="system_token", API_TOKEN=token)
    assert httpx.get(f"{service.url}/customers", timeout=10).status_code == 401
    authorized = {"authorization": f"Bearer {token}"}
    assert httpx.get(f"{service.url}/customers", headers=authorized, timeout=10).status_code == 200
    stream = f"{service.url}/import/progress/stream"
    with httpx.stream("GET", stream, params={"access_token": token}, timeout=10) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("id: ") and next(lines) == "event: snapshot"
    assert stop(service) == 0
    log = service.log.read_text()
    assert "GET /import/progress/stream?access_token=[redacted] HTTP/1.1" in log, log[-3000:]
    assert token not in log
