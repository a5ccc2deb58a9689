"""app/imports/reading/parse.py: header -> ColumnMap, block bytes -> BSON documents and rejections with their lines."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import bson
import pytest
from bson.codec_options import CodecOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from app.customers import rules
from app.customers.document import KEYS
from app.imports.model import Parsed, ParseSpec
from app.imports.reading.header import BOM, MAX_COLUMNS, HeaderError, map_header
from app.imports.reading.parse import content_hash, parse_block
from app.imports.reading.source import first_record_end, read_blocks, read_header
from app.imports.reading.workers import TAIL, parse_range
from tests.helpers.ids import GOOD_IDS

DATA = Path(__file__).parents[1] / "data"
JOB = "job-1"
MIB = 1_048_576
BOOKKEEPING = ("createdAt", "updatedAt", *KEYS, "importJobId", "importLine", "importHash")


def csv_bytes(*rows: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue().encode()


def parse(content: bytes, *, batch_size: int = 100, max_record: int = MIB, reject_chars: int = 1000) -> Parsed:
    """A whole file's bytes: header mapped, the rest parsed as one block from the line after the header."""
    end = first_record_end(content)
    header = content[:end]
    spec = ParseSpec(map_header(header), JOB, batch_size, max_record, reject_chars)
    return parse_block(content[end:], header.count(b"\n") + 1, spec)


def parse_file(name: str, **options: Any) -> Parsed:
    return parse((DATA / name).read_bytes(), **options)


def documents(parsed: Parsed) -> list[dict[str, Any]]:
    return [bson.decode(doc, CodecOptions(tz_aware=True)) for batch in parsed.batches for doc in batch.docs]


def customers(parsed: Parsed) -> list[dict[str, Any]]:
    """The documents without the fields the importer adds."""
    return [{k: v for k, v in doc.items() if k not in BOOKKEEPING} for doc in documents(parsed)]


def rejected(parsed: Parsed) -> list[tuple[int, str]]:
    return [(rejection.line, rejection.reason) for rejection in parsed.rejections]


def assert_accounted(parsed: Parsed) -> None:
    assert parsed.fatal is None
    assert parsed.rows == len(documents(parsed)) + len(parsed.rejections)


# ---- header -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["Customer Id", "customer_id", "CUSTOMERID", "customer-id", " Customer  ID ", "Customer_ID", "customer - id"],
)
def test_customer_id_column_matches_ignoring_case_spaces_underscores_and_dashes(name: str) -> None:
    assert map_header(f"{name},x\n".encode()).fields[0] == "customerId"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("First Name", "firstName"),
        ("first_name", "firstName"),
        ("LAST-NAME", "lastName"),
        ("Company", "company"),
        ("city", "city"),
        ("COUNTRY", "country"),
        ("Phone 1", "phone1"),
        ("phone_2", "phone2"),
        ("Email", "email"),
        ("E-mail", "email"),
        ("Subscription Date", "subscriptionDate"),
        ("Website", "website"),
        ("About", "about"),
        ("About Customer", "about"),
    ],
)
def test_known_columns_feed_their_field(name: str, field: str) -> None:
    columns = map_header(f"Customer Id,{name}\n".encode())
    assert columns.fields == ("customerId", field)
    assert columns.ignored == ()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (b"Customer Id,customer_id\n", "two columns for customerId: 'Customer Id' and 'customer_id'"),
        (b"Customer Id,About,About Customer\n", "two columns for about: 'About' and 'About Customer'"),
        (b"Customer Id,Email,First Name,Email\n", "two columns for email: 'Email' and 'Email'"),
    ],
)
def test_two_columns_for_one_field_are_refused_naming_both(header: bytes, message: str) -> None:
    """Which one is meant is not ours to guess (the first one won, and the second's values were dropped unseen)."""
    with pytest.raises(HeaderError, match=message):
        map_header(header)


