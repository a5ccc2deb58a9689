"""Re-sync (upsert) rate, side by side with another checkout in one run.

    .venv/bin/python scripts/bench_resync.py --rows 100000 --rounds 2 --baseline /path/to/old/checkout

A generated file is imported (insert mode) into a fresh database, 1 % of its customers are then marked
hand-edited, and a second version of the file is re-synced (`python -m app import V2 --mode upsert`, timed
from its import_state document): every 5th row changed (its city), 5 % new rows, the rest unchanged. Each
round runs every checkout once, in ABBA order against one embedded database, so a noisy shared machine slows
them alike; the counters of every run must be equal (the same classification), and the median rate is reported.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import EmbeddedMongo, free_port  # noqa: E402

COUNTERS = ("rowsProcessed", "rowsInserted", "rowsUpdated", "rowsUnchanged", "rowsProtected", "rowsInvalid")


def second_version(v1: Path, v2: Path, new_rows: int) -> None:
    """v1 with every 5th row's city changed and `new_rows` rows (copies of the first ones under new ids) added."""
    with v1.open(newline="", encoding="utf-8") as src, v2.open("w", newline="", encoding="utf-8") as out:
        reader, writer = csv.reader(src), csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        id_col, city_col = header.index("Customer Id"), header.index("City")
        first: list[list[str]] = []
        for n, row in enumerate(reader):
            if n % 5 == 0:
                row[city_col] = row[city_col] + " Nord"
            if len(first) < new_rows:
                first.append(list(row))
            writer.writerow(row)
        for n, row in enumerate(first):
            row[id_col] = f"NEW{n:08d}"
            writer.writerow(row)


def run(root: Path, uri: str, database: str, *args: str) -> dict:
    env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DB": database, "LOG_LEVEL": "WARNING", "PYTHONPATH": str(root)}
    subprocess.run(
        [sys.executable, "-m", "app", "import", *args], env=env, cwd=root, check=True, stdout=subprocess.DEVNULL
    )
    with MongoClient(uri) as client:
        job = client[database].import_state.find_one(sort=[("startedAt", -1)])
    assert job is not None and job["status"] == "COMPLETED", job
    return job


def resync(root: Path, uri: str, v1: Path, v2: Path) -> tuple[float, dict[str, int]]:
    """Seconds of the re-sync of v2 over v1 (with 1 % hand-edited) by `root`'s code, and its counters."""
    database = "bench_resync"
    with MongoClient(uri) as client:
        client.drop_database(database)
    run(root, uri, database, str(v1))
    with MongoClient(uri) as client:
        ids = [doc["_id"] for doc in client[database].customers.find({}, {"_id": 1}).sort("_id", 1)]
        client[database].customers.update_many({"_id": {"$in": ids[::100]}}, {"$set": {"handEdited": True}})
    job = run(root, uri, database, str(v2), "--mode", "upsert")
    with MongoClient(uri) as client:
        client.drop_database(database)
    return (job["finishedAt"] - job["startedAt"]).total_seconds(), {k: job[k] for k in COUNTERS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="another checkout, run in the same rounds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-resync-"))
    v1, v2 = work / "v1.csv", work / "v2.csv"
    generate = [sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(args.rows)]
    subprocess.run([*generate, "--out", str(v1)], check=True, stdout=subprocess.DEVNULL)
    second_version(v1, v2, args.rows // 20)
    roots = [("current", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    server = EmbeddedMongo(work / "db", free_port(), log_level="ERROR")
    uri = server.start()
    rates: dict[str, list[float]] = {name: [] for name, _ in roots}
    counts: dict[str, dict[str, int]] = {}
    try:
        for round_ in range(args.rounds):
            for name, root in roots if round_ % 2 == 0 else roots[::-1]:  # ABBA: a trend in load cancels out
                seconds, counters = resync(root, uri, v1, v2)
                rates[name].append(counters["rowsProcessed"] / seconds)
                counts[name] = counters
                print(f"{name:<9} {seconds:7.2f} s {counters['rowsProcessed'] / seconds:>9,.0f} rows/s {counters}")
    finally:
        server.stop()
    assert len({tuple(c.values()) for c in counts.values()}) == 1, f"the checkouts counted differently: {counts}"
    current = statistics.median(rates["current"])
    print(f"\n{args.rows:,} rows + {args.rows // 20:,} new; median of {args.rounds} rounds")
    for name, _ in roots:
        rate = statistics.median(rates[name])
        print(f"{name:<9} {rate:>9,.0f} rows/s  {rate / current:.3f}x current")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
