"""What each index choice costs at ingest: raw insert_many rates of the same documents, side by side.

    .venv/bin/python scripts/bench_indexes.py --rows 40000 [--uri mongodb://...]

Parses a generated file with the service's own parser (so the documents are exactly what an import
writes), then inserts them with two writers and insert_many(ordered=False) into fresh collections:
no secondary index; the service's one multikey `searchKeys` index (about 6 keys per document); the same
without the tagged id entry (what it held before the SecantusDB list read id ranges); one key per
document; `searchKeys` plus a (country, _id) index; and pyimport's shape
(ObjectId _id, one single-field index).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bson
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, IndexModel

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.customers.document import ID_TAG  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.model import ParseSpec  # noqa: E402
from app.imports.parse import map_header, parse_block  # noqa: E402

SEARCH = IndexModel([("searchKeys", 1)])
COUNTRY = IndexModel([("country", 1), ("_id", 1)])


def pyimport_shape(doc: dict) -> dict:
    doc = {"_id": ObjectId(), "customerId": doc.pop("_id"), **doc}
    doc.pop("searchKeys", None)
    return doc


def one_key(doc: dict) -> dict:
    """The same document with a single search key (its email): what each extra key of a multikey index costs."""
    doc = dict(doc)
    doc["searchKeys"] = [key for key in doc.get("searchKeys", []) if "@" in key][:1]
    return doc


def no_id_entry(doc: dict) -> dict:
    """The document as the service wrote it before the id entry (the SecantusDB list's id ranges)."""
    doc = dict(doc)
    doc["searchKeys"] = [key for key in doc.get("searchKeys", []) if not key.startswith(ID_TAG)]
    return doc


VARIANTS = {
    "no secondary index": (lambda d: d, []),
    "searchKeys (the service)": (lambda d: d, [SEARCH]),
    "searchKeys without id entry": (no_id_entry, [SEARCH]),
    "searchKeys, 1 key per doc": (one_key, [SEARCH]),
    "searchKeys + country_id": (lambda d: d, [SEARCH, COUNTRY]),
    "pyimport shape + 1 index": (pyimport_shape, [IndexModel([("email", 1)])]),
}


async def insert_rate(uri: str, name: str, docs: list[RawBSONDocument], indexes: list[IndexModel]) -> float:
    async with AsyncMongoClient(uri) as client:
        collection = client.bench_indexes[name.replace(" ", "_")]
        await collection.drop()
        if indexes:
            await collection.create_indexes(indexes)
        batches = [docs[i:i + 1000] for i in range(0, len(docs), 1000)]
        start = time.perf_counter()

        async def writer() -> None:
            while batches:
                await collection.insert_many(batches.pop(), ordered=False)

        await asyncio.gather(writer(), writer())
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
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(args.rows),
                    "--out", str(file)], check=True, stdout=subprocess.DEVNULL)
    data = file.read_bytes()
    start = data.index(b"\n") + 1
    parsed = parse_block(data[start:], 2, ParseSpec(map_header(data[:start]), "0" * 32, 1000, 1 << 20))
    docs = [bson.decode(doc) for batch in parsed.batches for doc in batch.docs]
    embedded = None if args.uri else EmbeddedMongo(work / "db", free_port(), log_level="ERROR")
    uri = args.uri or embedded.start()  # type: ignore[union-attr]
    try:
        print(f"{len(docs):,} documents, two writers, batches of 1000")
        for name, (shape, indexes) in VARIANTS.items():
            raw = [RawBSONDocument(bson.encode(shape(dict(doc)))) for doc in docs]
            rate = asyncio.run(insert_rate(uri, name, raw, indexes))
            print(f"  {name:<30}{rate:>9,.0f} rows/s")
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