def test_a_header_of_too_many_columns_is_refused() -> None:
    """Bounded: a 1 MiB header of commas is a million columns (seconds of the event loop to map, and a preview
    answer of 44 MB)."""
    assert len(map_header(b"Customer Id" + b",x" * (MAX_COLUMNS - 1)).fields) == MAX_COLUMNS
    with pytest.raises(HeaderError, match=r"^the header has 1,000,001 columns; an import reads at most 1,000$"):
        map_header(b"Customer Id" + b"," * 1_000_000)


@pytest.mark.parametrize("header", [b"", BOM])
def test_an_empty_file_is_refused_saying_so(header: bytes) -> None:
    with pytest.raises(HeaderError, match=r"^the file is empty: it has no header line$"):
        map_header(header)


@pytest.mark.parametrize(
    ("header", "fields", "ignored"),
    [
        (b"Customer Id,Email,Contact\n", ("customerId", None, "email"), ("Email",)),
    ],
)
def test_a_mapped_column_wins_over_a_recognised_one(header: bytes, fields: tuple, ignored: tuple) -> None:
    columns = map_header(header, columns={"Contact": "email"})
    assert (columns.fields, columns.ignored) == (fields, ignored)


@pytest.mark.parametrize(
    ("header", "fields", "ignored"),
    [
        (b"Index,Customer Id\n", (None, "customerId"), ()),
        (b"Customer Id,_id,importJobId,Notes\n", ("customerId", None, None, None), ("_id", "importJobId", "Notes")),
        (b"Customer Id,createdAt,searchKeys\n", ("customerId", None, None), ("createdAt", "searchKeys")),
        (b"\xef\xbb\xbfCustomer Id,Email\r\n", ("customerId", "email"), ()),
        (b'"Customer Id","First, Name"\n', ("customerId", None), ("First, Name",)),
        (b"Customer Id", ("customerId",), ()),
    ],
)
def test_header_maps_columns_and_lists_the_ignored(
    header: bytes, fields: tuple[str | None, ...], ignored: tuple[str, ...]
) -> None:
    columns = map_header(header)
    assert (columns.fields, columns.ignored) == (fields, ignored)


@pytest.mark.parametrize(
    "header",
    [
        b"First Name,Email\n",
        b"Id,Customer\n",
        b"Customer,Id\n",
        b"Index\n",
        b"\xef\xbb\xbf\n",
        (DATA / "no_customer_id.csv").read_bytes(),
    ],
)
def test_header_without_customer_id_is_refused_naming_it(header: bytes) -> None:
    with pytest.raises(HeaderError, match="customer id"):
        map_header(header)


@pytest.mark.parametrize("header", [b"", b"Customer Id,Na\xffme\n", b'Customer Id,"Name\n', b'Customer Id,"Na"me\n'])
def test_unreadable_header_is_refused(header: bytes) -> None:
    with pytest.raises(HeaderError):
        map_header(header)


# ---- records, lines and blank lines -------------------------------------------------------------------


def test_bom_and_crlf() -> None:
    parsed = parse_file("bom_crlf.csv")
    assert customers(parsed) == [
        {"_id": "C1", "firstName": "Ann", "email": "ann@example.com"},
        {"_id": "C2", "firstName": "Bob"},
    ]
    assert [doc["importLine"] for doc in documents(parsed)] == [2, 3]
    assert_accounted(parsed)


def test_blank_and_whitespace_only_lines_are_not_rows() -> None:
    parsed = parse_file("blank_lines.csv")
    assert customers(parsed) == [{"_id": "C1", "firstName": "Ann"}, {"_id": "C2", "firstName": "Bob"}]
    assert [doc["importLine"] for doc in documents(parsed)] == [3, 7]
    assert parsed.rows == 2
    assert parsed.rejections == []


def test_the_last_record_may_lack_a_newline() -> None:
    parsed = parse_file("no_trailing_newline.csv")
    assert customers(parsed) == [{"_id": "C1", "firstName": "Ann"}, {"_id": "C2", "firstName": "Bob"}]
    assert [doc["importLine"] for doc in documents(parsed)] == [2, 3]


