"""Import benchmark: the service against the raw insert ceiling, a stdlib parse and pyimport, in one run.

    .venv/bin/python scripts/bench_import.py --rows 100000            # generates the file, embedded server
    .venv/bin/python scripts/bench_import.py --file big.csv --uri mongodb://localhost:27017
    .venv/bin/python scripts/bench_import.py --rows 200000 --baseline /path/to/old/checkout --rounds 2

With --baseline, only (b) runs, for this checkout and the other one in the same rounds, ABBA, each into a
fresh database on the one server (so a noisy shared machine slows them alike); the counters of every run must
be equal, and the median rates and their ratio are reported. --server-flags does the same for this checkout
against two embedded servers, one started with exactly those flags (none: --server-flags=) and one with the
embedded default (app/embedded.py SERVER_FLAGS):

    .venv/bin/python scripts/bench_import.py --rows 100000 --server-flags="--sync-on-commit" --rounds 2
    .venv/bin/python scripts/bench_import.py --rows 200000 --server-flags="--sync-on-commit" --server-env= --rounds 4

All measurements use the same database server (the embedded secantusd-rs unless --uri). Steps:
  (b) the service's import (`python -m app import FILE`), timed from its import_state document, peak RSS of
      the app process and its parser workers sampled from /proc, and beside it the database server's peak RSS
      (the embedded server this script started; not measured with --uri);
  (a) the raw insert ceiling: the documents (b) wrote, re-inserted as raw BSON by two writers with
      insert_many(ordered=False) into a twin collection with the same indexes;
  (c) the dry run (`--dry-run`) versus a single-process stdlib csv parse + the same validation;
  (d) pyimport (PyPI, in its own venv) --asyncpro and --multi --poolsize 2 --splitfile, into collections
      with as many secondary indexes as ours (3: single-field, on Customer Id, Email and Country).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.customers.document import is_email  # noqa: E402
from app.db import CUSTOMERS, INDEXES  # noqa: E402
from app.embedded import SERVER_ENV, SERVER_FLAGS, EmbeddedMongo, free_port  # noqa: E402
from app.imports.reading.header import map_header  # noqa: E402
from app.imports.reading.parse import parse_date  # noqa: E402


def tree_rss(pid: int) -> int:
    """RSS of a process and all its descendants (bytes)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run_sampled(
    cmd: list[str], env: dict[str, str], *, check: bool = True, server: int | None = None, cwd: Path = ROOT
) -> tuple[float, int, list[int], str, int]:
    """Run a command; return wall seconds, peak tree RSS, RSS samples, its output and the peak RSS of the
    database server (pid `server`, sampled alongside; 0 without one)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)
    samples: list[int] = []
    server_peak = 0
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    while proc.poll() is None:
        samples.append(tree_rss(proc.pid))
        if server is not None:
            server_peak = max(server_peak, tree_rss(server))
        time.sleep(0.2)
    reader.join()
    seconds = time.perf_counter() - start
    text = b"".join(output).decode(errors="replace")
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{text[-3000:]}")
    return seconds, max(samples, default=0), samples, text, server_peak


def service_import(
    uri: str, db: str, file: Path, *, dry_run: bool, server: int | None, root: Path = ROOT
) -> dict[str, float]:
    """`python -m app import FILE` by the checkout at `root`, timed from its import_state document."""
    env = {**os.environ, "MONGODB_URI": uri, "MONGODB_DB": db, "LOG_LEVEL": "WARNING", "COLUMNS": "120"}
    env["PYTHONPATH"] = str(root)  # the checkout's `app`, with this venv's packages
    cmd = [sys.executable, "-m", "app", "import", str(file), *(["--dry-run"] if dry_run else [])]
    wall, peak, samples, _, server_peak = run_sampled(cmd, env, server=server, cwd=root)
    with MongoClient(uri) as client:
        job = client[db].import_state.find_one(sort=[("startedAt", -1)])
    seconds = (job["finishedAt"] - job["startedAt"]).total_seconds()
    quarter = max(1, len(samples) // 4)
    assert job["status"] == "COMPLETED", job
    return {
        "seconds": seconds,
        "wall": wall,
        "rows": job["rowsProcessed"],
        "inserted": job["rowsInserted"],
        "invalid": job["rowsInvalid"],
        "duplicate": job["rowsDuplicate"],
        "peakRss": peak,
        "firstQuarterRss": max(samples[:quarter], default=0),
        "lastQuarterRss": max(samples[-quarter:], default=0),
        "serverPeakRss": server_peak,
    }


async def raw_ceiling(uri: str, db: str, sample: int, writers: int = 2) -> dict[str, float]:
    from pymongo import AsyncMongoClient

    async with AsyncMongoClient(uri, document_class=RawBSONDocument) as client:
        source, twin = client[db][CUSTOMERS], client[db]["ceiling_twin"]
        await twin.drop()
        await twin.create_indexes(INDEXES[CUSTOMERS])
        docs = [doc async for doc in source.find({}, batch_size=2000).limit(sample)]
        batches = [docs[i : i + 1000] for i in range(0, len(docs), 1000)]
        start = time.perf_counter()

        async def writer() -> None:
            while batches:
                await twin.insert_many(batches.pop(), ordered=False)

        await asyncio.gather(*(writer() for _ in range(writers)))
        seconds = time.perf_counter() - start
        await twin.drop()
    return {"seconds": seconds, "rows": len(docs)}


class Contender(NamedTuple):
    """One side of a side-by-side run: a checkout's code against a server."""

    name: str
    root: Path
    uri: str
    server: int | None


