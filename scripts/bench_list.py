"""List-query benchmark: `GET /customers` filters as the MongoDB query shape and as SecantusDB's one-clause shape,
side by side against one server.

    .venv/bin/python scripts/bench_list.py --rows 100000           # embedded SecantusDB, generated customers
    .venv/bin/python scripts/bench_list.py --uri mongodb://localhost:27017 --rows 100000

Fills a `bench_list` database with customers shaped as the import stores them (about 240 countries, names
drawn from small lists so that prefixes match many customers), then calls CustomerRepository.list with each
filter, `--repeat` times in the one-clause shape and three times in a shape that scans, and prints p50 / p99 /
max milliseconds and the total each returned.
The unfiltered pages are read through id ranges on SecantusDB (after building the census and the sample of
ids, as the app's start does on an existing database); "mongodb" is the one-query shape, which scans there.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import string
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.customers.document import search_keys  # noqa: E402
from app.customers.repository import CustomerRepository, encode_cursor, prepare_customers  # noqa: E402
from app.db import Planner, ensure_indexes, make_client  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402

FIRST = ["Ann", "Bob", "Carla", "Dmitri", "Elena", "Farah", "Goran", "Hana", "Ivan", "Jules", "Kemal", "Lena",
         "Mateo", "Nora", "Omar", "Pia", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor", "Wen", "Yusuf", "Zoe"]
LAST = ["Smith", "Garcia", "Müller", "Rossi", "Nowak", "Kim", "Silva", "Dubois", "Jensen", "Novak", "Ito",
        "Okafor", "Larsen", "Costa", "Weber", "Horvat", "Ali", "Berg", "Sato", "Moreau"]
COUNTRIES = [f"Country {index:03d}" for index in range(240)]


def customer(rng: random.Random, index: int, now: dt.datetime) -> dict[str, object]:
    customer_id = "".join(rng.choices(string.hexdigits, k=15))
    first, last = rng.choice(FIRST), rng.choice(LAST)
    doc: dict[str, object] = {
        "_id": customer_id, "firstName": first, "lastName": last, "company": f"{rng.choice(LAST)} {index % 997} Ltd",
        "email": f"{first.lower()}.{last.lower()}{index}@example.com", "country": rng.choice(COUNTRIES),
        "city": "Springfield", "about": "x" * 600, "createdAt": now, "updatedAt": now,
    }
    doc["searchKeys"] = search_keys(doc)
    return doc


async def fill(uri: str, rows: int) -> list[dict[str, object]]:
    client = make_client(uri, timeout_ms=30_000)
    db = client.bench_list
    await client.drop_database("bench_list")
    await ensure_indexes(db)
    rng = random.Random(5)
    now = dt.datetime.now(dt.UTC)
    samples = []
    for start in range(0, rows, 1000):
        docs = [customer(rng, index, now) for index in range(start, min(rows, start + 1000))]
        samples.append(docs[0])
        await db.customers.insert_many(docs, ordered=False)
    started = time.perf_counter()
    await prepare_customers(db, Planner.SECANTUS)  # what the app's start does: the census and the sample of ids
    print(f"census and sample of ids built in {time.perf_counter() - started:.1f} s")
    await client.close()
    return samples


async def measure(uri: str, samples: list[dict[str, object]], repeat: int) -> None:
    client = make_client(uri, timeout_ms=30_000)
    collection = client.bench_list.customers
    meta = client.bench_list.service_meta
    sample = samples[len(samples) // 2]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("first page, no filter", {}),
        ("after a cursor", {"after": encode_cursor(str(sample["_id"]))}),
        ("page=20", {"page": 20}),
        ("email", {"email": str(sample["email"])}),
        ("country", {"country": str(sample["country"])}),
        ("q, 3 letters", {"q": str(sample["lastName"])[:3]}),
        ("q, full email", {"q": str(sample["email"])}),
        ("q + country", {"q": str(sample["lastName"])[:3], "country": str(sample["country"])}),
    ]
    print(f"{'filter':<24}{'planner':<10}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'total':>9}")
    for name, filters in cases:
        for planner in (Planner.MONGODB, Planner.SECANTUS):
            repository = CustomerRepository(collection, planner, meta)
            times = []
            total = 0
            # MongoDB's shapes scan the collection on SecantusDB (seconds each): three runs of them.
            runs = repeat if planner is Planner.SECANTUS else min(3, repeat)
            for _ in range(runs):
                start = time.perf_counter()
                page = await repository.list(limit=50, **{"page": None, "after": None, **filters})
                times.append((time.perf_counter() - start) * 1000)
                total = page.total
            times.sort()
            p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
            print(f"{name:<24}{planner.value:<10}{statistics.median(times):>9.1f}{p99:>9.1f}{times[-1]:>9.1f}"
                  f"{total:>9,}")
    await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--uri", help="MongoDB URI (default: start an embedded SecantusDB server)")
    args = parser.parse_args()
    embedded = None
    uri = args.uri
    if uri is None:
        embedded = EmbeddedMongo(Path(tempfile.mkdtemp(prefix="bench-list-")) / "db", free_port(), log_level="ERROR")
        uri = embedded.start()
    try:
        started = time.perf_counter()
        samples = asyncio.run(fill(uri, args.rows))
        print(f"{args.rows:,} customers inserted in {time.perf_counter() - started:.0f} s\n")
        asyncio.run(measure(uri, samples, args.repeat))
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
