"""`python -m app preview FILE` (issue 20): the preview of POST /import/preview as tables, with the import's options;
nothing written, no job."""

from __future__ import annotations

import sys

import pytest

from tests.helpers.cli import Cli, assert_clean

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="subprocesses")]

CRM = "Cust #;Given;Family;Email\r\nK1;Zoë;Straße;z@x.y\r\nK2;[red]Bob[/red];Lee;bad\r\nK3;Ann;Lee;\r\n"


def test_the_cli_previews_a_mapped_cp1252_file_as_the_import_would_store_it(cli: Cli) -> None:
    path = cli.folder / "imports" / "crm.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(CRM.encode("cp1252"))
    mapped = ["--encoding", "auto", "--column", "Cust #=customerId", "--column", "Given=firstName"]
    run = cli.run(str(path), *mapped, "--limit", "2", command="preview")
    assert run.code == 0, str(run)
    assert_clean(run)
    out = run.out
    size = len(CRM.encode("cp1252"))
    assert f"crm.csv: {size} bytes, 3 rows (from the first {size} bytes)" in out, out
    assert "read as cp1252 (detected), delimiter ';' (detected), quote '\"' (given), CRLF line endings" in out, out
    assert "│ Cust #" in out and "│ customerId │ mapped" in out and "│ ignored    │ ignored" in out, out
    assert "│ 2    │ insert  │ K1" in out and "Zoë" in out, out
    assert "invalid email 'bad':" in out and "K2;[red]Bob[/red];Lee;bad" in out, out  # text, never console markup
    assert "K3" not in out  # --limit 2
    assert cli.jobs() == [] and cli.db.customers.count_documents({}) == 0

    refused = cli.run(str(path), "--encoding", "auto", command="preview")
    assert refused.code == 2 and "refused:" in refused.err and "no customer id column" in refused.err, str(refused)
    bad = cli.run(str(path), "--limit", "201", command="preview")
    assert bad.code == 2 and "1..200" in bad.err, str(bad)


def test_file_text_in_a_refusal_is_printed_as_written_not_as_emoji(cli: Cli) -> None:
    """Rich turns `:x:` into an emoji: a header `Time:x:Value` was printed as `Time❌Value` (as was /etc/passwd's
    `root:x:0:0`), and a file name holding `:smile:` as a smiley."""
    path = cli.folder / "imports" / "log:smile:.csv"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"Time:x:Value,Other\n1,2\n")
    for command in ("preview", "import"):
        run = cli.run(str(path), command=command)
        assert run.code == 2 and "refused:" in run.err, str(run)
        assert "'Time:x:Value'" in run.err and "log:smile:.csv" in run.err and "❌" not in run.err, str(run)
