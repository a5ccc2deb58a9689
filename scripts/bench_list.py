"""Latency of each GET /customers variant through CustomerRepository.list on a throw-away SecantusDB.

    .venv/bin/python scripts/bench_list.py [--rows 100000] [--repeat 50] [--db DIR] [--before]

Generates `--rows` customers with scripts/generate_customers.py, parses them with the service's parser (so the
documents, search keys included, are exactly what an import writes), inserts them into a fresh embedded
SecantusDB with the service's indexes, then times each list variant with the repository the app wires
(`listing_for`: windowed on SecantusDB). Each variant runs once untimed ("cold": the first request of a
process, which reads the id sample), then `--repeat` times with fresh random arguments. `--db DIR` keeps the
database in DIR and reuses it on the next run if it holds the same number of customers. `--before` also
times the previous implementation's query shape (one `find().sort().skip().limit()` plus a count, what
DirectListing still does on MongoDB) a few times; it reads the whole collection per request on SecantusDB.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.customers.listing import DirectListing, Listing, Page, listing_for  # noqa: E402
from app.customers.repository import CustomerRepository, encode_cursor  # noqa: E402
from app.db import CUSTOMERS, ensure_indexes  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.model import ParseSpec  # noqa: E402
from app.imports.parse import map_header, parse_block  # noqa: E402

DB = "bench_list"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def documents(rows: int, work: Path) -> list[RawBSONDocument]:
    file = work / "customers.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(rows),
                    "--out", str(file)], check=True, stdout=subprocess.DEVNULL)
    data = file.read_bytes()
    file.unlink()
    start = data.index(b"\n") + 1
    parsed = parse_block(data[start:], 2, ParseSpec(map_header(data[:start]), "0" * 32, 1000, 1 << 20))
    return [RawBSONDocument(doc) for batch in parsed.batches for doc in batch.docs]


async def load(uri: str, docs: list[RawBSONDocument]) -> None:
    async with AsyncMongoClient(uri) as client:
        await ensure_indexes(client[DB])
        collection = client[DB][CUSTOMERS]
        batches = [docs[i:i + 1000] for i in range(0, len(docs), 1000)]
        began = time.perf_counter()

        async def writer() -> None:
            while batches:
                await collection.insert_many(batches.pop(), ordered=False)

        await asyncio.gather(writer(), writer())
        print(f"loaded {len(docs):,} customers in {time.perf_counter() - began:.0f} s", flush=True)


async def bench(uri: str, repeat: int, before: bool) -> None:
    async with AsyncMongoClient(uri, tz_aware=True) as client:
        await ensure_indexes(client[DB])
        collection = client[DB][CUSTOMERS]
        listing = await listing_for(collection)
        # Arguments drawn from the data itself (read once, not timed).
        rows = [row async for row in collection.find({}, {"_id": 1, "email": 1, "country": 1, "lastName": 1})]
        print(f"{len(rows):,} customers, listing: {type(listing).__name__}", flush=True)
        rnd = random.Random(7)
        countries = sorted({row["country"] for row in rows if row.get("country")})
        last_names = sorted({row["lastName"] for row in rows if row.get("lastName")})

        def pick() -> dict:
            return rnd.choice(rows)

        variants: dict[str, Callable[[], dict]] = {
            "first page": lambda: {},
            "after= (random cursor)": lambda: {"after": encode_cursor(pick()["_id"])},
            "page=2": lambda: {"page": 2},
            "page=20": lambda: {"page": 20},
            "email= (existing)": lambda: {"email": next(r["email"] for r in iter(pick, None) if r.get("email"))},
            "country=": lambda: {"country": rnd.choice(countries)},
            "country= after=": lambda: {"country": rnd.choice(countries),
                                        "after": encode_cursor(pick()["_id"])},
            "q= 1 letter": lambda: {"q": rnd.choice("abcdefghijklmnoprstw")},
            "q= 3 letters of a last name": lambda: {"q": rnd.choice(last_names)[:3]},
            "q= a last name": lambda: {"q": rnd.choice(last_names)},
            "q= + country=": lambda: {"q": rnd.choice(last_names)[:2], "country": rnd.choice(countries)},
        }

        costs: list[tuple[int, int]] = []  # (queries, documents read) of each page, from the listing

        class Counting:
            def __init__(self, inner: Listing):
                self.inner = inner

            async def page(self, *args: Any, **kwargs: Any) -> Page:
                result = await self.inner.page(*args, **kwargs)
                costs.append((result.queries, result.read))
                return result

        repository = CustomerRepository(collection, Counting(listing))

        async def timed(repo: CustomerRepository, arguments: dict) -> float:
            began = time.perf_counter()
            await repo.list(limit=50, **{"page": None, "after": None, **arguments})
            return (time.perf_counter() - began) * 1000

        print(f"\n{'variant':<30}{'cold':>8}{'p50':>8}{'p99':>8}{'max':>8}  (ms){'queries':>9}{'docs read':>11}"
              f"  (mean per request; {repeat} requests each)")
        for name, arguments in variants.items():
            cold = await timed(repository, arguments())
            costs.clear()
            times = [await timed(repository, arguments()) for _ in range(repeat)]
            queries = statistics.mean(q for q, _ in costs)
            read = statistics.mean(r for _, r in costs)
            print(f"{name:<30}{cold:>8.1f}{statistics.median(times):>8.1f}{percentile(times, 0.99):>8.1f}"
                  f"{max(times):>8.1f}      {queries:>9.1f}{read:>11.0f}", flush=True)
        if before:
            old = CustomerRepository(collection, DirectListing())
            print("\nprevious query shape (DirectListing) on SecantusDB, 3 requests each")
            for name, a in [("first page", {}), ("country=", {"country": countries[0]}), ("q=ann", {"q": "ann"})]:
                times = [await timed(old, a) for _ in range(3)]
                print(f"{name:<30}{'':>9}{statistics.median(times):>9.1f}{'':>9}{max(times):>9.1f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--db", type=Path, help="keep the database here and reuse it when it holds --rows rows")
    parser.add_argument("--before", action="store_true", help="also time the previous query shape (slow)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-list-"))
    storage = args.db or work / "db"
    stamp = storage.parent / f"{storage.name}.rows"
    reuse = args.db is not None and stamp.exists() and stamp.read_text() == str(args.rows)
    if not reuse:
        shutil.rmtree(storage, ignore_errors=True)
        stamp.unlink(missing_ok=True)
    server = EmbeddedMongo(storage, free_port(), log_level="ERROR")
    uri = server.start()
    try:
        if not reuse:
            asyncio.run(load(uri, documents(args.rows, work)))
            if args.db is not None:
                stamp.write_text(str(args.rows))
        asyncio.run(bench(uri, args.repeat, args.before))
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
