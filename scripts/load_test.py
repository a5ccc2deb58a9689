"""Load test: API latency and event-loop lag, idle and while an import runs, side by side in one run.

    .venv/bin/python scripts/load_test.py --rows 200000 --rate 40 --idle-seconds 20
    .venv/bin/python scripts/load_test.py --rows 50000 --idle-seconds 10 --endpoints list,q,patch

Starts `python -m app serve` (embedded database unless --uri), creates --seed-customers customers through
POST /customers, then drives these endpoints in turn at a fixed total rate (open loop: requests are sent on
schedule whether or not earlier ones finished), each about a random seeded customer:
  list      GET /customers?limit=50
  email     GET /customers?limit=50&email=  its email, upper-cased (the filter ignores case)
  country   GET /customers?limit=50&country=  its country (imported customers live there too)
  q         GET /customers?limit=50&q=  the first 3 letters of its last name (imported names share them)
  get       GET /customers/{id}
  patch     PATCH /customers/{id}  a new firstName (an indexed field: its search keys are rewritten)
  progress  GET /import/progress
Phase 1 is idle; phase 2 runs while an import of the file is RUNNING. Prints p50/p95/p99/max per endpoint
and phase, and the event-loop lag from /metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import free_port  # noqa: E402

ENDPOINTS = ("list", "email", "country", "q", "get", "patch", "progress")
# Seeded customers take their names and countries from these (values the generated file has too).
FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "José", "Zoë")
LAST = ("Smith", "Johnson", "Williams", "Brown", "Garcia", "Miller", "Martinez", "Müller", "Nguyen", "O'Brien")
COUNTRIES = ("France", "Germany", "United States", "Japan", "Brazil", "Côte d'Ivoire", "Korea, Republic of")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


async def drive(
    client: httpx.AsyncClient,
    customers: list[dict[str, str]],
    rate: float,
    until: asyncio.Event,
    seconds: float,
    endpoints: list[str],
) -> dict[str, list[float]]:
    """Fire requests on a fixed schedule until `until` is set or `seconds` pass; latencies in ms by kind."""
    latencies: dict[str, list[float]] = {kind: [] for kind in endpoints}
    errors: list[str] = []
    kinds = list(latencies)

    async def one(kind: str) -> None:
        customer = random.choice(customers)
        method, body = "GET", None
        if kind == "patch":
            method, body = "PATCH", {"firstName": random.choice(FIRST)}
        path, params = {
            "list": ("/customers", {"limit": 50}),
            "email": ("/customers", {"limit": 50, "email": customer["email"].upper()}),
            "country": ("/customers", {"limit": 50, "country": customer["country"]}),
            "q": ("/customers", {"limit": 50, "q": customer["lastName"][:3]}),
            "get": (f"/customers/{customer['customerId']}", None),
            "patch": (f"/customers/{customer['customerId']}", None),
            "progress": ("/import/progress", None),
        }[kind]
        start = time.perf_counter()
        try:
            response = await client.request(method, path, params=params, json=body)
        except httpx.HTTPError as exc:  # a timeout is a result too: count it at the timeout
            errors.append(f"{method} {path} {params or ''}: {exc.__class__.__name__}")
        else:
            if response.status_code >= 400:
                errors.append(f"{method} {path} {params or ''}: {response.status_code}")
        latencies[kind].append((time.perf_counter() - start) * 1000)

    tasks: set[asyncio.Task[None]] = set()
    deadline, step, n = time.perf_counter() + seconds, 1 / rate, 0
    start = time.perf_counter()
    while time.perf_counter() < deadline and not until.is_set():
        task = asyncio.create_task(one(kinds[n % len(kinds)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, start + n * step - time.perf_counter()))
    await asyncio.gather(*tasks)
    if errors:
        print(f"  {len(errors)} error responses, e.g. {errors[:3]}")
    return latencies


async def lag(client: httpx.AsyncClient) -> tuple[float, float]:
    text = (await client.get("/metrics")).text
    values = {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_0-9]+) ([0-9.e+-]+)$", text, re.M)}
    return values["event_loop_lag_p99_seconds"] * 1000, values["event_loop_lag_max_seconds"] * 1000


def report(phase: str, latencies: dict[str, list[float]], lags: tuple[float, float]) -> None:
    every = [v for values in latencies.values() for v in values]
    print(f"\n{phase}: {len(every)} requests; event-loop lag p99 {lags[0]:.1f} ms, max {lags[1]:.1f} ms (last minute)")
    print(f"  {'endpoint':<12}{'n':>7}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)")
    for kind, values in [*latencies.items(), ("all", every)]:
        print(
            f"  {kind:<12}{len(values):>7}{percentile(values, 0.5):>9.1f}{percentile(values, 0.95):>9.1f}"
            f"{percentile(values, 0.99):>9.1f}{max(values, default=float('nan')):>9.1f}"
        )


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if (await client.get("/health")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.3)
    raise SystemExit("server did not become healthy")


async def run(args: argparse.Namespace, base: str, file: Path, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(
        base_url=base, timeout=30, limits=httpx.Limits(max_connections=64, max_keepalive_connections=64)
    ) as client:
        await wait_healthy(client, proc)
        customers = []
        for i in range(args.seed_customers):
            body = {
                "customerId": f"load-{i}",
                "firstName": FIRST[i % len(FIRST)],
                "lastName": LAST[i % len(LAST)],
                "email": f"load{i}@example.com",
                "country": COUNTRIES[i % len(COUNTRIES)],
            }
            response = await client.post("/customers", json=body)
            if response.status_code in (201, 409):
                customers.append(body)
        if not customers:
            raise SystemExit("no customer could be created")
        never = asyncio.Event()
        await drive(client, customers, args.rate, never, 3, args.endpoints)  # warm-up, not reported
        idle = await drive(client, customers, args.rate, never, args.idle_seconds, args.endpoints)
        report("idle", idle, await lag(client))

        started = await client.post("/import/sync", json={"filePath": file.name})
        if started.status_code != 202:
            raise SystemExit(f"import refused: {started.status_code} {started.text}")
        done = asyncio.Event()

        async def watch() -> None:
            while (await client.get("/import/progress")).json()["status"] == "RUNNING":  # noqa: ASYNC110
                await asyncio.sleep(0.5)
            done.set()

        watcher = asyncio.create_task(watch())
        busy = await drive(client, customers, args.rate, done, args.max_import_seconds, args.endpoints)
        busy_lag = await lag(client)
        progress = (await client.get("/import/progress")).json()
        report(
            f"during import ({progress['status']} {progress['percent']:.0f}%, "
            f"{progress['rateRowsPerSec']:,.0f} rows/s)",
            busy,
            busy_lag,
        )
        watcher.cancel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, help="CSV to import (default: generate --rows rows)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, all endpoints together")
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument("--max-import-seconds", type=float, default=600.0)
    parser.add_argument("--seed-customers", type=int, default=200)
    parser.add_argument("--uri", help="MongoDB URI (default: the app's embedded server)")
    parser.add_argument(
        "--endpoints",
        type=lambda text: text.split(","),
        default=list(ENDPOINTS),
        help=f"comma-separated subset of {','.join(ENDPOINTS)} (default: all, in turn)",
    )
    args = parser.parse_args()
    if unknown := set(args.endpoints) - set(ENDPOINTS):
        parser.error(f"unknown endpoints {sorted(unknown)}; choose from {','.join(ENDPOINTS)}")

    work = Path(tempfile.mkdtemp(prefix="load-"))
    imports = work / "imports"
    imports.mkdir()
    if args.file:
        file = imports / args.file.name
        try:  # a symlink would point outside IMPORT_DIR, which the service refuses
            os.link(args.file.resolve(), file)
        except OSError:
            shutil.copyfile(args.file, file)
    else:
        file = imports / "customers.csv"
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
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(work),
        "IMPORT_DIR": str(imports),
        "EMBEDDED_DB_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "MONGODB_DB": "load_test",
    }
    if args.uri:
        env["MONGODB_URI"] = args.uri
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=ROOT)
    try:
        asyncio.run(run(args, f"http://127.0.0.1:{port}", file, proc))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