def test_quoted_commas_doubled_quotes_and_newlines() -> None:
    parsed = parse_file("quoted_newlines.csv")
    assert customers(parsed) == [
        {"_id": "C1", "company": "Acme, Inc.", "about": 'said "hi"'},
        {"_id": "C2", "company": "Initech", "about": "line one\nline two\r\nline three"},
        {"_id": "C3", "company": 'Multi\nline, "quoted"', "about": "plain"},
        {"_id": "C4", "company": "Last", "about": "x"},
    ]
    assert [doc["importLine"] for doc in documents(parsed)] == [2, 3, 6, 8]
    assert_accounted(parsed)


def test_values_are_trimmed_and_empty_optional_values_omitted() -> None:
    parsed = parse_file("whitespace.csv")
    assert customers(parsed) == [{"_id": "C1", "firstName": "Ann"}]


def test_every_known_column_and_no_column_can_set_the_importers_fields() -> None:
    parsed = parse_file("aliases.csv")
    [doc] = documents(parsed)
    assert doc["emailKey"] == "ann@example.com" and doc["countryKey"] == "france"
    assert {k: v for k, v in doc.items() if k not in ("createdAt", "updatedAt", *KEYS, "importHash")} == {
        "_id": "C1",
        "firstName": "Ann",
        "lastName": "Lee",
        "company": "Acme",
        "city": "Paris",
        "country": "France",
        "phone1": "+33 1",
        "phone2": "+33 2",
        "email": "ann@example.com",
        "subscriptionDate": dt.datetime(2024, 2, 29, tzinfo=dt.UTC),
        "website": "https://acme.example",
        "about": "Likes tea",
        "importJobId": JOB,
        "importLine": 2,
    }
    # The digest is of the CSV text (the date as written), so a re-sync compares what the file says.
    assert doc["importHash"] == content_hash(
        {
            "firstName": "Ann",
            "lastName": "Lee",
            "company": "Acme",
            "city": "Paris",
            "country": "France",
            "phone1": "+33 1",
            "phone2": "+33 2",
            "email": "ann@example.com",
            "subscriptionDate": "2024-02-29",
            "website": "https://acme.example",
            "about": "Likes tea",
        }
    )


def test_content_hash_depends_on_every_value_and_field_but_not_their_order() -> None:
    base = content_hash({"firstName": "Ann", "city": "Paris"})
    assert base == content_hash({"city": "Paris", "firstName": "Ann"})
    assert base != content_hash({"firstName": "Ann", "city": "Pari"})
    assert base != content_hash({"firstName": "Ann", "country": "Paris"})
    assert base != content_hash({"firstName": "Ann"})
    assert content_hash({"a": "b\x1ec"}) != content_hash({"a": "b", "c": ""})


# ---- rejected rows ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "accepted", "rejections"),
    [
        ("field_count.csv", ["C1", "C4"], [(3, "expected 3 fields, found 2"), (4, "expected 3 fields, found 4")]),
        (
            "empty_customer_id.csv",
            ["C4"],
            [(2, "customer id is empty"), (3, "customer id is empty"), (4, "customer id is empty")],
        ),
        ("bad_utf8.csv", ["C1", "C3"], [(3, "not valid UTF-8"), (5, "not valid UTF-8"), (6, "not valid UTF-8")]),
    ],
)
def test_invalid_rows_are_rejected_with_their_line(
    name: str, accepted: list[str], rejections: list[tuple[int, str]]
) -> None:
    parsed = parse_file(name)
    assert [doc["_id"] for doc in documents(parsed)] == accepted
    assert rejected(parsed) == rejections
    assert_accounted(parsed)


def test_invalid_utf8_is_never_imported_with_replacement_characters() -> None:
    parsed = parse_file("bad_utf8.csv")
    assert customers(parsed) == [{"_id": "C1", "firstName": "Ann"}, {"_id": "C3", "firstName": "Zoë"}]
    texts = [rejection.text for rejection in parsed.rejections]
    assert texts == ["C2,Bj\\xf6rn", "\\xff\\xfe,Eve", "C5,Cut \\xe2\\x82"]


