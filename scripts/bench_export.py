"""Export benchmark: GET /customers/export as CSV and NDJSON against its ceiling (a plain PyMongo cursor over the
same documents, same projection and batch size, writing nothing), and the app's RSS as the customers grow.

    flock /tmp/bench.lock .venv/bin/python scripts/bench_export.py --sizes 100000 1000000 --data-dir .bench/export

Seeds a `bench_export` database with customers as an import stores them (scripts/bench_list.py's `parsed_chunk`:
the generator's rows parsed by the service's parser, inserted by two writers into the collection with the
service's indexes), growing it to each size in turn (with --data-dir a later run reuses what is there). At each
size it starts the app (`python -m app serve`, a process of its own, EXPORT_BATCH_SIZE as given) and runs, in
ABBA order, ceiling, csv, ndjson, ndjson, csv, ceiling: each reads every customer; the HTTP client reads the
body in 1 MiB pieces and throws them away (Accept-Encoding: identity). Prints rows/s and MB/s per run, the
ratios to the ceiling, and the app's RSS: sampled every 50 ms during each export (peak, and the mean of the
first and last quarter of the samples) and its VmHWM; and the embedded server's peak RSS, which stops the run
past --max-server-gib (secantusd-rs holds a whole sorted result in memory: docs/secantus-rs-differences.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from bson.raw_bson import RawBSONDocument

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_list import CHUNK, insert, parsed_chunk  # noqa: E402

from app.customers.export import DEFAULT_FIELDS  # noqa: E402
from app.customers.repository import stored_field  # noqa: E402
from app.db import CUSTOMERS, ensure_indexes, make_client  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402

DB = "bench_export"
MIB = 1 << 20
ORDER = ("ceiling", "csv", "ndjson", "ndjson", "csv", "ceiling")
GIB = 1 << 30


async def grow(uri: str, rows: int) -> None:
    """Insert the generator's rows after those already stored, up to `rows` customers."""
    client = make_client(uri, timeout_ms=30_000)
    collection = client[DB][CUSTOMERS]
    await ensure_indexes(client[DB])  # before the inserts: every insert maintains them, as during an import
    have = await collection.count_documents({})
    if have > rows:
        raise SystemExit(f"the database holds {have:,} customers, more than {rows:,}: use another --data-dir")
    started = time.perf_counter()
    for start in range(have + 1, rows + 1, CHUNK):
        docs = await asyncio.to_thread(parsed_chunk, start, min(CHUNK, rows + 1 - start))
        await insert(collection, [RawBSONDocument(doc) for doc in docs])
        done = min(start + CHUNK - 1, rows)
        if done // 100_000 != (start - 1) // 100_000:
            print(f"  {done:,} stored, {(done - have) / (time.perf_counter() - started):,.0f} rows/s", flush=True)
    print(f"{rows:,} customers ({rows - have:,} inserted in {time.perf_counter() - started:,.0f} s)", flush=True)
    await client.close()


async def ceiling(uri: str, batch: int) -> tuple[int, int]:
    """Every customer through a plain cursor: (documents, 0 bytes written)."""
    client = make_client(uri, timeout_ms=30_000)
    projection = {stored_field(field): 1 for field in DEFAULT_FIELDS}
    cursor = client[DB][CUSTOMERS].find({}, projection).sort("_id", 1).batch_size(batch)
    count = 0
    while docs := await cursor.to_list(batch):
        count += len(docs)
    await client.close()
    return count, 0


def download(url: str, fmt: str) -> tuple[int, int]:
    """Every customer through GET /customers/export: (records, bytes)."""
    size = records = 0
    params = {"format": fmt}
    headers = {"accept-encoding": "identity"}
    # no read timeout: on secantusd-rs the first batch of a large export comes after the server read the whole range
    with httpx.stream("GET", f"{url}/customers/export", params=params, headers=headers, timeout=None) as r:
        r.raise_for_status()
        for piece in r.iter_raw(MIB):
            size += len(piece)
            records += piece.count(b"\n")  # CSV: rows + header (+ newlines inside values)
    return records, size


