"""`python -m app export` as a real subprocess against the session's SecantusDB server: to a file and to standard
output, the same bytes as GET /customers/export, filters and their refusals, and no file left by a refused one."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from litestar.testing import TestClient
from pymongo import MongoClient

from app.asgi import create_app
from app.customers.document import index_keys
from app.customers.export import IMPORTED
from app.embedded import EmbeddedMongo
from app.settings import Settings
from tests.helpers.cli import RUN_TIMEOUT, TERMINAL_ENV, Run, assert_clean
from tests.helpers.settings import SETTINGS_ENV, with_settings

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="subprocesses")]
CUSTOMERS = 2500  # more than one batch (EXPORT_BATCH_SIZE=1000)


@dataclass
class Exports:
    folder: Path
    env: dict[str, str]
    database: str

    def run(self, *args: str) -> tuple[Run, bytes]:
        """`python -m app export ARGS`: its exit code, stderr (text) and stdout (bytes)."""
        done = subprocess.run(
            [sys.executable, "-m", "app", "export", *args],
            env=self.env,
            cwd=self.folder,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=RUN_TIMEOUT,
        )
        return Run(done.returncode, "", done.stderr.decode(errors="replace")), done.stdout


@pytest.fixture(scope="module")
def exports(mongo_server: EmbeddedMongo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exports]:
    """A database of CUSTOMERS customers (one with every hostile character), and the CLI's environment."""
    database = f"cli_export_{uuid.uuid4().hex[:8]}"
    with MongoClient(mongo_server.uri, tz_aware=True) as client:
        docs = []
        for i in range(CUSTOMERS):
            doc = {"_id": f"C{i:05d}", "firstName": f"Ann{i}", "lastName": "Lee", "email": f"a{i}@x.org"}
            docs.append({**doc, "country": "France" if i % 2 else "Sweden", "about": 'a, "b"\r\nc é 🙂 <b>x</b>'})
        client[database].customers.insert_many([{**doc, **index_keys(doc)} for doc in docs])
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV and k not in TERMINAL_ENV}
        env.update({"MONGODB_URI": mongo_server.uri, "MONGODB_DB": database, "LOG_LEVEL": "WARNING"})
        yield Exports(tmp_path_factory.mktemp("cli-export"), env, database)
        client.drop_database(database)


def api_export(settings: Settings, database: str, **params: str) -> bytes:
    with TestClient(create_app(with_settings(settings, mongodb_db=database)), timeout=60) as client:
        response = client.get("/customers/export", params=params, headers={"accept-encoding": "identity"})
        assert response.status_code == 200, response.text
        return response.content


def test_to_a_file_the_same_bytes_as_the_api_with_a_progress_line(exports: Exports, settings: Settings) -> None:
    run, stdout = exports.run("--out", "customers.csv")
    assert run.code == 0, run
    assert_clean(run)
    assert stdout == b""
    written = (exports.folder / "customers.csv").read_bytes()
    assert written == api_export(settings, exports.database)
    rows = list(csv.DictReader(io.StringIO(written.decode(), newline="")))
    assert len(rows) == CUSTOMERS and list(rows[0]) == list(IMPORTED.values())
    assert rows[7]["About Customer"] == 'a, "b"\r\nc é 🙂 <b>x</b>'
    assert f"exported {CUSTOMERS:,} customers" in run.err and "rows/s" in run.err
    assert not list(exports.folder.glob(".*.partial"))  # the temporary file became the file


def test_to_standard_output_with_filters_and_fields(exports: Exports, settings: Settings) -> None:
    args = ("--format", "ndjson", "--country", "FRANCE", "--q", "ann1", "--fields", "customerId,country")
    run, stdout = exports.run("--out", "-", *args)
    assert run.code == 0, run
    assert stdout == api_export(
        settings, exports.database, format="ndjson", country="FRANCE", q="ann1", fields=args[-1]
    )
    lines = [json.loads(line) for line in stdout.decode().splitlines()]
    assert lines and all(line["country"] == "France" and line["customerId"].startswith("C") for line in lines)
    assert [line["customerId"] for line in lines] == sorted(line["customerId"] for line in lines)
    assert "rows/s" in run.err  # the progress goes to standard error, never into the data


def test_a_gz_file(exports: Exports, settings: Settings) -> None:
    run, _ = exports.run("--out", "customers.csv.gz", "--compress", "gzip")
    assert run.code == 0, run
    assert gzip.decompress((exports.folder / "customers.csv.gz").read_bytes()) == api_export(settings, exports.database)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--fields", "searchKeys"), "'searchKeys' is not an exported field"),
        (("--q", ""), "refused"),
        (("--email", "x" * 257), "refused"),
    ],
)
def test_bad_options_are_refused_and_leave_no_file(exports: Exports, args: tuple[str, ...], message: str) -> None:
    run, stdout = exports.run("--out", "refused.csv", *args)
    assert run.code == 2, run
    assert message in run.err and stdout == b""
    assert not (exports.folder / "refused.csv").exists()
    assert_clean(run)