@pytest.mark.parametrize(
    ("name", "accepted", "lines", "texts"),
    [
        ("malformed.csv", [("C2", 3)], [2, 4], ['C1,"Ann"x', 'C3,"never closed']),
        # the error is on the first line of a quoted multi-line record: its other lines are not records
        ("malformed_multiline.csv", [("C2", 4), ("C4", 8)], [2, 5], ['C1,"a"x,"b\nc",d', 'C3,"e"f,"g\nh\ni",j']),
    ],
)
def test_malformed_csv_is_one_rejected_row(
    name: str, accepted: list[tuple[str, int]], lines: list[int], texts: list[str]
) -> None:
    parsed = parse_file(name)
    assert [(doc["_id"], doc["importLine"]) for doc in documents(parsed)] == accepted
    assert [rejection.line for rejection in parsed.rejections] == lines
    assert [rejection.text for rejection in parsed.rejections] == texts
    assert all(reason.startswith("malformed CSV") for _, reason in rejected(parsed))
    assert_accounted(parsed)


def test_rejected_text_is_the_raw_record_truncated() -> None:
    content = b'Customer Id,Email,About\nC1,nobody,"two\nlines"\n' + b"C2,x," + b"y" * 50 + b"\n"
    parsed = parse(content, reject_chars=12)
    assert [(r.line, r.text) for r in parsed.rejections] == [(2, 'C1,nobody,"t'), (4, "C2,x,yyyyyyy")]
    assert [r.text for r in parse(content).rejections] == ['C1,nobody,"two\nlines"', "C2,x," + "y" * 50]


@pytest.mark.parametrize(
    "email",
    [
        "a@b",
        "ann.lee+news@example.com",
        "jürgen@exämple.de",
        "用户@例子.广告",
        "  ann@example.com  ",
    ],
)
def test_valid_email(email: str) -> None:
    parsed = parse(csv_bytes(["Customer Id", "Email"], ["C1", email]))
    assert customers(parsed) == [{"_id": "C1", "email": email.strip()}]


@pytest.mark.parametrize(
    "email",
    [
        "ann",
        "ann@",
        "@example.com",
        "ann@@example.com",
        "ann@example@com",
        "ann lee@example.com",
        "ann@example .com",
        "ann\t@example.com",
        "ann@exa\nmple.com",
        "ann\u00a0x@example.com",
    ],
)
def test_invalid_email_rejects_the_row(email: str) -> None:
    parsed = parse(csv_bytes(["Customer Id", "Email"], ["C0", "ok@example.com"], ["C1", email]))
    assert [doc["_id"] for doc in documents(parsed)] == ["C0"]
    assert [(line, reason.split(" ")[:2]) for line, reason in rejected(parsed)] == [(3, ["invalid", "email"])]


@pytest.mark.parametrize(
    ("value", "date"),
    [
        ("2024-02-29", dt.datetime(2024, 2, 29, tzinfo=dt.UTC)),
        ("2023-01-05", dt.datetime(2023, 1, 5, tzinfo=dt.UTC)),
        ("1999-12-31", dt.datetime(1999, 12, 31, tzinfo=dt.UTC)),
        (" 2023-03-01 ", dt.datetime(2023, 3, 1, tzinfo=dt.UTC)),
    ],
)
def test_subscription_date_is_utc_midnight(value: str, date: dt.datetime) -> None:
    parsed = parse(csv_bytes(["Customer Id", "Subscription Date"], ["C1", value]))
    assert customers(parsed) == [{"_id": "C1", "subscriptionDate": date}]