def side_by_side(contenders: list[Contender], file: Path, rounds: int) -> None:
    """(b) by each contender, ABBA, each into a fresh database; the median rates and their ratio."""
    runs: dict[str, list[dict[str, float]]] = {c.name: [] for c in contenders}
    for round_ in range(rounds):
        for c in contenders if round_ % 2 == 0 else contenders[::-1]:  # ABBA: a trend in load cancels out
            with MongoClient(c.uri) as client:
                client.drop_database("bench_service")
            result = service_import(c.uri, "bench_service", file, dry_run=False, server=c.server, root=c.root)
            runs[c.name].append(result)
            rate = result["rows"] / result["seconds"]
            print(
                f"round {round_ + 1} {c.name:<12}{result['seconds']:8.1f} s{rate:>10,.0f} rows/s  "
                f"app+workers peak {result['peakRss'] / 2**20:.0f} MiB, "
                f"db server peak {result['serverPeakRss'] / 2**20:.0f} MiB",
                flush=True,
            )
    counted = {(r["rows"], r["inserted"], r["invalid"], r["duplicate"]) for results in runs.values() for r in results}
    assert len(counted) == 1, f"the contenders counted differently: {counted}"
    rates = {name: statistics.median(r["rows"] / r["seconds"] for r in results) for name, results in runs.items()}
    print(f"\n{file} ({next(iter(counted))[0]:,} rows); median of {rounds} rounds")
    for name, rate in rates.items():
        print(f"{name:<12}{rate:>10,.0f} rows/s")
    first, second = (c.name for c in contenders)
    print(f"{first} / {second}: {rates[first] / rates[second]:.2f}x")


def flags_side_by_side(work: Path, file: Path, flags: list[str], env: dict[str, str], rounds: int) -> None:
    """This checkout against two embedded servers, one started with exactly `flags` and `env`, one with the
    embedded default (SERVER_FLAGS, SERVER_ENV), in the same rounds."""
    servers = [
        EmbeddedMongo(work / name / "db", free_port(), log_level="ERROR", flags=given, env=environment)
        for name, given, environment in (("flags", tuple(flags), env), ("default", SERVER_FLAGS, SERVER_ENV))
    ]
    try:
        contenders = [
            Contender(name, ROOT, server.start(), server.process.pid)  # type: ignore[union-attr]
            for name, server in zip(("with flags", "default"), servers, strict=True)
        ]
        print(
            f"with flags: {' '.join(flags) or '(none)'} {env or ''}; "
            f"default: {' '.join(SERVER_FLAGS)} {SERVER_ENV or ''}"
        )
        side_by_side(contenders, file, rounds)
    finally:
        for server in servers:
            server.stop()


