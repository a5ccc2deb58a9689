"""List and update benchmark: every `GET /customers` shape and PATCH through CustomerRepository, with its plans.

    .venv/bin/python scripts/bench_list.py --rows 1000000 --repeat 50 --data-dir .bench/list-1m
    .venv/bin/python scripts/bench_list.py --uri mongodb://localhost:27017 --rows 100000

Seeds a `bench_list` database with --rows customers exactly as an import stores them: rows from
scripts/generate_customers.py (15-character mixed-case hex ids, its names, companies, countries and "about"
text) parsed by the service's parser, inserted as raw BSON by two writers into the collection with the
service's indexes (app/db.py), as an import writes them. With --data-dir the embedded server keeps its data
there and a later run whose collection already holds --rows customers, with the indexes and the keys this
version derives, skips the seeding (the default is a temporary folder, removed at the end).

Then times, --repeat times each, CustomerRepository.list (limit 50; page and total as the API returns them):
the first page, a page after a cursor from the middle, page=20, email= (an existing email in upper case),
country=, q= 3 letters of a last name, q= a full email, q= 3 letters + country, q= 1 and 2 letters (common,
less common, none, beside a country; --repeat/10 runs, at least 3); and CustomerRepository.update
(a PATCH) of first_name and of country; and the unfiltered total's cost: the first page with the total counted
each time, with it reused (LIST_TOTAL_CACHE_SECONDS), and the count alone, in turn. Prints p50/p99/max
milliseconds, the total and whether it was capped, then the winning plan of each command the repository sent
(recorded with a command listener and explained), e.g. `LIMIT>FETCH>IXSCAN(searchKeys_id)`, with the keys and
documents it examined.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import AsyncMongoClient, monitoring
from pymongo.asynchronous.collection import AsyncCollection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from generate_customers import HEADER, RowBuilder  # noqa: E402

from app.customers.document import KEYS, index_keys  # noqa: E402
from app.customers.repository import CustomerRepository, encode_cursor  # noqa: E402
from app.customers.schemas import CustomerUpdate  # noqa: E402
from app.db import CUSTOMERS, INDEXES, ensure_indexes, make_client  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.model import ParseSpec  # noqa: E402
from app.imports.reading.header import map_header  # noqa: E402
from app.imports.reading.parse import parse_block  # noqa: E402

DB = "bench_list"
CHUNK = 8192  # rows generated and parsed at a time (in a worker process, while the previous chunk is inserted)
SEED = 42
SERVICE_INDEXES = [index.document["name"] for index in INDEXES[CUSTOMERS]]
_builder: RowBuilder | None = None


def parsed_chunk(start: int, count: int) -> list[bytes]:
    """Rows start..start+count-1 of the generator as the service's parser encodes them for an insert."""
    global _builder
    if _builder is None:
        _builder = RowBuilder(SEED, 0.0, 0.0)
    _builder.rng.seed(start)  # the same rows for the same start, whichever order chunks are made in
    rows, _ = _builder.chunk(start, count)
    spec = ParseSpec(map_header(HEADER.encode()), "0" * 32, 1000, 1 << 20)
    parsed = parse_block("".join(rows).encode("utf-8", "surrogateescape"), start + 1, spec)
    return [doc for batch in parsed.batches for doc in batch.docs]


async def insert(collection: AsyncCollection, docs: list[RawBSONDocument]) -> None:
    """Two writers, insert_many(ordered=False) of 1000, as the import's sink writes."""
    batches = [docs[i : i + 1000] for i in range(0, len(docs), 1000)]

    async def writer() -> None:
        while batches:
            await collection.insert_many(batches.pop(), ordered=False)

    await asyncio.gather(writer(), writer())


