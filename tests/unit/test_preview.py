"""The pure parts of the preview (issue 20): why each column feeds what it feeds, what a write would do to each row,
the row estimate; and `columns` mapping a column to "ignore"."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from app.customers.export import IMPORTED
from app.imports.model import CsvFormat, Mode
from app.imports.preview import estimate, judged
from app.imports.reading.header import IGNORE, NoIdColumn, map_header
from app.imports.reading.sample import Row, Sample, explain
from app.imports.schemas import Decided, ImportPreview, PreviewColumn, PreviewRow
from app.imports.table import print_preview


def test_each_column_says_why() -> None:
    header = b"Index,Cust #,First Name,Given,Phone 1,Shoe size\n"
    columns = {"Cust #": "customerId", "Given": "firstName", "Phone 1": IGNORE}
    mapped = map_header(header, columns=columns)
    names = ["Index", "Cust #", "First Name", "Given", "Phone 1", "Shoe size"]
    assert [(c.name, c.field, c.reason) for c in explain(names, mapped.fields, columns)] == [
        ("Index", None, "ignored"),
        ("Cust #", "customerId", "mapped"),
        ("First Name", None, "ignored"),  # `columns` gives firstName to Given
        ("Given", "firstName", "mapped"),
        ("Phone 1", None, "mapped"),  # mapped to ignore, though its name is recognised
        ("Shoe size", None, "ignored"),
    ]
    assert mapped.ignored == ("First Name", "Phone 1", "Shoe size")


def test_a_header_without_an_id_says_what_each_column_would_feed() -> None:
    with pytest.raises(NoIdColumn) as refused:
        map_header(b"Customer Id,Email\n", columns={"Customer Id": IGNORE})
    assert (refused.value.names, refused.value.fields) == (["Customer Id", "Email"], [None, "email"])


def row(line: int, cid: str | None, digest: str = "d") -> Row:
    if cid is None:
        return Row(line, reason="invalid email 'x'", text="raw")
    return Row(line, {"customerId": cid}, digest)


STORED: dict[str, dict[str, Any]] = {"A": {"importHash": "d"}, "B": {"importHash": "old"}, "H": {"handEdited": True}}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (Mode.INSERT, ["duplicate", "duplicate", "duplicate", "insert", None, "duplicate"]),
        (Mode.UPSERT, ["unchanged", "update", "protected", "insert", None, "update"]),
    ],
)
def test_each_row_gets_what_the_sink_would_do(mode: Mode, expected: list[str | None]) -> None:
    rows = [row(2, "A"), row(3, "B"), row(4, "H"), row(5, "N"), row(6, None), row(7, "N", "other")]
    shown = list(judged(rows, STORED, mode))
    assert [r.outcome for r in shown] == expected
    assert [r.stored for r in shown] == [True, True, True, False, False, False]
    assert (shown[4].reason, shown[4].text, shown[4].customer) == ("invalid email 'x'", "raw", None)


@pytest.mark.parametrize(
    ("rows_read", "sampled", "complete", "size", "expected"),
    [(300, 40_000, True, 40_000, 300), (1000, 100_000, False, 2_000_000_000, 20_000_000), (0, 0, False, 10, 0)],
)
def test_the_estimate_scales_the_rows_read_to_the_file(
    rows_read: int, sampled: int, complete: bool, size: int, expected: int
) -> None:
    sample = Sample(CsvFormat(), [], rows_read=rows_read, sampled=sampled, complete=complete)
    assert estimate(sample, size) == expected


def a_wide_preview() -> ImportPreview:
    """The preview of a generated file (the README tour's): twelve fields, a long About Customer."""
    names = list(IMPORTED.values())
    customer = {field: f"{field}-value" for field in IMPORTED} | {"email": "mariafernandez@hotmail.com"}
    customer["about"] = "The customer renewed the contract for the analytics add-on. " * 8
    return ImportPreview(
        file_path="customers.csv",
        file_size=8_518_309,
        bytes_read=1_113_819,
        mode=Mode.INSERT,
        csv=CsvFormat(delimiter=","),
        decided=Decided("detected", "given", "given", "detected", "detected"),
        columns=[PreviewColumn(name, field, "recognised") for name, field in zip(names, IMPORTED, strict=True)],
        rows=[PreviewRow(line, customer, outcome="insert") for line in (2, 3, 4)],
        limit=3,
        rows_read=1300,
        rows_estimate=9858,
        rows_estimate_exact=False,
    )


@pytest.mark.parametrize("width", [80, 200])
def test_the_cli_rows_are_readable_in_a_terminal_too_narrow_for_the_table(width: int) -> None:
    """Fifteen columns did not fit 80 characters: every value was cut to one letter and an ellipsis, and the about
    text wrapped into about ninety lines per row. Rows that do not fit are listed field by field."""
    console = Console(width=width, record=True, file=io.StringIO())
    print_preview(a_wide_preview(), console)
    text = console.export_text()
    assert text.count("mariafernandez@hotmail.com") == 3 and text.count("phone2-value") == 3
    assert len(text.splitlines()) < 90, text