@pytest.mark.parametrize(
    "value",
    [
        "2023-02-29",
        "2023-1-05",
        "2023-01-5",
        "20230105",
        "2023-13-01",
        "2023-00-10",
        "2023-04-31",
        "0000-01-01",
        "2023/01/05",
        "05-01-2023",
        "2023-01-05T00:00:00",
        "2023-01-05 x",
        "+2023-01-05",
        "\u0662\u0660\u0662\u0663-\u0660\u0661-\u0660\u0665",  # Arabic-Indic digits
        "\uff12\uff10\uff12\uff13-\uff10\uff11-\uff10\uff15",  # fullwidth digits
    ],
)
def test_invalid_subscription_date_rejects_the_row(value: str) -> None:
    parsed = parse(csv_bytes(["Customer Id", "Subscription Date"], ["C0", ""], ["C1", value]))
    assert customers(parsed) == [{"_id": "C0"}]
    assert [(line, reason.split(" ")[:3]) for line, reason in rejected(parsed)] == [
        (3, ["invalid", "subscription", "date"])
    ]


# ---- documents and batches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_size", "sizes"), [(1, [1, 1, 1, 1, 1]), (2, [2, 2, 1]), (3, [3, 2]), (5, [5]), (100, [5])]
)
def test_batches_hold_at_most_batch_size_with_parallel_ids_and_lines(batch_size: int, sizes: list[int]) -> None:
    content = csv_bytes(["Customer Id", "Email"], ["A", ""], ["B", "bad"], ["C", ""], ["D", ""], ["E", ""], ["F", ""])
    parsed = parse(content, batch_size=batch_size)
    assert [len(batch.docs) for batch in parsed.batches] == sizes
    for batch in parsed.batches:
        decoded = [bson.decode(doc) for doc in batch.docs]
        assert batch.ids == [doc["_id"] for doc in decoded]
        assert batch.lines == [doc["importLine"] for doc in decoded]
        assert {doc["importJobId"] for doc in decoded} == {JOB}
    assert [i for batch in parsed.batches for i in batch.ids] == ["A", "C", "D", "E", "F"]
    assert [line for batch in parsed.batches for line in batch.lines] == [2, 4, 5, 6, 7]
    assert parsed.rows == 6


@pytest.mark.parametrize(
    "name",
    sorted(
        path.name for path in DATA.glob("*.csv") if path.name not in ("no_customer_id.csv", "unterminated_quote.csv")
    ),
)
def test_rows_are_documents_plus_rejections(name: str) -> None:
    assert_accounted(parse_file(name))


def test_first_line_numbers_the_block() -> None:
    spec = ParseSpec(map_header(b"Customer Id,Email\n"), JOB, 100, MIB)
    parsed = parse_block(b"C1,\n\nC2,nope\nC3,\n", 1000, spec)
    assert [line for batch in parsed.batches for line in batch.lines] == [1000, 1003]
    assert rejected(parsed) == [(1002, "invalid email 'nope'")]


# ---- record size --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        b'C2,"' + b"x" * 2000 + b'"',  # one field over the max
        b"C2," + b",".join([b"x" * 400] * 3),  # every field under the max, the record over it
        b"C2," + "é".encode() * 600,  # 600 characters, 1200 bytes
        b'C2,"unterminated\n' + b"C3,x\n" * 300,
    ],
)
def test_a_record_over_the_max_is_fatal_naming_its_line(record: bytes) -> None:
    parsed = parse(b"Customer Id,About\nC1,ok\n" + record + b"\n", max_record=1024)
    assert parsed.fatal is not None
    assert "line 3" in parsed.fatal
    assert "1024 bytes" in parsed.fatal


@pytest.mark.parametrize(
    ("field", "max_record"),
    [
        (b"x" * 100_000, MIB),  # the longest about text; csv's field limit follows the record limit
        (b"y" * 1000, 1024),
        ("é".encode() * 500, 1024),
    ],
)
def test_a_record_within_the_max_parses(field: bytes, max_record: int) -> None:
    parse(b'Customer Id,About\nC0,"' + b"z" * 100 + b'"\n', max_record=128)  # a lower limit set before
    parsed = parse(b'Customer Id,About\nC1,"' + field + b'"\n', max_record=max_record)
    assert customers(parsed) == [{"_id": "C1", "about": field.decode()}]