class Sampler(threading.Thread):
    """VmRSS of the app (and of the database server, when it is ours) every 50 ms while running; a database server
    past `limit` bytes stops the run (this machine is shared: a server stays under ~6 GiB)."""

    def __init__(self, pid: int, server: int | None, limit: int):
        super().__init__(daemon=True)
        self.pid, self.server, self.limit = pid, server, limit
        self.samples: list[int] = []
        self.server_peak = 0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.samples.append(status(self.pid, "VmRSS"))
            if self.server is not None:
                self.server_peak = max(self.server_peak, status(self.server, "VmRSS"))
                if self.server_peak > self.limit:
                    os.kill(self.server, 9)  # our own server: the run fails rather than the machine
                    print(f"database server RSS {self.server_peak / GIB:.1f} GiB: over the limit, stopped", flush=True)
                    return
            time.sleep(0.05)


def status(pid: int, name: str) -> int:
    """A /proc/PID/status value in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(name)


def start_app(uri: str, folder: Path, batch: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "MONGODB_URI": uri,
        "MONGODB_DB": DB,
        "DATA_DIR": str(folder / "data"),
        "IMPORT_DIR": str(folder / "imports"),
        "LOG_LEVEL": "WARNING",
        "EXPORT_BATCH_SIZE": str(batch),
    }
    process = subprocess.Popen([sys.executable, "-m", "app", "serve", "--port", str(port)], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the app did not start")


def measure(uri: str, folder: Path, size: int, batch: int, server: int | None, limit: int) -> dict[str, Any]:
    app, url = start_app(uri, folder, batch)
    runs: dict[str, list[float]] = {kind: [] for kind in ORDER}
    result: dict[str, Any] = {"size": size, "mb": {}, "rss": [], "server": 0}
    try:
        download(url, "csv")  # warm-up, not counted: the first read after seeding also loads the server's caches
        for kind in ORDER:
            sampler = Sampler(app.pid, server, limit)
            sampler.start()
            started = time.perf_counter()
            records, size_bytes = asyncio.run(ceiling(uri, batch)) if kind == "ceiling" else download(url, kind)
            seconds = time.perf_counter() - started
            sampler.running = False
            sampler.join()
            runs[kind].append(seconds)
            result["server"] = max(result["server"], sampler.server_peak)
            result["mb"][kind] = size_bytes / 1e6
            if kind != "ceiling":
                result["rss"].append(sampler.samples)
            print(f"  {kind:8} {records:>10,} records {size_bytes / 1e6:>9,.1f} MB in {seconds:7.2f} s", flush=True)
        result["hwm"] = status(app.pid, "VmHWM")
    finally:
        app.terminate()
        app.wait(30)
    result["seconds"] = {kind: statistics.mean(times) for kind, times in runs.items()}
    return result


def report(result: dict[str, Any]) -> None:
    size, seconds, mb = result["size"], result["seconds"], result["mb"]
    print(f"\n{size:,} customers, batch size as configured (means of 2 runs each):")
    print("| read | rows/s | MB/s | vs ceiling |\n|---|---:|---:|---:|")
    for kind in ("ceiling", "csv", "ndjson"):
        rate = size / seconds[kind]
        ratio = seconds["ceiling"] / seconds[kind]
        megabytes = f"{mb[kind] / seconds[kind]:,.1f}" if mb[kind] else ""
        print(f"| {kind} | {rate:,.0f} | {megabytes} | {ratio:.2f}x |")
    samples = [sample for run in result["rss"] for sample in run]
    first = [s for run in result["rss"] for s in run[: max(1, len(run) // 4)]]
    last = [s for run in result["rss"] for s in run[-max(1, len(run) // 4) :]]
    print(
        f"app RSS during exports: peak {max(samples) / MIB:,.0f} MiB; first quarter {statistics.mean(first) / MIB:,.0f}"
        f" MiB, last quarter {statistics.mean(last) / MIB:,.0f} MiB; VmHWM {result['hwm'] / MIB:,.0f} MiB; "
        f"database server peak RSS {result['server'] / MIB:,.0f} MiB\n",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--uri", help="a MongoDB to use instead of the embedded server")
    parser.add_argument("--data-dir", type=Path, help="keep the embedded server's data here (reused by a later run)")
    parser.add_argument("--max-server-gib", type=float, default=6.0, help="stop when the embedded server passes this")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-export-"))
    server = None
    uri = args.uri
    if uri is None:
        data = args.data_dir or folder / "db"
        server = EmbeddedMongo(data.resolve(), free_port())
        uri = server.start()
    try:
        for size in sorted(args.sizes):
            asyncio.run(grow(uri, size))
            pid = server.pid if server is not None else None
            report(measure(uri, folder, size, args.batch_size, pid, int(args.max_server_gib * GIB)))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
