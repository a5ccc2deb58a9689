"""Dry-run rate of each input format against plain UTF-8, side by side in one run (and optionally another checkout).

    .venv/bin/python scripts/bench_formats.py --rows 200000 --rounds 3
    .venv/bin/python scripts/bench_formats.py --rows 200000 --rounds 5 --formats utf-8 --baseline /path/to/old/checkout

One generated file is written as plain UTF-8 (comma, LF), cp1252 (semicolon, CRLF: Excel's European "CSV"),
UTF-16 (tab: Excel's "Unicode text") and gzip (the UTF-8 file compressed). Each round runs the service's dry run
(`python -m app import FILE --dry-run --encoding auto`, timed from its import_state document) on every format in
turn, against one embedded database, so a noisy shared machine slows all of them alike. `--baseline ROOT` also
runs the plain UTF-8 file with the code of another checkout (e.g. `git worktree add /tmp/base main`) in the same
rounds: the parse-rate regression check. The median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.imports.reading.decode import Decoder  # noqa: E402

FORMATS = ("utf-8", "cp1252", "utf-16", "gzip")


def write_formats(plain: Path, formats: tuple[str, ...]) -> dict[str, Path]:
    """The plain file in each format (cp1252: characters it lacks become '?')."""
    files = {"utf-8": plain}
    text = plain.read_text(encoding="utf-8") if {"cp1252", "utf-16"} & set(formats) else ""
    if "cp1252" in formats:
        files["cp1252"] = plain.with_name("cp1252.csv")
        rows = text.replace(",", ";").replace("\n", "\r\n")  # the generator's text holds no ';' outside quotes
        files["cp1252"].write_bytes(rows.encode("cp1252", "replace"))
    if "utf-16" in formats:
        files["utf-16"] = plain.with_name("utf16.csv")
        files["utf-16"].write_bytes(text.replace(",", "\t").encode("utf-16"))
    if "gzip" in formats:
        files["gzip"] = plain.with_name("plain.csv.gz")
        files["gzip"].write_bytes(gzip.compress(plain.read_bytes(), compresslevel=6))
    return {name: files[name] for name in formats}


def tree_cpu(pid: int, seen: dict[int, float]) -> None:
    """CPU seconds so far of a process and all its descendants (the parser workers), by pid, into `seen`."""
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            seen[current] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue


def dry_run(root: Path, uri: str, database: str, file: Path) -> tuple[float, int, float]:
    """Seconds (finishedAt - startedAt), rows and CPU seconds (the app and its parser workers, sampled from /proc
    every 50 ms, start-up included: less disturbed than wall time by others' load) of one dry run by `root`."""
    env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DB": database, "LOG_LEVEL": "WARNING", "COLUMNS": "120"}
    env["PYTHONPATH"] = str(root)
    options = ["--encoding", "auto"] if root == ROOT else []
    cmd = [sys.executable, "-m", "app", "import", str(file), "--dry-run", *options]
    seen: dict[int, float] = {}
    process = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None:
        tree_cpu(process.pid, seen)
        time.sleep(0.05)
    assert process.returncode == 0, f"{cmd} failed"
    cpu = sum(seen.values())
    with MongoClient(uri) as client:
        job = client[database].import_state.find_one(sort=[("startedAt", -1)])
        client.drop_database(database)
    assert job is not None and job["status"] == "COMPLETED", job
    return (job["finishedAt"] - job["startedAt"]).total_seconds(), job["rowsProcessed"], cpu


def redecode_seconds(path: Path, name: str, chunk: int = 4 << 20) -> float:
    """What resuming a gzip or UTF-16 job costs per byte of the file below its watermark: decoding it again
    (in the app, without parsing or writing), here for the whole file."""
    start = time.perf_counter()
    with path.open("rb") as file:
        decoder = Decoder(file, gzip=name == "gzip", utf16=name == "utf-16", chunk=chunk)
        while decoder.read():
            pass
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--baseline", type=Path, help="another checkout: its plain UTF-8 dry run, in the same rounds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-formats-"))
    plain = work / "plain.csv"
    generate = [sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(args.rows)]
    subprocess.run([*generate, "--out", str(plain)], check=True, stdout=subprocess.DEVNULL)
    files = write_formats(plain, tuple(args.formats))
    runs = [(name, ROOT, path) for name, path in files.items()]
    if args.baseline:
        runs.insert(0, ("utf-8 (baseline)", args.baseline.resolve(), plain))
    server = EmbeddedMongo(work / "db", free_port(), log_level="ERROR")
    uri = server.start()
    rates: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    try:
        for round_ in range(args.rounds):
            for name, root, path in runs if round_ % 2 == 0 else runs[::-1]:  # ABBA: a trend in load cancels out
                seconds, rows, cpu = dry_run(root, uri, "bench_formats", path)
                rates[name].append(rows / seconds)
                cpus[name].append(cpu)
                print(f"{name:<18} {rows:>9,} rows {seconds:6.2f} s {rows / seconds:>10,.0f} rows/s {cpu:6.2f} s CPU")
    finally:
        server.stop()
    plain_rate = statistics.median(rates["utf-8"])
    print(f"\n{args.rows:,} rows, {plain.stat().st_size / 1e6:,.1f} MB; median of {args.rounds} rounds\n")
    plain_cpu = statistics.median(cpus["utf-8"])
    print(f"{'format':<18}{'file MB':>9}{'rows/s':>10}{'vs utf-8':>10}{'CPU s':>8}{'vs utf-8':>10}")
    for name, _, path in runs:
        rate, cpu = statistics.median(rates[name]), statistics.median(cpus[name])
        size = path.stat().st_size / 1e6
        print(f"{name:<18}{size:>9.1f}{rate:>10,.0f}{rate / plain_rate:>10.3f}{cpu:>8.2f}{cpu / plain_cpu:>10.3f}")
    for name in ("gzip", "utf-16"):
        if name in files:
            seconds = min(redecode_seconds(files[name], name) for _ in range(3))
            size = files[name].stat().st_size
            print(
                f"resume cost, {name}: the whole file decoded again in {seconds:.2f} s "
                f"({size / 1e6 / seconds:,.0f} MB/s of the file)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
