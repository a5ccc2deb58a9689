"""app/customers/export.py: the columns the importer reads back, fields=, Accept-Encoding, and rows of both formats
(hypothesis: any text a customer may hold comes back from the CSV exactly as the importer will read it)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.customers import rules
from app.customers.export import (
    COLUMNS,
    DEFAULT_FIELDS,
    IMPORTED,
    STAMPS,
    CsvRows,
    Format,
    Gzip,
    NdjsonRows,
    accepts_gzip,
    file_name,
    parse_fields,
)
from app.customers.repository import stored_field
from app.errors import InvalidInput
from app.imports.reading.header import map_header


def test_the_importer_reads_every_exported_column_as_the_field_it_came_from() -> None:
    header = CsvRows(COLUMNS, stored_field).header()
    columns = map_header(header)
    assert columns.fields[: len(IMPORTED)] == tuple(IMPORTED)
    assert columns.fields[len(IMPORTED) :] == (None,) * len(STAMPS)  # bookkeeping: the import sets its own
    assert columns.ignored == tuple(STAMPS.values())


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        (None, DEFAULT_FIELDS),
        ("email", ("email",)),
        (" email , customerId ", ("email", "customerId")),
        ("handEdited,createdAt", ("handEdited", "createdAt")),
    ],
)
def test_fields_are_api_names_in_the_order_given(text: str | None, fields: tuple[str, ...]) -> None:
    assert parse_fields(text) == fields


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'' is not an exported field"),
        ("email,", "'' is not an exported field"),
        ("searchKeys", "'searchKeys' is not an exported field"),
        ("importJobId", "'importJobId' is not"),
        ("_id", "'_id' is not"),
        ("Email", "'Email' is not"),
        ("email,email", "'email' is named twice"),
    ],
)
def test_bad_fields_are_invalid_input_naming_the_parameter(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_fields(text)
    assert refused.value.detail.startswith(f"fields: {message}")
    assert refused.value.extra["errors"][0]["key"] == "fields"


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP;q=0.1", True),
        ("x-gzip", True),
        ("*", True),
        ("deflate, *;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0, *", False),
        ("*;q=0", False),
        ("identity", False),
        ("br", False),
        ("", False),
        (None, False),
        ("gzip;q=x", False),
    ],
)
def test_accept_encoding(header: str | None, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def test_file_names() -> None:
    day = dt.date(2026, 12, 6)
    assert file_name(Format.CSV, gzip_file=False, today=day) == "customers-2026-12-06.csv"
    assert file_name(Format.NDJSON, gzip_file=True, today=day) == "customers-2026-12-06.ndjson.gz"


TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda text: not rules.has_control(text)
)


@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=20))
def test_any_text_comes_back_from_the_csv_as_written(values: list[tuple[str, str]]) -> None:
    docs = [{"_id": f"C{i}", "firstName": first, "about": about} for i, (first, about) in enumerate(values)]
    rows = CsvRows(("customerId", "firstName", "about"), stored_field)
    text = (rows.header() + rows.rows(docs)).decode()
    read = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert read[0] == ["Customer Id", "First Name", "About Customer"]
    assert read[1:] == [[doc["_id"], doc["firstName"], doc["about"]] for doc in docs]


def test_ndjson_leaves_absent_fields_out_and_writes_dates_as_days() -> None:
    docs = [
        {"_id": "C1", "subscriptionDate": dt.datetime(2021, 3, 1, tzinfo=dt.UTC), "firstName": None},
        {"_id": "C2", "handEdited": True, "createdAt": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)},
    ]
    lines = NdjsonRows(("customerId", "subscriptionDate", "firstName", "handEdited", "createdAt"), stored_field)
    assert [json.loads(line) for line in lines.rows(docs).splitlines()] == [
        {"customerId": "C1", "subscriptionDate": "2021-03-01", "handEdited": False},
        {"customerId": "C2", "handEdited": True, "createdAt": "2026-01-02T03:04:05Z"},
    ]


def test_each_gzip_piece_decompresses_to_whole_records() -> None:
    zipper, reader = Gzip(), zlib.decompressobj(wbits=31)
    for piece in (b"a,b\r\n", b"c,d\r\n" * 1000, b"e,f\r\n"):
        assert reader.decompress(zipper.piece(piece)) == piece  # nothing held back until the next piece
    assert reader.decompress(zipper.end()) == b"" and reader.eof


@given(st.lists(st.lists(st.one_of(TEXT, st.none(), st.integers()), min_size=1, max_size=4), min_size=1, max_size=8))
def test_records_are_what_csv_writer_writes(records: list[list[object]]) -> None:
    """The hand-written quoting writes exactly what the standard library's csv.writer (RFC 4180, minimal quoting)
    writes, one empty lone field included."""
    width = len(records[0])
    records = [(record * width)[:width] for record in records]
    fields = tuple(list(COLUMNS)[1 : width + 1])
    docs = [dict(zip(fields, record, strict=True)) for record in records]
    expected = io.StringIO()
    csv.writer(expected).writerows(records)
    assert CsvRows(fields, stored_field).rows(docs) == expected.getvalue().encode()