async def seed(uri: str, rows: int) -> None:
    client = make_client(uri, timeout_ms=30_000)
    db = client[DB]
    indexes = await db[CUSTOMERS].index_information()
    stored = await db[CUSTOMERS].find_one() or {}
    keys = index_keys(stored)  # a customer stored by an older version has other keys: seed again
    if (
        await db[CUSTOMERS].estimated_document_count() == rows
        and all(name in indexes for name in SERVICE_INDEXES)
        and all(stored.get(name) == keys.get(name) for name in KEYS)
    ):
        print(f"{rows:,} customers already seeded: reusing them")
        await client.close()
        return
    await client.drop_database(DB)
    # The indexes first, maintained by every insert as during an import: building them afterwards over a large
    # collection is one transaction on secantusd-rs, which at 1M customers retries on write conflicts forever.
    await ensure_indexes(db)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        starts = iter(range(1, rows + 1, CHUNK))

        def submit() -> None:
            if (start := next(starts, None)) is not None:
                pending.append(loop.run_in_executor(pool, parsed_chunk, start, min(CHUNK, rows + 1 - start)))

        pending: deque[asyncio.Future[list[bytes]]] = deque()
        done = 0
        submit()
        submit()
        while pending:
            docs = [RawBSONDocument(doc) for doc in await pending.popleft()]
            submit()
            await insert(db[CUSTOMERS], docs)
            done += len(docs)
            if done % 100_000 < CHUNK:
                print(f"  {done:,} inserted, {done / (time.perf_counter() - started):,.0f} rows/s", flush=True)
    print(f"{rows:,} customers inserted in {time.perf_counter() - started:.0f} s")
    await client.close()


class Recorder(monitoring.CommandListener):
    """Keeps the commands the repository sends, to explain them afterwards."""

    def __init__(self) -> None:
        self.commands: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "findAndModify"):
            self.commands.append({k: v for k, v in event.command.items() if not k.startswith("$") and k != "lsid"})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def stages(plan: dict[str, Any]) -> str:
    """A plan tree as `LIMIT>FETCH>IXSCAN(index)`; a stage's filter as [fields]."""
    name = plan["stage"] + (f"({plan['indexName']})" if "indexName" in plan else "")
    if "filter" in plan:
        name += f"[filter {','.join(plan['filter'])}]"
    if "inputStage" in plan:
        return f"{name}>{stages(plan['inputStage'])}"
    if "inputStages" in plan:
        return f"{name}({', '.join(stages(child) for child in plan['inputStages'])})"
    return name


def summary(explained: dict[str, Any]) -> str:
    """The winning plan of an explained find, findAndModify or aggregate, and what it examined."""
    if "queryPlanner" in explained:
        plan, stats = stages(explained["queryPlanner"]["winningPlan"]), explained.get("executionStats", {})
    else:  # an aggregate: the query's plan under $cursor, then the pipeline's other stages
        parts, stats = [], {}
        for stage in explained["stages"]:
            name = next(iter(stage))
            if name == "$cursor":
                parts.append(stages(stage[name]["queryPlanner"]["winningPlan"]))
                stats = stage[name].get("executionStats", {})
            else:
                parts.append(name)
        plan = " | ".join(parts)
    if "totalKeysExamined" in stats:
        plan += f"  (keys {stats['totalKeysExamined']:,}, docs {stats['totalDocsExamined']:,})"
    return plan


