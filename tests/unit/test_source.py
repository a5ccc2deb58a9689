"""app/imports/reading/source.py: record boundaries by quote parity, the header, and record-aligned blocks of a file."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.imports.model import Block
from app.imports.reading.quoting import last_record_end
from app.imports.reading.source import RecordTooLarge, first_record_end, read_blocks, read_header

DATA = Path(__file__).parents[1] / "data"
FILES = sorted(path.name for path in DATA.glob("*.csv"))
UNTERMINATED = ("unterminated_quote.csv", "malformed.csv")  # a quote opened and never closed
MIB = 1_048_576


async def collect(
    path: Path, *, start: int = 0, first_line: int = 1, block_bytes: int, max_record: int = 4096, first_index: int = 0
) -> list[Block]:
    return [
        block
        async for block in read_blocks(
            path,
            start=start,
            first_line=first_line,
            block_bytes=block_bytes,
            max_record=max_record,
            first_index=first_index,
        )
    ]


def assert_blocks_cover(
    blocks: list[Block], content: bytes, *, start: int, first_line: int, first_index: int = 0
) -> None:
    """Byte-exact cover of content[start:], consistent offsets and lines, every cut at a record boundary."""
    assert b"".join(block.data for block in blocks) == content[start:]
    offset, line = start, first_line
    for index, block in enumerate(blocks, first_index):
        assert (block.index, block.start, block.first_line) == (index, offset, line)
        assert block.data
        assert block.end == block.start + len(block.data)
        assert block.lines == block.data.count(b"\n")
        assert block.first_line == content[: block.start].count(b"\n") + 1
        offset, line = block.end, line + block.lines
    for block in blocks[:-1]:  # the last block ends at the end of the file
        assert block.data.endswith(b"\n")
        assert last_record_end(block.data, '"', "\n", ",") == len(block.data)  # ends a record: no field open


# ---- boundaries ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("buf", "first", "last"),
    [
        (b"", -1, -1),
        (b"a,b", -1, -1),
        (b"a\n", 2, 2),
        (b"a\nb", 2, 2),
        (b"a\r\nb\r\nc", 3, 6),
        (b"a\nb\nc\n", 2, 6),
        (b'"a\nb"\n', 6, 6),
        (b'"a\nb"\nc', 6, 6),
        (b'"a\nb', -1, -1),
        (b'x\n"a\nb', 2, 2),
        (b'"a""\n"\n', 7, 7),
        (b'"a""b"",\n""c"\nd\n', 14, 16),
        (b'a,"b\n\nc",d\ne,"\n', 11, 11),
        (b"\n\n", 1, 2),
    ],
)
def test_record_ends_are_newlines_outside_quotes(buf: bytes, first: int, last: int) -> None:
    assert (first_record_end(buf), last_record_end(buf, '"', "\n", ",")) == (first, last)


# ---- header -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "record", "lines"),
    [
        ("bom_crlf.csv", b"Index,Customer Id,First Name,Email\r\n", 1),
        ("quoted_header.csv", b'"Customer Id","Notes\n(free text)"\n', 2),
        ("only_header.csv", b"Customer Id,First Name", 0),
        ("blank_lines.csv", b"Customer Id,First Name\n", 1),
    ],
)
async def test_read_header_strips_the_bom_and_says_where_data_starts(name: str, record: bytes, lines: int) -> None:
    path = DATA / name
    header = await read_header(path, 4096)
    assert (header.record, header.lines) == (record, lines)
    content = path.read_bytes()
    assert content[: header.end].endswith(record)
    assert header.end == len(record) + (3 if content.startswith(b"\xef\xbb\xbf") else 0)


@pytest.mark.parametrize("rest", [b"", b"\nC1,x\n"], ids=["no-newline", "then-rows"])
async def test_a_header_longer_than_the_max_is_too_large(tmp_path: Path, rest: bytes) -> None:
    """With or without rows after it (a hostile user's 1.9 MB header of 200,000 columns passed the 1 MiB limit,
    and its ignored names then went out in every progress answer)."""
    path = tmp_path / "long_header.csv"
    path.write_bytes(b"Customer Id," + b"x" * 100 + rest)
    with pytest.raises(RecordTooLarge) as info:
        await read_header(path, 64)
    assert (info.value.line, info.value.offset) == (1, 0)


# ---- blocks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("block_bytes", [1, 2, 7, 16, 64, 4096])
@pytest.mark.parametrize("name", [name for name in FILES if name not in UNTERMINATED])
async def test_blocks_cover_the_file_from_start_at_record_boundaries(name: str, block_bytes: int) -> None:
    path = DATA / name
    header = await read_header(path, 4096)
    blocks = await collect(path, start=header.end, first_line=header.lines + 1, block_bytes=block_bytes)
    assert_blocks_cover(blocks, path.read_bytes(), start=header.end, first_line=header.lines + 1)


@pytest.mark.parametrize("block_bytes", [1, 5, 4096])
async def test_the_last_record_without_a_newline_is_yielded(block_bytes: int) -> None:
    blocks = await collect(DATA / "no_trailing_newline.csv", block_bytes=block_bytes)
    assert blocks[-1].data.endswith(b"C2,Bob")
    assert blocks[-1].end == (DATA / "no_trailing_newline.csv").stat().st_size


@pytest.mark.parametrize("block_bytes", [1, 16, 4096])
async def test_blocks_resume_from_a_record_boundary(block_bytes: int) -> None:
    path = DATA / "quoted_newlines.csv"
    content = path.read_bytes()
    start = content.index(b"C3,")  # line 6, after a record spanning lines 3-5
    blocks = await collect(path, start=start, first_line=6, block_bytes=block_bytes, first_index=7)
    assert_blocks_cover(blocks, content, start=start, first_line=6, first_index=7)


@pytest.mark.parametrize("block_bytes", [1, 16, 50, 4096])
async def test_a_record_over_the_max_is_too_large_naming_line_and_offset(block_bytes: int) -> None:
    path = DATA / "unterminated_quote.csv"  # line 3 opens a quote that never closes
    with pytest.raises(RecordTooLarge, match=r"line 3 \(byte offset 24\)") as info:
        await collect(path, start=18, first_line=2, block_bytes=block_bytes, max_record=64)
    assert (info.value.line, info.value.offset) == (3, 24)


@pytest.mark.parametrize("filler", ["nul", "lines"])
async def test_an_unterminated_quote_fails_without_reading_the_whole_file(tmp_path: Path, filler: str) -> None:
    path = tmp_path / "huge.csv"
    with path.open("wb") as file:
        file.write(b'Customer Id,About\nC1,ok\nC2,"never closed\n')
        if filler == "nul":
            file.truncate(16 * 1024**3)  # sparse: 16 GiB of NUL bytes, no newline and no quote
        else:
            file.write(b"C3,just a line without quotes\n" * 1_000_000)  # 30 MB
    tracemalloc.start()
    try:
        with pytest.raises(RecordTooLarge) as info:
            await collect(path, start=18, first_line=2, block_bytes=65_536, max_record=MIB // 4)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.value.line, info.value.offset) == (3, 24)
    assert peak < 2 * MIB


# ---- property: cutting never splits a record -----------------------------------------------------------


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    """CSV text from csv.writer: ragged rows (empty ones are blank lines), LF or CRLF, maybe no final newline."""
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    # csv.writer quotes a lone CR only when the line terminator contains one
    alphabet = st.characters(codec="utf-8", exclude_characters="\r" if terminator == "\n" else "")
    rows = draw(st.lists(st.lists(st.text(alphabet, max_size=12), max_size=5), max_size=20))
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=terminator).writerows(rows)
    text = buffer.getvalue()
    if draw(st.booleans()):
        text = text.removesuffix(terminator)
    return text.encode()


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(), newline=""), strict=True))


@st.composite
def csv_files_with_stray_quotes(draw: st.DrawFn) -> bytes:
    """Fields written by hand: quoted ones (quotes doubled, line breaks inside) and unquoted ones with a quote
    inside (`27" Monitors`), which the csv reader keeps as an ordinary character."""
    terminator = draw(st.sampled_from(["\r\n", "\n"]))
    plain = st.text(st.characters(codec="utf-8", exclude_characters='",\r\n'), min_size=1, max_size=8)
    quoted = st.text(st.characters(codec="utf-8", exclude_characters="\r"), max_size=12)
    fields = st.one_of(
        plain,
        quoted.map(lambda text: '"' + text.replace('"', '""') + '"'),
        st.tuples(plain, plain).map(lambda parts: f'{parts[0]}"{parts[1]}'),
    )
    rows = draw(st.lists(st.lists(fields, min_size=1, max_size=5), max_size=20))
    return "".join(",".join(row) + terminator for row in rows).encode()


@settings(max_examples=300, deadline=None)
@given(content=st.one_of(csv_files(), csv_files_with_stray_quotes()), block_bytes=st.integers(1, 300))
async def test_blocks_never_split_a_record(
    tmp_path_factory: pytest.TempPathFactory, content: bytes, block_bytes: int
) -> None:
    """Blocks end where the csv reader ends records, for csv.writer's files and for hand-written ones where a
    stray quote (a quote inside an unquoted field) must never open a field that swallows lines."""
    path = tmp_path_factory.mktemp("cut") / "file.csv"
    path.write_bytes(content)
    blocks = await collect(path, block_bytes=block_bytes, max_record=len(content) + 1)
    assert_blocks_cover(blocks, content, start=0, first_line=1)
    assert [row for block in blocks for row in csv_rows(block.data)] == csv_rows(content)