# ---- the API's rules (app/customers/rules.py) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("a/b,Ann,x", "customer id 'a/b' has whitespace, a control character, / ? # %"),
        ("a?b,Ann,x", "customer id 'a?b' has"),
        ("a#b,Ann,x", "customer id 'a#b' has"),
        ("a%2Fb,Ann,x", "customer id 'a%2Fb' has"),
        ('"a b",Ann,x', "customer id 'a b' has"),
        ("a\x00b,Ann,x", "customer id 'a\\x00b' has"),
        ("a\x1bb,Ann,x", "customer id 'a\\x1bb' has"),
        ("..,Ann,x", "customer id '..' has"),
        (".,Ann,x", "customer id '.' has"),
        ("export,Ann,x", "customer id 'export' is reserved"),  # GET /customers/export is the export
        ("I" * 65 + ",Ann,x", "customer id longer than 64 characters"),
        ("C1," + "n" * 257 + ",x", "firstName longer than 256 characters"),
        ("C1,Ann," + "a" * 100_001, "about longer than 100000 characters"),
        ("C1,A\x00nn,x", "firstName contains a control character"),
        ("C1,Ann,x\x07y", "about contains a control character"),
        ("C1,Ann,x\u0085y", "about contains a control character"),
    ],
)
def test_a_row_the_api_would_refuse_is_rejected_with_its_reason(row: str, reason: str) -> None:
    parsed = parse(b"Customer Id,First Name,About\nOK1,Ann,x\n" + row.encode() + b"\n", max_record=MIB)
    assert customers(parsed) == [{"_id": "OK1", "firstName": "Ann", "about": "x"}]
    assert [(r.line, r.reason[: len(reason)]) for r in parsed.rejections] == [(3, reason)]


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_control_bytes_are_found_in_single_byte_encodings(encoding: str) -> None:
    spec = ParseSpec(map_header(b"Customer Id,About\n"), JOB, 100, MIB, encoding=encoding)
    data = "C1,caf\u00e9\nC2,a\x01b\n".encode(encoding) + (b"C3,a\x85b\n" if encoding == "latin-1" else b"")
    parsed = parse_block(data, 2, spec)
    assert [doc["_id"] for doc in documents(parsed)] == ["C1"]
    assert [r.reason for r in parsed.rejections] == ["about contains a control character"] * (
        2 if encoding == "latin-1" else 1
    )


def test_ids_tabs_and_newlines_the_api_accepts_are_stored() -> None:
    ids = GOOD_IDS
    body = "".join(f'"{i}",Ann,"x\ty\nz"\n' for i in ids).encode()
    parsed = parse(b"Customer Id,First Name,About\n" + body, max_record=MIB)
    assert parsed.rejections == []
    assert [doc["_id"] for doc in customers(parsed)] == ids
    assert {doc["about"] for doc in customers(parsed)} == {"x\ty\nz"}


# ---- property: csv.writer -> read_blocks -> parse_block gives the values back --------------------------

COLUMNS = ["Customer Id", "First Name", "Notes", "Company", "About Customer"]
FIELDS = ["customerId", "firstName", None, "company", "about"]


@st.composite
def csv_files(draw: st.DrawFn) -> tuple[str, list[tuple[str, ...]]]:
    """A line terminator and rows of trimmed values (a customer id first) for csv.writer."""
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    # csv.writer quotes a lone CR only when the line terminator contains one
    text = st.text(st.characters(codec="utf-8", exclude_characters="\r" if terminator == "\n" else ""), max_size=30)
    value = text.filter(lambda value: value == value.strip() and not rules.has_control(value))
    customer_id = value.filter(lambda value: rules.id_problem(value) is None)
    rows = draw(st.lists(st.tuples(customer_id, value, value, value, value), max_size=15))
    return terminator, rows


