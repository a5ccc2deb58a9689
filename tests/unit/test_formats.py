"""Reading other formats: gzip and UTF-16 decoded in one place, CR-only lines, other quotes, the file's size as
it was at the start, and a quote left open at the end of the file."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import pytest

from app.imports.model import Block, CsvFormat
from app.imports.reading.decode import DecodeError, Decoder, read_decoded
from app.imports.reading.source import UnterminatedQuote, inspect, read_blocks

ROWS = ["Customer Id;Name;About", 'C1;Zoë;"a\nb"', "C2;Ørsted;x", 'C3;Straße;"q;""r"""', "C4;🙂;y"]
TEXT = "\n".join(ROWS) + "\n"
MIB = 1 << 20


async def blocks_of(path: Path, fmt: CsvFormat, *, start: int, line: int, block_bytes: int, **kw: int) -> list[Block]:
    return [
        block
        async for block in read_blocks(
            path, start=start, first_line=line, block_bytes=block_bytes, max_record=4096, fmt=fmt, **kw
        )
    ]


def encode(text: str, encoding: str, compression: str | None) -> bytes:
    data = text.encode(encoding)
    return gzip.compress(data) if compression else data


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("block_bytes", [1, 7, 64, 4096])
async def test_blocks_are_the_decoded_records_whatever_the_format(
    tmp_path: Path, compression: str | None, encoding: str, ending: str, block_bytes: int
) -> None:
    text = TEXT.replace("\n", ending) if encoding != "cp1252" else TEXT.replace("🙂", "e").replace("\n", ending)
    path = tmp_path / "f.csv"
    path.write_bytes(encode(text, encoding, compression))
    fmt, header = await inspect(path, CsvFormat("auto", "auto", '"', "auto"), 4096)
    assert (fmt.delimiter, fmt.encoding, fmt.compression) == (";", encoding, compression)
    assert fmt.line_ending == {"\n": "LF", "\r\n": "CRLF", "\r": "CR"}[ending]
    blocks = await blocks_of(path, fmt, start=header.end, line=header.lines + 1, block_bytes=block_bytes)
    decoded = text.encode("utf-8" if encoding == "utf-16" else encoding)
    assert b"".join(block.data for block in blocks) == decoded[header.end :]
    assert [block.start for block in blocks[1:]] == [block.end for block in blocks[:-1]]
    assert sum(block.lines for block in blocks) == len(ROWS) - 1 + 1  # the quoted newline is a physical line
    if fmt.streamed:
        ends = [block.file_end for block in blocks]
        assert ends == sorted(ends) and all(0 < end <= path.stat().st_size for end in ends)  # type: ignore[operator]
        resumed = await blocks_of(path, fmt, start=blocks[-1].start, line=blocks[-1].first_line, block_bytes=5)
        assert b"".join(block.data for block in resumed) == blocks[-1].data  # re-decoded up to the watermark
    else:
        assert all(block.file_end is None for block in blocks)


