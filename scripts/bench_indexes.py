"""What each index choice costs at ingest: raw insert_many rates of the same documents, side by side.

    .venv/bin/python scripts/bench_indexes.py --rows 40000 [--uri mongodb://...]

Parses a generated file with the service's own parser (so the documents are exactly what an import
writes), then inserts them with two writers, batches of 1000 and insert_many(ordered=False) into a fresh
collection per variant, all against one server:
- no secondary index;
- the service's index set (INDEXES["customers"] of app/db.py: searchKeys_id, emailKey_id, countryKey_id);
- each of those three indexes alone;
- the set before issue 22: `searchKeys` holding every prefix of 1 to 3 characters of each term (what
  `searchKeys` held), with emailKey_id and countryKey_id; and that prefix index alone;
- searchKeys_id with the keys recomputed here: the first 4 or 6 characters of each term instead of the
  service's PREFIX_CHARS, and whole terms only: what the prefix length costs;
- pyimport's shape: ObjectId _id, customerId a plain field, no keys, three single-field indexes (as many
  secondary indexes as ours);
- the service's documents into a collection without secondary indexes, then the service's three built over
  them (mongorestore's order; the rate counts the build).
Prints rows/s, the secondary index entries per document (average) and the ratio to "no secondary index".
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bson
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, IndexModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.customers.document import KEYS, PREFIX_CHARS, search_terms  # noqa: E402
from app.db import CUSTOMERS, INDEXES  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.model import ParseSpec  # noqa: E402
from app.imports.reading.header import map_header  # noqa: E402
from app.imports.reading.parse import parse_block  # noqa: E402

SERVICE = INDEXES[CUSTOMERS]
BY_NAME = {index.document["name"]: index for index in SERVICE}
PYIMPORT_INDEXES = [IndexModel([(field, 1)]) for field in ("customerId", "email", "country")]


def search_keys(doc: dict[str, Any], prefix_chars: int, *, every: bool = False) -> list[str]:
    """Each term's first `prefix_chars` characters (0: the whole term); `every`: all its prefixes up to that."""
    keys: dict[str, None] = {}
    for term in search_terms(doc):
        shortest = 1 if every else prefix_chars
        for length in range(shortest, prefix_chars + 1) if prefix_chars else [len(term)]:
            keys[term[:length]] = None
    return list(keys)


def index_entries(doc: dict[str, Any], indexes: list[IndexModel]) -> int:
    """Secondary index entries the document makes: one per element of an array key, else one if present."""
    count = 0
    for index in indexes:
        value = doc.get(next(iter(index.document["key"])))
        count += len(value) if isinstance(value, list) else int(value is not None)
    return count


def as_parsed(doc: dict[str, Any]) -> dict[str, Any]:
    return doc


def prefixes(prefix_chars: int, *, every: bool = False) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def shape(doc: dict[str, Any]) -> dict[str, Any]:
        keys = search_keys(doc, prefix_chars, every=every)
        return {**doc, "searchKeys": keys} if keys else doc

    return shape


def pyimport_shape(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {"_id": ObjectId(), "customerId": doc["_id"], **{k: v for k, v in doc.items() if k != "_id"}}
    for key in KEYS:
        doc.pop(key, None)
    return doc


SEARCH = [BY_NAME["searchKeys_id"]]
DEFERRED = "the service's 3, built after the inserts"  # mongorestore's order: the rate includes the build
VARIANTS = {
    "no secondary index": (as_parsed, []),
    "the service's 3 indexes": (as_parsed, SERVICE),
    f"searchKeys_id alone (first {PREFIX_CHARS}, the service)": (as_parsed, SEARCH),
    "emailKey_id alone": (as_parsed, [BY_NAME["emailKey_id"]]),
    "countryKey_id alone": (as_parsed, [BY_NAME["countryKey_id"]]),
    "before issue 22: prefixes 1..3 + email + country": (prefixes(3, every=True), SERVICE),
    "before issue 22: prefixes 1..3 alone": (prefixes(3, every=True), SEARCH),
    **{f"searchKeys_id, first {n}": (prefixes(n), SEARCH) for n in (4, 6) if n != PREFIX_CHARS},
    "searchKeys_id, whole terms only": (prefixes(0), SEARCH),
    "pyimport shape + 3 single-field": (pyimport_shape, PYIMPORT_INDEXES),
    DEFERRED: (as_parsed, SERVICE),
}


async def insert_rate(uri: str, name: str, docs: list[RawBSONDocument], indexes: list[IndexModel]) -> float:
    async with AsyncMongoClient(uri) as client:
        collection = client.bench_indexes["v" + "".join(ch if ch.isalnum() else "_" for ch in name)]
        await collection.drop()
        if indexes and name != DEFERRED:
            await collection.create_indexes(indexes)
        batches = [docs[i : i + 1000] for i in range(0, len(docs), 1000)]
        start = time.perf_counter()

        async def writer() -> None:
            while batches:
                await collection.insert_many(batches.pop(), ordered=False)

        await asyncio.gather(writer(), writer())
        if name == DEFERRED:
            await collection.create_indexes(indexes)
        seconds = time.perf_counter() - start
        await collection.drop()
    return len(docs) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--uri", help="MongoDB URI (default: start an embedded SecantusDB server)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-indexes-"))
    file = work / "customers.csv"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(args.rows), "--out", str(file)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    data = file.read_bytes()
    start = data.index(b"\n") + 1
    parsed = parse_block(data[start:], 2, ParseSpec(map_header(data[:start]), "0" * 32, 1000, 1 << 20))
    docs = [bson.decode(doc) for batch in parsed.batches for doc in batch.docs]
    file.unlink()
    # The local search_keys mirrors the service's: at PREFIX_CHARS it gives exactly what the parser stored.
    assert all(search_keys(doc, PREFIX_CHARS) == doc.get("searchKeys", []) for doc in docs)
    embedded = None if args.uri else EmbeddedMongo(work / "db", free_port(), log_level="ERROR")
    uri = args.uri or embedded.start()  # type: ignore[union-attr]
    try:
        print(
            f"{len(docs):,} documents parsed by the service's parser; two writers, insert_many(ordered=False) "
            f"of 1000; server: {embedded.name if embedded else uri}\n"
        )
        print(f"{'variant':<46}{'rows/s':>9}{'entries/doc':>13}{'vs none':>9}")
        baseline = None
        for name, (shape, indexes) in VARIANTS.items():
            shaped = [shape(dict(doc)) for doc in docs]
            entries = sum(index_entries(doc, indexes) for doc in shaped) / len(shaped)
            raw = [RawBSONDocument(bson.encode(doc)) for doc in shaped]
            rate = asyncio.run(insert_rate(uri, name, raw, indexes))
            baseline = baseline or rate
            print(f"{name:<46}{rate:>9,.0f}{entries:>13.1f}{rate / baseline:>8.2f}x", flush=True)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
