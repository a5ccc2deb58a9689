"""CSV files: rows under the customers' header, the hostile file and what importing it must yield, files of
intact text in any delimiter and line ending, and the batch a small text parses into."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from app.imports.job.jobs import JobState, now
from app.imports.model import Batch, Mode, ParseSpec, Status
from app.imports.reading.header import map_header
from app.imports.reading.parse import parse_block

HEADER = (
    "Index,Customer Id,First Name,Last Name,Company,City,Country,Phone 1,Phone 2,Email,"
    "Subscription Date,Website,About Customer"
)
EXISTING = {"_id": "EXISTING-1", "firstName": "Keep", "lastName": "Me"}  # in the database before the import


def good_row(i: int, customer_id: str | None = None, about: str = "Likes tea") -> str:
    """A valid row of about 130 bytes under HEADER."""
    cid = customer_id or f"C{i:07d}"
    return (
        f'{i},{cid},Ann{i},Lee,"Acme, ""Best"" Inc",Paris,France,+33 1,,ann{i}@example.com,'
        f'2021-03-{1 + i % 28:02d},https://acme.example,"{about}"'
    )


def plain_row(i: int, customer_id: str | None = None, *, first: str | None = None, company: str = "Acme") -> str:
    """A valid row under HEADER with no quoted field (no quote at all unless `first` or `company` has one)."""
    cid = customer_id or f"C{i:07d}"
    first = first or f"Ann{i}"
    return f"{i},{cid},{first},Lee,{company},Paris,France,+33 1,,ann{i}@example.com,2021-03-01,,Likes tea"


def long_row(i: int, cid: str, *, email: str | None = None, date: str | None = None, about: str | None = None) -> str:
    """A row of about 200 bytes under HEADER (valid unless told otherwise): every field set, its length varying."""
    email = email if email is not None else f"ann{i}@example.com"
    date = date if date is not None else f"2021-03-{1 + i % 28:02d}"
    about = about if about is not None else f"Likes tea and long CSV files; row {i} " + "x" * (i % 40)
    return (
        f'{i},{cid},Ann{i},Lee,"Acme, ""Best"" Inc",Paris,France,+33 1 23 45 67 {i % 100:02d},,{email},'
        f'{date},https://acme.example/{i},"{about}"'
    )


def a_job(job_id: str | None = None) -> JobState:
    """The least a RUNNING import_state document holds, with a live lease: without one, the session app's takeover
    watcher, on the same database, adopts the job (and ends it: its file does not exist) while the test runs."""
    return JobState(
        job_id=job_id or uuid.uuid4().hex,
        status=Status.RUNNING,
        file_path="f.csv",
        file_size=1,
        file_identity={},
        mode="insert",
        batch_size=1,
        owner="tests",
        heartbeat_at=now(),
    )


def write(path: Path, lines: list[str | bytes], *, newline: bytes = b"\n") -> Path:
    path.write_bytes(newline.join(x if isinstance(x, bytes) else x.encode() for x in lines) + newline)
    return path


@dataclass(frozen=True)
class Hostile:
    """The file and what a correct import of it yields, computed while writing it."""

    path: Path
    counters: dict[str, int]
    rejected: dict[int, str]  # physical line -> a fragment of its reason


def write_hostile_csv(path: Path, rows: int = 10_000) -> Hostile:
    """~200-byte rows behind a BOM, CRLF line ends, no final newline; eight kinds of invalid rows (some spanning
    lines), blank lines, quoted newlines, duplicates inside a batch, across distant and neighbouring blocks and
    against a customer that exists before the import (EXISTING: the test creates it)."""
    records: list[bytes] = [HEADER.encode()]
    rejected: dict[int, str] = {}
    valid_ids: list[str] = []  # the customer id of every valid row, in file order
    line = 2  # physical line of the next record
    for i in range(1, rows + 1):
        kind, cid = i % 200, f"C{i:07d}"
        reason: str | None = None
        if kind == 7:
            text, reason = f"{i},{cid},too,few", "expected 13 fields"
        elif kind == 13:
            text, reason = long_row(i, "  "), "customer id is empty"
        elif kind == 17:
            text, reason = long_row(i, cid, email=f"ann{i}@@example.com", about="spans\r\ntwo lines"), "invalid email"
        elif kind == 19:
            text, reason = long_row(i, cid, email="ann lee@example.com"), "invalid email"
        elif kind == 23:
            text, reason = long_row(i, cid, date="2023-02-30"), "invalid subscription date"
        elif kind == 29:
            text, reason = long_row(i, cid).replace("Paris", "Par\udcffis"), "not valid UTF-8"
        elif kind == 53:
            text, reason = long_row(i, cid).replace('"Acme, ""Best"" Inc"', '"Acme"x'), "malformed CSV"
        elif kind == 61:
            text, reason = long_row(i, "Z" * 300), "customer id longer than 64"  # the API's limit (customers/rules.py)
        else:
            if kind in (31, 131):
                records += [b"", b"   "]  # blank lines are not rows
                line += 2
            if i % 100 == 37:
                cid = f"C{i - 1:07d}"  # the row before: the same batch
            elif i % 100 == 41 and i > 5000:
                cid = f"C{i - 5000:07d}"  # a block long written
            elif i % 100 == 43:
                cid = f"C{i + 450:07d}"  # ~90 KB ahead: a neighbouring block, maybe written first
            elif i % 1000 == 501:
                cid = EXISTING["_id"]
            about = 'multi\nline, ""quoted""\r\nabout' if i % 100 == 47 else None
            text = long_row(i, f"  {cid} " if i % 100 == 3 else cid, about=about)
            valid_ids.append(cid)
        if reason is not None:
            rejected[line] = reason
        data = text.encode("utf-8", "surrogateescape")
        records.append(data)
        line += 1 + data.count(b"\n")
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(records))  # the last record has no newline
    inserted = len(set(valid_ids) - {EXISTING["_id"]})
    counters = {"rowsInserted": inserted, "rowsDuplicate": len(valid_ids) - inserted, "rowsInvalid": len(rejected)}
    counters["rowsProcessed"] = sum(counters.values())
    return Hostile(path, counters, rejected)


FORMAT_COLUMNS = ["Customer Id", "First Name", "Last Name", "Company", "City", "Email", "About Customer"]
ENDINGS = {"LF": "\n", "CRLF": "\r\n", "CR": "\r"}


def intact_customers(emoji: bool) -> list[dict[str, str]]:
    """Rows whose text must come back intact: every delimiter and a quote inside fields, é ß ø, emoji, newlines."""
    smile = "\U0001f642" if emoji else ""
    return [
        {
            "customerId": f"C{i}",
            "firstName": f"Zoë{smile}",
            "lastName": "Straße",
            "company": 'Ørsted, "Wind"; A|S\tDK',
            "city": "København",
            "email": f"zoe{i}@example.dk",
            "about": f"line one é ß ø{smile}\nline two",
        }
        for i in range(1, 41)
    ]


def csv_text(rows: list[dict[str, str]], delimiter: str, ending: str, *, invalid: bool = True) -> str:
    """`rows` (of intact_customers) as CSV text under FORMAT_COLUMNS, every field quoted; one invalid row last."""

    def quoted(value: str) -> str:
        return '"' + value.replace('"', '""') + '"'

    lines = [delimiter.join(FORMAT_COLUMNS)]
    lines += [delimiter.join(quoted(row[key]) for key in rows[0]) for row in rows]
    if invalid:
        lines.append(delimiter.join(["X1", "Bad", "Email", "Co", "City", "not-an-email", "x"]))
    return ending.join(lines) + ending


def batch_of(text: str, job_id: str, mode: Mode) -> Batch:
    """The one batch a small CSV text (header first) parses into, as a worker would send it to the sink."""
    header, _, body = text.partition("\n")
    spec = ParseSpec(map_header(header.encode()), job_id, batch_size=1000, max_record_bytes=65536, mode=mode)
    [batch] = parse_block(body.encode(), 2, spec).batches
    return batch