def stdlib_parse(file: Path) -> dict[str, float]:
    """Single process: csv.reader over the whole file plus the same validation, building dicts."""
    start = time.perf_counter()
    rows = invalid = 0
    dates: dict = {}
    with file.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        columns = map_header(",".join(next(reader)).encode())
        for row in reader:
            if not row:
                continue
            rows += 1
            if len(row) != columns.width:
                invalid += 1
                continue
            doc = {name: value.strip() for name, value in zip(columns.fields, row, strict=True) if name and value}
            if (
                not doc.get("customerId")
                or ("email" in doc and not is_email(doc["email"]))
                or ("subscriptionDate" in doc and parse_date(doc["subscriptionDate"], dates) is None)
            ):
                invalid += 1
    return {"seconds": time.perf_counter() - start, "rows": rows, "invalid": invalid}


def pyimport_venv(folder: Path) -> Path:
    exe = folder / "bin" / "pyimport"
    if not exe.exists():
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run([str(folder / "bin" / "pip"), "install", "-q", "pyimport"], check=True)
    return exe


def pyimport_run(
    exe: Path, uri: str, file: Path, mode: list[str], collection: str, server: int | None
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="pyimport-"))
    local = workdir / file.name
    local.symlink_to(file)
    fieldfile = workdir / (file.stem + ".tff")
    common = ["--mdburi", uri, "--database", "bench_pyimport", "--hasheader"]  # --silent exits 1
    # --genfieldfile writes the field file and exits non-zero; the file is what counts.
    subprocess.run(
        [str(exe), *common, "--genfieldfile", "--collection", collection, str(local)], cwd=workdir, capture_output=True
    )
    if not fieldfile.exists():
        raise SystemExit(f"pyimport did not generate {fieldfile}")
    with MongoClient(uri) as client:
        client.bench_pyimport[collection].drop()
        # The same number of secondary indexes as the service's customers collection, on a matching column.
        for index in range(len(INDEXES[CUSTOMERS])):
            client.bench_pyimport[collection].create_index(["Customer Id", "Email", "Country"][index])
    # pyimport exits 1 even after "One file processed": check=False, and count what it stored.
    wall, peak, _, _, server_peak = run_sampled(
        [str(exe), *common, "--fieldfile", str(fieldfile), "--collection", collection, *mode, str(local)],
        {**os.environ},
        check=False,
        server=server,
    )
    with MongoClient(uri) as client:
        rows = client.bench_pyimport[collection].count_documents({})
        client.bench_pyimport[collection].drop()
    return {"seconds": wall, "rows": rows, "peakRss": peak, "serverPeakRss": server_peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, help="CSV to import (default: generate one with --rows)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--uri", help="MongoDB URI (default: start an embedded SecantusDB server)")
    parser.add_argument(
        "--ceiling-sample",
        type=int,
        default=0,
        help="documents re-inserted for (a); 0 (default) = all of them, so the twin collection grows "
        "to the same size as the service's (insert cost grows with the collection)",
    )
    parser.add_argument("--skip-pyimport", action="store_true")
    parser.add_argument(
        "--dry-run-only",
        action="store_true",
        help="only (c): the dry run against the stdlib parse (minutes instead of hours on 2 GB)",
    )
    parser.add_argument(
        "--import-only",
        action="store_true",
        help="only (b): the service's import, its time and memory (the 2 GB end-to-end run)",
    )
    parser.add_argument("--pyimport-venv", type=Path, default=ROOT / ".bench" / "pyimport-venv")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--baseline", type=Path, help="another checkout: only (b), both in the same rounds (ABBA)")
    parser.add_argument(
        "--server-flags",
        help="only (b), ABBA: an embedded server with exactly these flags (--server-flags=--oplog-async) against "
        "one with the embedded default",
    )
    parser.add_argument(
        "--server-env",
        default=None,
        help="with --server-flags: that server's environment instead of the default's, NAME=VALUE,... "
        "(--server-env= for none)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of --baseline/--server-flags (ABBA)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    file = args.file
    if file is None:
        file = work / f"customers-{args.rows}.csv"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "generate_customers.py"),
                "--rows",
                str(args.rows),
                "--out",
                str(file),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    file = file.resolve()
    size = file.stat().st_size
    if args.server_flags is not None:
        env = (
            SERVER_ENV
            if args.server_env is None
            else dict(pair.split("=", 1) for pair in args.server_env.split(",") if pair)
        )
        flags_side_by_side(work, file, args.server_flags.split(), env, args.rounds)
        return 0
    embedded = None
    uri = args.uri
    server = None
    if uri is None:
        embedded = EmbeddedMongo(work / "db", free_port(), log_level="ERROR")
        uri = embedded.start()
        server = embedded.process.pid  # type: ignore[union-attr]
    results: dict[str, dict[str, float]] = {}
    try:
        if args.baseline is not None:
            current, baseline = (
                Contender("current", ROOT, uri, server),
                Contender("baseline", args.baseline.resolve(), uri, server),
            )
            side_by_side([current, baseline], file, args.rounds)
            return 0
        with MongoClient(uri) as client:
            client.drop_database("bench_service")
            client.drop_database("bench_dry")
        if not args.dry_run_only:
            results["service"] = service_import(uri, "bench_service", file, dry_run=False, server=server)
        if not args.dry_run_only and not args.import_only:
            results["ceiling"] = asyncio.run(raw_ceiling(uri, "bench_service", args.ceiling_sample))
        if not args.import_only:
            results["dryRun"] = service_import(uri, "bench_dry", file, dry_run=True, server=server)
            results["stdlibParse"] = stdlib_parse(file)
        if not args.skip_pyimport and not args.dry_run_only and not args.import_only:
            exe = pyimport_venv(args.pyimport_venv)
            results["pyimportAsyncpro"] = pyimport_run(exe, uri, file, ["--asyncpro"], "asyncpro", server)
            results["pyimportMulti"] = pyimport_run(
                exe, uri, file, ["--multi", "--poolsize", "2", "--splitfile"], "multi", server
            )
    finally:
        if embedded is not None:
            embedded.stop()
    report(results, size, file)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[str, float]], size: int, file: Path) -> None:
    def rate(name: str) -> float:
        return results[name]["rows"] / results[name]["seconds"]

    rows = next(iter(results.values()))["rows"]
    print(f"\nfile: {file} ({size / 1e6:,.1f} MB, {rows:,} rows)\n")
    print(f"{'step':<22}{'rows':>12}{'seconds':>10}{'rows/s':>10}{'MB/s':>8}{'peak RSS MiB':>14}{'db server MiB':>15}")
    for name, values in results.items():
        mbs = size / 1e6 / values["seconds"] if name not in ("ceiling",) else float("nan")
        peak = values.get("peakRss", 0) / 2**20
        server = f"{values['serverPeakRss'] / 2**20:.0f}" if values.get("serverPeakRss") else "-"
        print(
            f"{name:<22}{values['rows']:>12,}{values['seconds']:>10.1f}{rate(name):>10,.0f}{mbs:>8.1f}"
            f"{peak:>14.0f}{server:>15}"
        )
    if "dryRun" in results:
        print(f"\ndry run / single-process stdlib parse: {rate('dryRun') / rate('stdlibParse'):.2f}x")
    if "service" not in results:
        return
    service = results["service"]
    if "ceiling" in results:
        print(f"service / raw insert ceiling: {rate('service') / rate('ceiling'):.2f}x")
    pyimports = [name for name in results if name.startswith("pyimport")]
    if pyimports:
        best = max(pyimports, key=rate)
        print(
            f"service / pyimport best ({best}): {rate('service') / rate(best):.2f}x "
            f"(pyimport stored {results[best]['rows']:,} of {service['rows']:,} rows)"
        )
    print(
        f"service RSS, app + workers: peak {service['peakRss'] / 2**20:.0f} MiB; first quarter "
        f"{service['firstQuarterRss'] / 2**20:.0f} MiB, last quarter {service['lastQuarterRss'] / 2**20:.0f} MiB; "
        + (
            f"database server peak {service['serverPeakRss'] / 2**20:.0f} MiB"
            if service["serverPeakRss"]
            else "database server not measured (--uri)"
        )
    )


if __name__ == "__main__":
    raise SystemExit(main())
