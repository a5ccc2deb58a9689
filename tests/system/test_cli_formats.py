"""`python -m app import` with the CSV options (issue 13): the same formats as through the API."""

from __future__ import annotations

import gzip
import sys

import pytest

from tests.helpers.cli import Cli, assert_clean
from tests.helpers.csvfiles import ENDINGS, csv_text, intact_customers

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="subprocesses")]


@pytest.mark.parametrize(
    ("name", "encoding", "delimiter", "ending", "packed", "args"),
    [
        ("excel-de.csv", "cp1252", ";", "CRLF", False, ["--encoding", "cp1252", "--delimiter", ";"]),
        ("unicode.txt", "utf-16", "\t", "LF", False, ["--encoding", "auto", "--delimiter", "\\t"]),
        ("old-mac.csv", "latin-1", "|", "CR", False, ["--encoding", "latin-1"]),
        ("big.csv.gz", "utf-8", ",", "LF", True, []),
    ],
)
def test_the_cli_imports_each_format_exactly(
    cli: Cli,
    name: str,
    encoding: str,
    delimiter: str,
    ending: str,
    packed: bool,
    args: list[str],
) -> None:
    rows = intact_customers(emoji=encoding.startswith("utf"))
    data = csv_text(rows, delimiter, ENDINGS[ending]).encode(encoding)
    path = cli.folder / "imports" / name
    path.write_bytes(gzip.compress(data) if packed else data)
    run = cli.run(str(path), *args)
    assert run.code == 0, str(run)
    assert_clean(run)
    assert f"{encoding}, delimiter {delimiter!r}" in run.out and f"{ending} line endings" in run.out, str(run)
    job = cli.only_job()
    assert (job["status"], job["rowsInserted"], job["rowsInvalid"]) == ("COMPLETED", len(rows), 1), job
    assert job["csv"]["compression"] == ("gzip" if packed else None)
    for row in rows:
        stored = cli.db.customers.find_one({"_id": row["customerId"]})
        assert stored is not None and {k: stored.get(k) for k in row if k != "customerId"} == {
            k: v for k, v in row.items() if k != "customerId"
        }


def test_the_cli_maps_columns_and_refuses_what_the_api_refuses(cli: Cli) -> None:
    path = cli.folder / "imports" / "crm.csv"
    path.write_bytes(b"Cust #,Given,Mail\nK1,Ann,a@b.c\n")
    run = cli.run(str(path), "--column", "Cust #=customerId", "--column", "Given=firstName", "--column", "Mail=email")
    assert run.code == 0, str(run)
    assert cli.db.customers.find_one({"_id": "K1"}) == cli.db.customers.find_one({"firstName": "Ann"})
    refused = cli.run(str(path), "--column", "Given=shoeSize")
    assert refused.code == 2 and "refused" in refused.err and "shoeSize" in refused.err, str(refused)
    bad = cli.run(str(path), "--column", "nonsense")
    assert bad.code == 2 and "FROM=TO" in bad.err, str(bad)
    twice = cli.run(str(path), "--column", "Cust #=customerId", "--column", "Given=email", "--column", "Mail=email")
    assert twice.code == 2 and "columns map 'Given' and 'Mail' to the same field 'email'" in twice.err, str(twice)
    again = cli.run(str(path), "--column", "Cust #=customerId", "--column", "Mail=email", "--column", "Mail=city")
    assert again.code == 2 and "--column names 'Mail' twice" in again.err, str(again)
    assert [job["status"] for job in cli.jobs()] == ["COMPLETED"]  # the refused ones started no job
