"""What a preview (POST /import/preview's service call) costs on a generated file, as plain, gzip and UTF-16 text:
bytes read from the file system (/proc/self/io rchar), wall time, and how far its row estimate is from the real
count (issue 20).

    flock /tmp/bench.lock .venv/bin/python scripts/measure_preview.py --rows 400000 --rounds 5

Starts an embedded SecantusDB server (the preview's one `$in` read), generates the file with
scripts/generate_customers.py, writes its gzip and UTF-16 copies, then previews each `--rounds` times in turn
(ABAB...: one format after the other, round after round) and prints the median of each.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.db import make_client  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.preview import preview  # noqa: E402
from app.imports.reading.sample import read_bound  # noqa: E402
from app.imports.reading.workers import parser_pool  # noqa: E402
from app.imports.schemas import ImportRequest  # noqa: E402
from app.settings import Settings  # noqa: E402


def rchar() -> int:
    io = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(io["rchar"])


def files(folder: Path, rows: int) -> dict[str, Path]:
    plain = folder / "customers.csv"
    generator = ROOT / "scripts" / "generate_customers.py"
    subprocess.run([sys.executable, str(generator), "--rows", str(rows), "--out", str(plain)], check=True)
    data = plain.read_bytes()
    packed, wide = folder / "customers.csv.gz", folder / "customers-utf16.csv"
    packed.write_bytes(gzip.compress(data, compresslevel=6))
    wide.write_bytes(data.decode().encode("utf-16"))
    return {"plain": plain, "gzip": packed, "utf-16": wide}


async def measure(uri: str, targets: dict[str, Path], rows: int, rounds: int) -> None:
    client = make_client(uri)
    pool = parser_pool(2)
    customers = client["measure_preview"]["customers"]
    max_record = Settings().import_max_record_bytes
    results: dict[str, list[tuple[int, float, int]]] = {name: [] for name in targets}
    try:
        for _ in range(rounds):
            for name, path in targets.items():
                request = ImportRequest(file_path=path.name, encoding="auto")
                before, started = rchar(), time.perf_counter()
                shown = await preview(path, request, limit=20, max_record=max_record, pool=pool, customers=customers)
                elapsed, read = time.perf_counter() - started, rchar() - before
                results[name].append((read, elapsed, shown.rows_estimate))
    finally:
        pool.shutdown()
        await client.close()
    bounds = f"{read_bound(max_record):,} bytes, UTF-16 {read_bound(max_record, utf16=True):,}"
    print(f"rows in the file: {rows:,}; read bound: {bounds}")
    for name, path in targets.items():
        read = statistics.median(r[0] for r in results[name])
        seconds = statistics.median(r[1] for r in results[name])
        guess = statistics.median(r[2] for r in results[name])
        print(
            f"{name:7} {path.stat().st_size:>13,} bytes  read {read:>11,.0f}  {seconds * 1000:7.1f} ms  "
            f"estimate {guess:>10,.0f} ({(guess - rows) / rows:+.1%})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        targets = files(folder, args.rows)
        server = EmbeddedMongo(folder / "db", free_port())
        uri = server.start()
        try:
            asyncio.run(measure(uri, targets, args.rows, args.rounds))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
