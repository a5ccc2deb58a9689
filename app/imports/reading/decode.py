"""The one place where gzip is decompressed and UTF-16 becomes UTF-8: a file in, the byte stream the source cuts.

Synchronous (the source runs each step in a thread; zlib releases the GIL). Every step returns at most about
`chunk` bytes, so a small compressed file that expands enormously never fills memory.
"""

from __future__ import annotations

import codecs
import zlib
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


class InputError(Exception):
    """The file cannot be read on from some point: the job fails (resumable), its error saying where."""


class DecodeError(InputError):
    """The file is not what its format says (a broken or truncated gzip stream, half a UTF-16 character)."""


class Decoder:
    def __init__(self, file: BinaryIO, *, gzip: bool, utf16: bool, chunk: int, limit: int | None = None):
        self.file, self.chunk, self.limit = file, chunk, limit
        # compressed input is read in smaller pieces: each decompress step re-passes what it left unconsumed
        self.read_size = max(1, min(chunk, 1 << 18)) if gzip else chunk
        self.pos = 0  # bytes of the file read so far
        self.unzip = zlib.decompressobj(wbits=31) if gzip else None
        self.pending = b""  # compressed bytes read but not yet decompressed
        self.utf16 = utf16
        self.text: codecs.IncrementalDecoder | None = None  # the UTF-16 decoder, chosen by the first bytes (BOM or not)
        self.first = b""  # the file's first byte, while a second one is awaited to look for a BOM
        self.done = False

    def read(self) -> bytes:
        """The next piece of the decoded stream; b"" once it has ended."""
        while not self.done:
            data = self._inflated()
            if self.utf16:
                if self.text is None:  # a BOM says the byte order; without one, little-endian (as Windows writes)
                    self.first += data
                    if len(self.first) < 2 and not self.done:
                        continue
                    data, self.first = self.first, b""
                    codec = "utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-16-le"
                    self.text = codecs.getincrementaldecoder(codec)("surrogatepass")
                try:
                    data = self.text.decode(data, final=self.done).encode("utf-8", "surrogatepass")
                except UnicodeError as exc:
                    raise DecodeError(f"the UTF-16 text ends in half a character ({exc})") from None
            if data:
                return data
        return b""

    def _file(self) -> bytes:
        size = self.read_size if self.limit is None else min(self.read_size, self.limit - self.pos)
        data = self.file.read(size) if size > 0 else b""
        self.pos += len(data)
        return data

    def _inflated(self) -> bytes:
        if self.unzip is None:
            data = self._file()
            self.done = not data
            return data
        while True:
            if not self.pending:
                self.pending = self._file()
            if not self.pending:
                if not self.unzip.eof:
                    raise DecodeError(f"the gzip stream ends early at byte {self.pos} (a truncated file?)")
                self.done = True
                return b""
            if self.unzip.eof and not self.pending.strip(b"\0"):  # zero padding: gzip and Python's gzip skip it
                self.pending = b""
                continue
            if self.unzip.eof:  # another gzip member follows (as `cat a.gz b.gz` makes)
                self.unzip = zlib.decompressobj(wbits=31)
            try:
                data = self.unzip.decompress(self.pending, self.chunk)
            except zlib.error as exc:
                raise DecodeError(f"not a valid gzip stream before byte {self.pos}: {exc}") from None
            self.pending = self.unzip.unconsumed_tail or self.unzip.unused_data
            if data:
                return data


def read_decoded(file: BinaryIO, size: int, *, gzip: bool, utf16: bool) -> bytes:
    """The first `size` bytes (or a little more) of the decoded stream, for the header and detection."""
    decoder = Decoder(file, gzip=gzip, utf16=utf16, chunk=min(size, 1 << 20))
    parts: list[bytes] = []
    total = 0
    while total < size and (data := decoder.read()):
        parts.append(data)
        total += len(data)
    return b"".join(parts)
