"""The examples of other CSV formats (docs/importing.md): each as the page shows it, and the file it implies."""

from __future__ import annotations

import gzip
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.csvfiles import FORMAT_COLUMNS, intact_customers
from tests.helpers.paths import ROOT

IMPORTING = ROOT / "docs" / "importing.md"
FORMATS_SECTION = "## Other CSV formats"
# A row of the option table: | `option` | values | `{JSON body}` · `--cli flags` |
TABLE_ROW = re.compile(r"^\| `(?P<option>[^`]+)` \|.*\| `(?P<body>\{[^`]*\})` · `(?P<flags>--[^`]*)` \|$")
CURL_BODY = re.compile(r"^curl -X POST localhost:8000/import/sync .*-d '(?P<body>[^']*)'$")
CLI_LINE = re.compile(r"^\.venv/bin/python -m app import (?P<args>.+)$")
CLI_FOLDER = "data/imports"  # where the page's command line keeps the files it imports (DATA_DIR/imports)
# each customer field of intact_customers() and its usual column name
FIELDS = dict(
    zip(("customerId", "firstName", "lastName", "company", "city", "email", "about"), FORMAT_COLUMNS, strict=True)
)


@dataclass(frozen=True)
class CliExample:
    """A command line of the examples: its arguments after `python -m app import` (the file first, a path relative
    to the working folder) and the import options the file it reads was written for."""

    args: list[str]
    options: dict[str, Any]


@dataclass(frozen=True)
class FormatExamples:
    """Every example of the "Other CSV formats" section of docs/importing.md, and the lines that show one but did
    not parse (a reworded example must not drop out of the test unseen)."""

    bodies: list[dict[str, Any]]  # POST /import/sync bodies: the option table's, then the curl lines'
    commands: list[CliExample]  # the option table's flags (each on its row's file), then the command lines
    unparsed: list[str]


def format_examples(page: Path = IMPORTING) -> FormatExamples:
    """The examples as the page shows them now: JSON and shell quoting read as a client and a shell read them."""
    text = page.read_text(encoding="utf-8")
    start = text.find(f"\n{FORMATS_SECTION}\n")
    section = text[start : text.find("\n## ", start + 1)] if start >= 0 else ""
    bodies: list[dict[str, Any]] = []
    commands: list[CliExample] = []
    unparsed: list[str] = []
    for line in section.replace("\\\n", " ").splitlines():  # a shell line continued with `\` is one line
        if (row := TABLE_ROW.match(line)) is not None:
            body = json.loads(row["body"])
            bodies.append(body)
            commands.append(CliExample([f"{CLI_FOLDER}/{body['filePath']}", *shlex.split(row["flags"])], body))
        elif (curl := CURL_BODY.match(line)) is not None:
            bodies.append(json.loads(curl["body"]))
        elif (cli := CLI_LINE.match(line)) is not None:
            args = shlex.split(cli["args"])
            commands.append(CliExample(args, {"filePath": args[0], **cli_options(args[1:])}))
        elif line.startswith(("| `", "curl ", ".venv/bin/python -m app import")):
            unparsed.append(line)
    return FormatExamples(bodies, commands, unparsed)


def cli_options(flags: list[str]) -> dict[str, Any]:
    """The POST /import/sync options that `--name value` flags stand for (`--column FROM=TO` into `columns`)."""
    assert len(flags) % 2 == 0 and all(flag.startswith("--") for flag in flags[::2]), flags
    options: dict[str, Any] = {}
    for flag, value in zip(flags[::2], flags[1::2], strict=True):
        if flag == "--column":
            source, _, field = value.partition("=")
            options.setdefault("columns", {})[source] = field
        else:
            options[flag.removeprefix("--")] = value
    return options


@dataclass(frozen=True)
class ExampleFile:
    """The small file an example implies: its encoding, delimiter, quote and column names, gzip for `.gz`."""

    name: str
    encoding: str
    delimiter: str
    quote: str
    columns: dict[str, str]  # header name -> customer field, for the fields not under their usual name
    compression: str | None

    @classmethod
    def of(cls, options: dict[str, Any]) -> ExampleFile:
        """`encoding` auto stands for a cp1252 file (what detection must find), `delimiter` auto for `,`."""
        encoding = options.get("encoding", "utf-8")
        delimiter = {"auto": ",", "\\t": "\t"}.get(options.get("delimiter", "auto"), options.get("delimiter"))
        name = str(options["filePath"])
        return cls(
            name,
            "cp1252" if encoding == "auto" else encoding,
            str(delimiter),
            options.get("quote", '"'),
            dict(options.get("columns", {})),
            "gzip" if name.endswith(".gz") else None,
        )

    def rows(self) -> list[dict[str, str]]:
        """20 customers whose text must come back intact: é ß ø, every delimiter and both quote characters in
        one field, a newline in a quoted field; emoji when the encoding has them."""
        rows = intact_customers(emoji=self.encoding.startswith("utf"))[:20]
        return [{**row, "lastName": "O'Straße"} for row in rows]

    def content(self) -> bytes:
        names = {field: source for source, field in self.columns.items()}
        lines = [self.delimiter.join(names.get(field, usual) for field, usual in FIELDS.items())]
        q = self.quote
        lines += [self.delimiter.join(q + row[field].replace(q, q + q) + q for field in FIELDS) for row in self.rows()]
        data = ("\r\n".join(lines) + "\r\n").encode(self.encoding)
        return gzip.compress(data) if self.compression else data

    def read_as(self) -> dict[str, Any]:
        """What the job must say it read the file as (its `csv`, without line ending and columns)."""
        return {
            "encoding": self.encoding,
            "delimiter": self.delimiter,
            "quote": self.quote,
            "compression": self.compression,
        }
