"""app/imports/reading/dialect.py: encoding, line ending and delimiter read from a file's first bytes."""

from __future__ import annotations

import pytest

from app.imports.reading.dialect import (
    check_delimiter,
    detect_encoding,
    detect_line_ending,
    first_records,
    sniff_delimiter,
)
from app.imports.reading.header import HeaderError


@pytest.mark.parametrize(
    ("head", "complete", "encoding"),
    [
        (b"\xef\xbb\xbfid,name\n", True, "utf-8"),
        ("id,name\n".encode("utf-16"), True, "utf-16"),
        ("id,name\n".encode("utf-16-be").join([b"\xfe\xff", b""]), True, "utf-16"),
        ("id,Zoë\n".encode(), True, "utf-8"),
        ("id,Zoë\n".encode("cp1252"), True, "cp1252"),
        ("id,€\n".encode("cp1252"), True, "cp1252"),
        ("id,Zoë".encode()[:-1], False, "utf-8"),  # the first MiB ends inside a character
        ("id,Zoë".encode()[:-1], True, "cp1252"),  # ...but not when it is the whole file
        (b"plain ascii", True, "utf-8"),
    ],
)
def test_encoding_is_a_bom_else_utf8_if_valid_else_cp1252(head: bytes, complete: bool, encoding: str) -> None:
    assert detect_encoding(head, complete=complete) == encoding


@pytest.mark.parametrize(
    ("head", "ending"),
    [
        (b"a,b\nc,d\n", "LF"),
        (b"a,b\r\nc,d\r\n", "CRLF"),
        (b"a,b\rc,d\r", "CR"),
        (b"a,b", "LF"),
        (b'"a\rx",b\nc,d\n', "LF"),  # a CR inside a quoted header name is not the line ending
        (b'"a\nx",b\rc,d\r', "CR"),
    ],
)
def test_line_ending_is_what_ends_the_first_record(head: bytes, ending: str) -> None:
    assert detect_line_ending(head, b'"') == ending


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("id,name,email\n1,a,b\n", ","),
        ("id;name;email\n1;a,x;b\n", ";"),
        ("id\tname\temail\n1\ta;b\tc\n", "\t"),
        ("id|name|email\n1|a|b\n", "|"),
        ('"id;x",name,email\n1,"a;b;c",d\n', ","),  # a delimiter inside quotes does not count
        ("id\n1\n", ","),  # one column: comma
        ("id;name,email\n1;a,b\n2;c,d\n", ","),  # a tie (the rows agree with both): the first of , ; tab |
    ],
)
def test_the_delimiter_is_sniffed_from_the_header_and_first_rows(text: str, delimiter: str) -> None:
    records = first_records(text.encode(), b'"', b"\n")
    assert sniff_delimiter(records, "utf-8", '"') == delimiter


def test_a_header_that_does_not_split_under_the_given_delimiter_is_named() -> None:
    with pytest.raises(HeaderError, match="does not split under the delimiter ',' but does under ';'"):
        check_delimiter(b"Customer Id;Name\n", encoding="utf-8", delimiter=",", quote='"')
    check_delimiter(b"Customer Id\n", encoding="utf-8", delimiter=",", quote='"')  # one column is fine
    check_delimiter(b"Customer Id;Name\n", encoding="utf-8", delimiter=";", quote='"')


def test_the_quote_character_is_never_sniffed_as_the_delimiter() -> None:
    records = first_records(b"Customer Id,Name\n|C,1|,Ann\n", b"|", b"\n")
    assert sniff_delimiter(records, "utf-8", "|") == ","