async def test_another_quote_character_keeps_its_records_whole(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_bytes(b"Customer Id,About\nC1,'a,\nb'\nC2,'it''s'\n")
    fmt, header = await inspect(path, CsvFormat("auto", "utf-8", "'", "auto"), 4096)
    assert fmt.delimiter == ","
    blocks = await blocks_of(path, fmt, start=header.end, line=2, block_bytes=1)
    assert [block.data for block in blocks] == [b"C1,'a,\nb'\n", b"C2,'it''s'\n"]


@pytest.mark.parametrize("streamed", [False, True])
@pytest.mark.parametrize("block_bytes", [16, 4096])
async def test_a_file_appended_to_is_read_only_up_to_its_size_at_the_start(
    tmp_path: Path, streamed: bool, block_bytes: int
) -> None:
    """Issue 12, item 6: the import covers the file as it was when the job started."""
    path = tmp_path / "grow.csv"
    original = "".join(f"C{i},x\n" for i in range(50)).encode()
    fmt = CsvFormat(encoding="utf-16" if streamed else "utf-8")
    path.write_bytes(original.decode().encode("utf-16") if streamed else original)
    size = path.stat().st_size
    seen: list[bytes] = []
    async for block in read_blocks(
        path, start=0, first_line=1, block_bytes=block_bytes, max_record=4096, limit=size, fmt=fmt
    ):
        seen.append(block.data)
        if len(seen) == 1:
            with path.open("ab") as file:  # appended while the import runs
                file.write(("C999,late\n" * 100).encode("utf-16-le" if streamed else "utf-8"))
    assert b"".join(seen) == original


async def test_a_quote_open_at_the_end_of_the_file_fails_naming_its_line(tmp_path: Path) -> None:
    """Issue 12, item 5: the rows after a broken quote are never swallowed silently into one rejected row."""
    path = tmp_path / "broken.csv"
    rows = [f"C{i},ok" for i in range(1, 1999)]
    rows.insert(1, 'C-broken,"oops')
    path.write_bytes("\n".join(["Customer Id,About", *rows]).encode() + b"\n")
    blocks: list[Block] = []
    with pytest.raises(UnterminatedQuote, match=r"^line 3: a quote opened") as info:
        async for block in read_blocks(path, start=18, first_line=2, block_bytes=64, max_record=1 << 20):
            blocks.append(block)
    assert (info.value.line, info.value.offset) == (3, 18 + len("C1,ok\n"))
    assert b"".join(block.data for block in blocks) == b"C1,ok\n"  # everything before it, nothing after
    with pytest.raises(UnterminatedQuote) as again:  # resumed from the watermark: the same line, the same offset
        async for _ in read_blocks(path, start=blocks[-1].end, first_line=3, block_bytes=7, max_record=1 << 20):
            pass
    assert (again.value.line, again.value.offset) == (info.value.line, info.value.offset)


def test_gzip_members_are_read_one_after_another_and_a_truncated_stream_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n") + gzip.compress(b"3,4\n"))
    with path.open("rb") as file:
        assert read_decoded(file, MIB, gzip=True, utf16=False) == b"a,b\n1,2\n3,4\n"
    path.write_bytes(gzip.compress(b"a,b\n" * 1000)[:-20])
    with path.open("rb") as file, pytest.raises(DecodeError, match="ends early"):
        read_decoded(file, 10 * MIB, gzip=True, utf16=False)
    path.write_bytes(b"\x1f\x8bnot gzip at all")
    with path.open("rb") as file, pytest.raises(DecodeError, match="not a valid gzip stream"):
        read_decoded(file, MIB, gzip=True, utf16=False)


def test_zeros_after_the_last_gzip_member_are_padding_not_an_error(tmp_path: Path) -> None:
    """gzip and Python's gzip module read a file padded with zero bytes (tape and block-device copies); it was a
    400 ("not a valid gzip stream"). Other bytes after the last member are still an error."""
    path = tmp_path / "padded.gz"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n") + b"\0" * 700_000)  # more than one read of 256 KiB
    assert gzip.decompress(path.read_bytes()) == b"a,b\n1,2\n"
    with path.open("rb") as file:
        assert read_decoded(file, MIB, gzip=True, utf16=False) == b"a,b\n1,2\n"
    path.write_bytes(gzip.compress(b"a,b\n1,2\n") + b"\0" * 10 + b"junk")
    with path.open("rb") as file, pytest.raises(DecodeError, match="not a valid gzip stream"):
        read_decoded(file, MIB, gzip=True, utf16=False)


def test_utf16_cut_in_half_a_character_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    path.write_bytes("a,b\n".encode("utf-16") + b"\x41")
    with path.open("rb") as file, pytest.raises(DecodeError, match="half a character"):
        read_decoded(file, MIB, gzip=False, utf16=True)


def test_a_gzip_bomb_is_decoded_in_bounded_steps(tmp_path: Path) -> None:
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(b"\n" * (256 * MIB), compresslevel=9))  # 256 MiB from about 250 KB
    tracemalloc.start()
    try:
        with path.open("rb") as file:
            decoder = Decoder(file, gzip=True, utf16=False, chunk=MIB)
            total = 0
            while data := decoder.read():
                assert len(data) <= MIB
                total += len(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert total == 256 * MIB
    assert peak < 8 * MIB


@pytest.mark.parametrize("block_bytes", [1, 5, 16, 4096])
async def test_with_a_tail_a_plain_files_blocks_keep_their_offsets_and_only_their_last_bytes(block_bytes: int) -> None:
    path = Path(__file__).parents[1] / "data" / "quoted_newlines.csv"
    whole = await blocks_of(path, CsvFormat(), start=0, line=1, block_bytes=block_bytes)
    tails = await blocks_of(path, CsvFormat(), start=0, line=1, block_bytes=block_bytes, tail=8)
    strip = [(b.index, b.start, b.end, b.first_line, b.lines) for b in whole]
    assert [(b.index, b.start, b.end, b.first_line, b.lines) for b in tails] == strip
    assert [b.data for b in tails[:-1]] == [b.data[-8:] for b in whole[:-1]]


def test_utf16_without_a_bom_is_read_as_little_endian(tmp_path: Path) -> None:
    path = tmp_path / "le.csv"
    path.write_bytes("Customer Id,Näme\n".encode("utf-16-le"))
    with path.open("rb") as file:
        assert read_decoded(file, MIB, gzip=False, utf16=True) == "Customer Id,Näme\n".encode()