@settings(max_examples=150, deadline=None)
@given(file=csv_files(), block_bytes=st.integers(16, 4096), batch_size=st.integers(1, 7), bom=st.booleans())
async def test_rows_written_by_csv_writer_come_back_identical(
    tmp_path_factory: pytest.TempPathFactory,
    file: tuple[str, list[tuple[str, ...]]],
    block_bytes: int,
    batch_size: int,
    bom: bool,
) -> None:
    terminator, rows = file
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=terminator)
    writer.writerow(COLUMNS)
    lines = []
    for values in rows:
        lines.append(buffer.getvalue().count("\n") + 1)
        writer.writerow(values)
    path = tmp_path_factory.mktemp("roundtrip") / "customers.csv"
    path.write_bytes(b"\xef\xbb\xbf" * bom + buffer.getvalue().encode())

    header = await read_header(path, MIB)
    spec = ParseSpec(map_header(header.record), JOB, batch_size, MIB)
    parsed = [
        parse_block(block.data, block.first_line, spec)
        async for block in read_blocks(
            path, start=header.end, first_line=header.lines + 1, block_bytes=block_bytes, max_record=MIB
        )
    ]

    docs = [doc for part in parsed for doc in documents(part)]
    assert [{k: v for k, v in doc.items() if k not in BOOKKEEPING} for doc in docs] == [
        {"_id": values[0]}
        | {field: value for field, value in zip(FIELDS[1:], values[1:], strict=True) if field and value}
        for values in rows
    ]
    assert [doc["importLine"] for doc in docs] == lines
    assert all(part.rejections == [] and part.fatal is None for part in parsed)
    assert all(len(batch.docs) <= batch_size for part in parsed for batch in part.batches)
    assert sum(part.rows for part in parsed) == len(rows)


def test_a_worker_reads_its_block_by_offsets_and_notices_a_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    body = b"C1,Ann\nC2,Bob\n"
    path.write_bytes(b"customer id,first name\n" + body)
    spec = ParseSpec(map_header(b"customer id,first name\n"), JOB, 10, 1 << 20)
    start, end = 23, 23 + len(body)
    parsed = parse_range(str(path), start, end, 2, body[-TAIL:], spec)
    assert parsed.fatal is None and parsed.batches[0].ids == ["C1", "C2"]
    path.write_bytes(b"customer id,first name\n" + body.replace(b"Bob", b"Bea"))
    fatal = parse_range(str(path), start, end, 2, body[-TAIL:], spec).fatal or ""
    assert fatal.startswith("f.csv changed while it was being imported") and str(tmp_path) not in fatal
    path.write_bytes(b"customer id,first name\nC1")
    assert parse_range(str(path), start, end, 2, body[-TAIL:], spec).fatal is not None


def test_a_lone_cr_in_an_lf_file_is_one_invalid_row_in_plain_words() -> None:
    """A file that mixes CR-only line endings into an LF file (its header's): the csv module's advice about
    'universal-newline mode' is not for our users."""
    parsed = parse(b"Customer Id,First Name\nC1,Ann\rC2,Bob\nC3,Cy\n")
    assert [doc["_id"] for doc in documents(parsed)] == ["C3"]
    [rejection] = parsed.rejections
    assert rejection.line == 2
    assert rejection.reason == (
        "malformed CSV: a line break inside an unquoted field (the file mixes CR-only line endings with LF ones)"
    )


def test_a_malformed_record_over_many_lines_is_one_rejected_row_and_the_next_row_is_read() -> None:
    """`"a"b` breaks the csv reader on the first line while the record (a quoted field opened after it) runs on
    for thousands of lines: one rejection, with the record's first line, and the row after it imported. (Found
    by matching the record once from its start: before, each extra line matched it again from the start.)"""
    content = b'Customer Id,About\nC1,"a"b,"' + b"x\n" * 20_000 + b'"\nC2,ok\n'
    parsed = parse(content)
    assert [doc["_id"] for doc in documents(parsed)] == ["C2"]
    assert [r.line for r in parsed.rejections] == [2]
    assert parsed.rows == 2