def cases(sample: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    letters = sample["lastName"][:3]
    return [
        ("first page", {}),
        ("after a middle cursor", {"after": encode_cursor(sample["_id"])}),
        ("page=20", {"page": 20}),
        (f"email={sample['email'].upper()}", {"email": sample["email"].upper()}),
        (f"country={sample['country']}", {"country": sample["country"]}),
        (f"q={letters}", {"q": letters}),
        (f"q={sample['email']}", {"q": sample["email"]}),
        (f"q={letters}&country={sample['country']}", {"q": letters, "country": sample["country"]}),
        *short_cases(sample),
    ]


def short_cases(sample: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """q of 1 and 2 letters (app/customers/repository._q_filter): common, less common, none, beside a country."""
    one, two = sample["lastName"][:1], sample["lastName"][:2]
    return [
        (f"q={one} (short)", {"q": one}),
        (f"q={two} (short)", {"q": two}),
        ("q=Ło (short, a less common start)", {"q": "Ło"}),
        ("q=xq (short, no match)", {"q": "xq"}),
        (f"q={two}&country={sample['country']} (short)", {"q": two, "country": sample["country"]}),
    ]


def updates(sample: dict[str, Any], neighbour: dict[str, Any]) -> list[tuple[str, str, list[CustomerUpdate]]]:
    """PATCHes that alternate between two values (an even --repeat leaves the data as it was)."""
    other = "Portugal" if neighbour["country"] != "Portugal" else "Spain"
    return [
        (
            "update first_name",
            sample["_id"],
            [CustomerUpdate(first_name=name) for name in ("Benchmark", sample["firstName"])],
        ),
        (
            "update country",
            neighbour["_id"],
            [CustomerUpdate(country=country) for country in (other, neighbour["country"])],
        ),
    ]


async def timed(call: Any, repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for run in range(repeat):
        start = time.perf_counter()
        result = await call(run)
        times.append((time.perf_counter() - start) * 1000)
    return sorted(times), result


def row(name: str, times: list[float], total: str) -> None:
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(f"{name:<52}{statistics.median(times):>8.1f}{p99:>8.1f}{times[-1]:>8.1f}  {total}", flush=True)


async def total_costs(collection: AsyncCollection, repeat: int) -> None:
    """The unfiltered total's cost (issue 19, the cheapest correct answer): the first page with its total counted
    for each page (LIST_TOTAL_CACHE_SECONDS=0), with it reused (the default), and the count alone; the three
    in turn each run, so that the machine's drift falls on all of them alike."""
    counted, reused = CustomerRepository(collection), CustomerRepository(collection, total_ttl=3600)
    await reused.list(limit=50, page=None, after=None)  # the total, counted once
    shapes = {
        "first page, total counted (cache 0)": lambda: counted.list(limit=50, page=None, after=None),
        "first page, total reused (cache on)": lambda: reused.list(limit=50, page=None, after=None),
        "estimated_document_count alone": collection.estimated_document_count,
    }
    times: dict[str, list[float]] = {name: [] for name in shapes}
    for _ in range(repeat):
        for name, call in shapes.items():
            start = time.perf_counter()
            await call()
            times[name].append((time.perf_counter() - start) * 1000)
    for name, measured in times.items():
        row(name, sorted(measured), "")


async def measure(uri: str, rows: int, repeat: int) -> None:
    client = make_client(uri, timeout_ms=30_000)
    repository = CustomerRepository(client[DB][CUSTOMERS])
    middle = await client[DB][CUSTOMERS].find().sort("_id", 1).skip(rows // 2).limit(2).to_list()
    sample, neighbour = middle[0], middle[-1]
    print(f"\n{rows:,} customers; middle customer {sample['_id']}; {repeat} runs each, limit 50\n")
    print(f"{'shape':<52}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}  total")
    for name, filters in cases(sample):

        async def call(run: int, filters: dict[str, Any] = filters) -> Any:
            return await repository.list(limit=50, **{"page": None, "after": None, **filters})

        # a short q may read every customer: fewer runs
        times, page = await timed(call, max(3, repeat // 10) if "(short" in name else repeat)
        row(name, times, f"{page.total:,}{' (totalCapped)' if page.total_capped else ''}")
    await total_costs(client[DB][CUSTOMERS], repeat)
    for name, customer_id, changes in updates(sample, neighbour):

        async def call(run: int, customer_id: str = customer_id, changes: list[CustomerUpdate] = changes) -> Any:
            return await repository.update(customer_id, changes[run % 2])

        times, _ = await timed(call, repeat)
        row(name, times, "")
    await client.close()

    recorder = Recorder()
    plans_client: AsyncMongoClient = AsyncMongoClient(uri, event_listeners=[recorder], tz_aware=True)
    db = plans_client[DB]
    recorded = CustomerRepository(db[CUSTOMERS])
    print("\nwinning plans of the commands each shape sends (list: find, then the count's aggregate)")
    shapes: list[tuple[str, Any]] = [
        (name, lambda filters=filters: recorded.list(limit=50, **{"page": None, "after": None, **filters}))
        for name, filters in cases(sample)
    ]
    shapes += [
        (name, lambda customer_id=customer_id, changes=changes: recorded.update(customer_id, changes[1]))
        for name, customer_id, changes in updates(sample, neighbour)
    ]
    for name, run in shapes:
        recorder.commands.clear()
        await run()
        commands = list(recorder.commands)
        print(f"  {name}")
        for command in commands:
            explained = await db.command({"explain": command, "verbosity": "executionStats"})
            plan = summary(explained)
            print(f"    {next(iter(command)):<14}{plan}{'   <-- SORT stage' if 'SORT' in plan else ''}")
    await plans_client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="embedded server's data, kept and reused between runs (default: a temporary folder)",
    )
    parser.add_argument("--uri", help="MongoDB URI (default: start an embedded SecantusDB server)")
    args = parser.parse_args()
    embedded = None
    uri = args.uri
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="bench-list-"))
    if uri is None:
        embedded = EmbeddedMongo(data_dir.resolve() / "db", free_port(), log_level="ERROR")
        uri = embedded.start()
        print(f"embedded {embedded.name}, data in {embedded.storage}")
    try:
        asyncio.run(seed(uri, args.rows))
        asyncio.run(measure(uri, args.rows, args.repeat))
    finally:
        if embedded is not None:
            embedded.stop()
        if args.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
