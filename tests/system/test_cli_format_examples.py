"""The command lines for other CSV formats ("Other CSV formats" in docs/importing.md), read from the page itself:
each runs as written through `python -m app import` on the file it implies, and the customers read back through
the API are exact. The JSON bodies: tests/integration/test_format_examples.py."""

from __future__ import annotations

import shlex
import sys
from urllib.parse import quote

import pytest
from litestar.testing import AsyncTestClient

from app.asgi import create_app
from app.settings import Settings
from tests.helpers.cli import Cli, assert_clean
from tests.helpers.formats import CliExample, ExampleFile, format_examples
from tests.helpers.settings import with_settings

pytestmark = [pytest.mark.system, pytest.mark.skipif(sys.platform != "linux", reason="subprocesses")]

EXAMPLES = format_examples()


def test_the_docs_section_shows_command_lines_and_each_one_is_read() -> None:
    """A reworded page must not make the test below pass with nothing to run."""
    assert EXAMPLES.unparsed == [], "an example line the test cannot read: update tests/helpers/formats.py"
    assert len(EXAMPLES.commands) >= 2, EXAMPLES  # the option table's flags and the command lines
    flags = {arg for command in EXAMPLES.commands for arg in command.args if arg.startswith("--")}
    assert flags >= {"--delimiter", "--encoding", "--quote", "--column"}, flags


@pytest.mark.parametrize("example", EXAMPLES.commands, ids=lambda example: shlex.join(example.args))
async def test_each_documented_command_line_imports_the_file_it_implies_exactly(
    cli: Cli, settings: Settings, example: CliExample
) -> None:
    file = ExampleFile.of(example.options)
    path = cli.folder / example.args[0]  # a path relative to the working folder, as the page writes it
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(file.content())

    run = cli.run(*example.args)

    assert run.code == 0, str(run)
    assert_clean(run)
    job = cli.only_job()
    rows = file.rows()
    assert (job["status"], job["rowsInserted"], job["rowsInvalid"]) == ("COMPLETED", len(rows), 0), job
    assert {key: job["csv"][key] for key in file.read_as()} == file.read_as(), job["csv"]
    app = create_app(with_settings(settings, mongodb_db=cli.db.name, import_dir=str(cli.folder), import_workers=1))
    async with AsyncTestClient(app, timeout=30) as client:
        for row in rows:
            got = (await client.get(f"/customers/{quote(row['customerId'])}")).json()
            assert {key: got.get(key) for key in row} == row
