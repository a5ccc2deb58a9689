"""Load test (issue 19): the usual request mix, open loop, while an import runs into a database that already holds
customers; what is answered, shed and how fast, and what the load does to the import and to the database server.

    .venv/bin/python scripts/load_test.py                       # 150,000 stored, 40 req/s for 30 s during an import
    .venv/bin/python scripts/load_test.py --rate 80 --capacity 10,20,30,40,60
    .venv/bin/python scripts/load_test.py --uri mongodb://localhost:27017

Starts `python -m app serve` as `make run` does (embedded database unless --uri, its settings from the
environment), imports --stored generated customers, then starts a second import of --import-rows and measures
its rate for --before seconds with no load. Then requests are sent on a fixed schedule whether or not earlier
ones were answered (open loop), in turn:
  list      GET /customers?limit=50
  cursor    GET /customers?limit=50&after=  a stored customer's cursor
  email     GET /customers?limit=50&email=  its email, upper-cased
  country   GET /customers?limit=50&country=  its country
  q         GET /customers?limit=50&q=  the first 3 letters of its last name
  get       GET /customers/{id}
  patch     PATCH /customers/{id}  a new firstName
  progress  GET /import/progress
The loop never hangs (each request gives up after --client-timeout seconds and counts as no answer) and stops
early, saying so, when the database server's RSS passes --max-db-rss-gib. Then, 3 s after the load, one request
per endpoint. --capacity runs short steps at the given rates and reports the highest at which nothing was shed.

The import slows down as the collection grows, load or not, so a control pass runs first: the same import on a
fresh database with the same customers stored, with no load. The import's rate and the database server's RSS in
the load's window are compared with the control's in the same window (--no-control skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.embedded import free_port  # noqa: E402

ENDPOINTS = ("list", "cursor", "email", "country", "q", "get", "patch", "progress")
CHEAP = ("get", "email", "progress")
FIRST = ("James", "Mary", "Robert", "Patricia", "John", "Jennifer", "Michael", "Linda", "José", "Zoë")
PAGE = os.sysconf("SC_PAGE_SIZE")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def database_pid(app_pid: int) -> int | None:
    """The embedded server `python -m app serve` started: its child whose command is secantusd-rs (or secantus)."""
    for pid in children(app_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"secantus" in command:
            return pid
    return None


@dataclass
class Outcome:
    """What one endpoint got: latencies of every answer, and how many were 2xx, shed (503) and other."""

    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    shed: int = 0
    shed_latencies: list[float] = field(default_factory=list)
    shed_without_retry_after: int = 0
    no_answer: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.latencies) + self.no_answer


@dataclass
class Sample:
    customers: list[dict[str, Any]]
    endpoints: tuple[str, ...] = ENDPOINTS

    def pick(self) -> dict[str, Any]:
        return random.choice(self.customers)


def request_of(kind: str, customer: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None, Any]:
    cursor = base64.urlsafe_b64encode(customer["customerId"].encode()).decode().rstrip("=")
    method, body = "GET", None
    if kind == "patch":
        method, body = "PATCH", {"firstName": random.choice(FIRST)}
    path, params = {
        "list": ("/customers", {"limit": 50}),
        "cursor": ("/customers", {"limit": 50, "after": cursor}),
        "email": ("/customers", {"limit": 50, "email": customer.get("email", "").upper()}),
        "country": ("/customers", {"limit": 50, "country": customer.get("country", "")}),
        "q": ("/customers", {"limit": 50, "q": (customer.get("lastName") or "abc")[:3]}),
        "get": (f"/customers/{customer['customerId']}", None),
        "patch": (f"/customers/{customer['customerId']}", None),
        "progress": ("/import/progress", None),
    }[kind]
    return method, path, params, body


async def one(client: httpx.AsyncClient, kind: str, sample: Sample, outcome: Outcome) -> None:
    method, path, params, body = request_of(kind, sample.pick())
    start = time.perf_counter()
    try:
        response = await client.request(method, path, params=params, json=body)
    except httpx.HTTPError as exc:  # no answer within the client's timeout, or the connection refused
        outcome.no_answer += 1
        outcome.errors.append(f"{method} {path}: no answer ({exc.__class__.__name__})")
        return
    elapsed = (time.perf_counter() - start) * 1000
    outcome.latencies.append(elapsed)
    if response.status_code < 300:
        outcome.ok += 1
    elif response.status_code == 503:
        outcome.shed += 1
        outcome.shed_latencies.append(elapsed)
        outcome.shed_without_retry_after += "retry-after" not in response.headers
    else:
        outcome.errors.append(f"{method} {path}: {response.status_code} {response.text[:120]}")


async def drive(
    client: httpx.AsyncClient, sample: Sample, rate: float, seconds: float, stop: asyncio.Event
) -> tuple[dict[str, Outcome], float]:
    """Send the mix on a fixed schedule for `seconds` (or until `stop`); the outcomes and the seconds it ran."""
    outcomes = {kind: Outcome() for kind in sample.endpoints}
    tasks: set[asyncio.Task[None]] = set()
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds and not stop.is_set():
        kind = sample.endpoints[n % len(sample.endpoints)]
        task = asyncio.create_task(one(client, kind, sample, outcomes[kind]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
    ran = time.perf_counter() - start
    await asyncio.gather(*tasks)  # each ends within the client's timeout
    return outcomes, ran


class Watch:
    """Samples the import's progress and both processes' RSS; sets `stop` when the database passes its bound."""

    def __init__(self, client: httpx.AsyncClient, app_pid: int, db_pid: int | None, max_db_rss: int):
        self.client, self.app_pid, self.db_pid, self.max_db_rss = client, app_pid, db_pid, max_db_rss
        self.rows: list[tuple[float, int, str]] = []  # (when, rowsProcessed, status)
        self.db_peak = self.app_peak = 0
        self.stop = asyncio.Event()
        self.stopped_for_memory = False

    async def run(self) -> None:
        while True:
            self.app_peak = max(self.app_peak, rss(self.app_pid))
            if self.db_pid is not None:
                self.db_peak = max(self.db_peak, db := rss(self.db_pid))
                if db > self.max_db_rss and not self.stop.is_set():
                    self.stopped_for_memory = True
                    self.stop.set()
            try:
                progress = (await self.client.get("/import/progress")).json()
                self.rows.append((time.perf_counter(), progress["rowsProcessed"], progress["status"]))
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.25)

    def rate(self, since: float, until: float) -> tuple[float, bool]:
        """Rows/s of the import between two instants (only while it ran), and whether it ran all along."""
        window = [(at, rows) for at, rows, status in self.rows if since <= at <= until and status == "RUNNING"]
        if len(window) < 2:
            return float("nan"), False
        (t0, r0), (t1, r1) = window[0], window[-1]
        return (r1 - r0) / (t1 - t0), t1 >= until - 1.0


def report(title: str, outcomes: dict[str, Outcome], deadline: float) -> None:
    print(f"\n{title}")
    print(f"  {'endpoint':<10}{'sent':>6}{'2xx':>6}{'shed':>6}{'err':>5}{'p50':>9}{'p99':>9}{'max':>9}  (ms)")
    every = Outcome()
    for kind, o in outcomes.items():
        print(
            f"  {kind:<10}{o.sent:>6}{o.ok:>6}{o.shed:>6}{len(o.errors):>5}"
            f"{percentile(o.latencies, 0.5):>9.1f}{percentile(o.latencies, 0.99):>9.1f}"
            f"{max(o.latencies, default=float('nan')):>9.1f}"
        )
        every.latencies += o.latencies
        every.shed_latencies += o.shed_latencies
        every.shed += o.shed
        every.shed_without_retry_after += o.shed_without_retry_after
        every.errors += o.errors
        every.no_answer += o.no_answer
    slowest = max(every.latencies, default=0.0)
    print(
        f"  503s: {every.shed}, without Retry-After {every.shed_without_retry_after}, "
        f"p99 {percentile(every.shed_latencies, 0.99):.1f} ms; slowest answer {slowest:.0f} ms "
        f"(deadline + 0.5 s = {(deadline + 0.5) * 1000:.0f} ms); errors {len(every.errors)}, of them no answer "
        f"{every.no_answer}"
    )
    for error in sorted(set(every.errors))[:5]:
        print(f"    e.g. {error}")
    cheap = [outcomes[kind] for kind in CHEAP if kind in outcomes]
    answered = sum(o.ok for o in cheap)
    sent = sum(o.sent for o in cheap)
    print(
        f"  cheap ({', '.join(CHEAP)}): {answered}/{sent} 2xx ({100 * answered / max(1, sent):.1f} %), "
        f"p99 {percentile([v for o in cheap for v in o.latencies], 0.99):.1f} ms"
    )


def sample_customers(file: Path, count: int, rows: int) -> Sample:
    """Customers to ask about, read from the stored file (every n-th row): no list request before the load."""
    step = max(1, rows // count)
    customers = []
    with file.open(newline="", encoding="utf-8") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            if i % step == 0:
                customers.append(
                    {
                        "customerId": row["Customer Id"],
                        "email": row["Email"],
                        "country": row["Country"],
                        "lastName": row["Last Name"],
                    }
                )
    return Sample(customers)


async def import_and_wait(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    started = await client.post("/import/sync", json={"filePath": name})
    if started.status_code != 202:
        raise SystemExit(f"import of {name} refused: {started.status_code} {started.text}")
    while (progress := (await client.get("/import/progress")).json())["status"] == "RUNNING":  # noqa: ASYNC110
        await asyncio.sleep(1)
    return progress


async def wait_healthy(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
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


async def after_the_load(client: httpx.AsyncClient, sample: Sample) -> None:
    await asyncio.sleep(3)
    statuses = []
    for kind in sample.endpoints:
        method, path, params, body = request_of(kind, sample.pick())
        try:
            statuses.append(f"{kind} {(await client.request(method, path, params=params, json=body)).status_code}")
        except httpx.HTTPError as exc:
            statuses.append(f"{kind} {exc.__class__.__name__}")
    print(f"\n3 s after the load: {', '.join(statuses)}")


async def capacity(client: httpx.AsyncClient, sample: Sample, rates: list[float], seconds: float) -> None:
    best = None
    for rate in rates:
        outcomes, _ = await drive(client, sample, rate, seconds, asyncio.Event())
        shed = sum(o.shed for o in outcomes.values())
        errors = sum(len(o.errors) for o in outcomes.values())
        print(f"  capacity step {rate:g} req/s for {seconds:g} s: shed {shed}, errors {errors}")
        if shed == 0 and errors == 0:
            best = rate
    print(f"capacity of the mix (highest rate with nothing shed): {best if best is not None else 'below the lowest'}")


def gib(value: int) -> str:
    return f"{value / 2**30:.2f} GiB"


@dataclass
class Run:
    """One pass: the import's rate in each window, the database server's RSS, the requests' outcomes (loaded)."""

    rate_before: float = float("nan")
    rate_during: float = float("nan")
    ran_through: bool = False
    db_before: int = 0
    db_peak: int = 0
    app_before: int = 0
    app_peak: int = 0


async def one_pass(args: argparse.Namespace, base: str, proc: subprocess.Popen[bytes], loaded: bool) -> Run:
    """Stored customers, then the import: `before` seconds alone, then `seconds` with the load (or alone again)."""
    timeout = httpx.Timeout(args.client_timeout)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    result = Run()
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as client:
        await wait_healthy(client, proc)
        seeded = await import_and_wait(client, "stored.csv")
        print(f"{'loaded' if loaded else 'control'} pass: {seeded['rowsInserted']:,} customers stored")
        sample = sample_customers(args.imports / "stored.csv", args.sample, args.stored)
        sample.endpoints = args.endpoints
        db_pid = database_pid(proc.pid)
        watch = Watch(client, proc.pid, db_pid, int(args.max_db_rss_gib * 2**30))
        result.db_before, result.app_before = rss(db_pid) if db_pid else 0, rss(proc.pid)
        watcher = asyncio.create_task(watch.run())
        started = await client.post("/import/sync", json={"filePath": "importing.csv"})
        if started.status_code != 202:
            raise SystemExit(f"import refused: {started.status_code} {started.text}")
        await asyncio.sleep(args.before)
        t0 = time.perf_counter()
        if loaded:
            outcomes, ran = await drive(client, sample, args.rate, args.seconds, watch.stop)
        else:
            await asyncio.sleep(args.seconds)
        t1 = time.perf_counter()
        result.rate_before, _ = watch.rate(t0 - args.before, t0)
        result.rate_during, result.ran_through = watch.rate(t0, t1)
        result.db_peak, result.app_peak = watch.db_peak, watch.app_peak
        if loaded:
            if watch.stopped_for_memory:
                print(f"\nSTOPPED EARLY after {ran:.1f} s: the database server passed {args.max_db_rss_gib} GiB")
            report(f"{args.rate:g} req/s for {ran:.1f} s during the import", outcomes, args.deadline)
            await after_the_load(client, sample)
            if args.capacity:
                await capacity(client, sample, args.capacity, args.step_seconds)
        watcher.cancel()
    return result


def compare(control: Run | None, loaded: Run) -> None:
    print(
        f"\nimport: {loaded.rate_before:,.0f} rows/s before the load, {loaded.rate_during:,.0f} during"
        f" ({loaded.rate_during / loaded.rate_before:.2f}x)"
        f"{'' if loaded.ran_through else ' (the import did not run through the whole load)'}"
    )
    print(
        f"database server RSS: {gib(loaded.db_before)} before the load, peak {gib(loaded.db_peak)} "
        f"(+{(loaded.db_peak - loaded.db_before) / 2**20:,.0f} MiB); app RSS {gib(loaded.app_before)} before, "
        f"peak {gib(loaded.app_peak)}"
    )
    if control is not None:
        print(
            f"the same windows without the load (control pass): {control.rate_before:,.0f} then "
            f"{control.rate_during:,.0f} rows/s; loaded / control during the load: "
            f"{loaded.rate_during / control.rate_during:.2f}x; database server peak {gib(control.db_peak)} "
            f"(+{(control.db_peak - control.db_before) / 2**20:,.0f} MiB), the load's own: "
            f"{(loaded.db_peak - control.db_peak) / 2**20:+,.0f} MiB"
        )


def generate(out: Path, rows: int, seed: int) -> None:
    script = str(ROOT / "scripts" / "generate_customers.py")
    command = [sys.executable, script, "--rows", str(rows), "--out", str(out), "--seed", str(seed)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def rates(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=150_000, help="customers stored before the load")
    parser.add_argument("--import-rows", type=int, default=400_000, help="rows of the import the load runs beside")
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, all endpoints together")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long the load lasts")
    parser.add_argument("--before", type=float, default=10.0, help="seconds the import runs unloaded first")
    parser.add_argument("--client-timeout", type=float, default=10.0, help="seconds before a request is given up")
    parser.add_argument("--max-db-rss-gib", type=float, default=8.0, help="stop the load past this database RSS")
    parser.add_argument("--sample", type=int, default=2000, help="stored customers the requests ask about")
    parser.add_argument("--capacity", type=rates, default=[], help="rates to step through after the load: 10,20,40")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--uri", help="MongoDB URI (default: the app's embedded server)")
    parser.add_argument(
        "--endpoints",
        type=lambda text: tuple(text.split(",")),
        default=ENDPOINTS,
        help=f"a subset of the mix, in turn (default: {','.join(ENDPOINTS)})",
    )
    parser.add_argument("--data-dir", type=Path, help="keep the generated files here (default: a temporary folder)")
    parser.add_argument(
        "--no-control", action="store_true", help="skip the control pass (the same import, no load, first)"
    )
    args = parser.parse_args()
    if unknown := set(args.endpoints) - set(ENDPOINTS):
        parser.error(f"unknown endpoints {sorted(unknown)}; choose from {','.join(ENDPOINTS)}")
    args.deadline = float(os.environ.get("REQUEST_TIMEOUT_SECONDS", "2"))

    work = args.data_dir or Path(tempfile.mkdtemp(prefix="load-"))
    args.imports = work / "imports"
    args.imports.mkdir(parents=True, exist_ok=True)
    generate(args.imports / "stored.csv", args.stored, seed=1)
    generate(args.imports / "importing.csv", args.import_rows, seed=2)
    try:
        control = None if args.no_control else serve_pass(args, work / "control", loaded=False)
        compare(control, serve_pass(args, work / "loaded", loaded=True))
    finally:
        if not args.data_dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def serve_pass(args: argparse.Namespace, data: Path, *, loaded: bool) -> Run:
    """`python -m app serve` on a database of its own in `data`, through one pass."""
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DATA_DIR": str(data),
        "IMPORT_DIR": str(args.imports),
        "EMBEDDED_DB_PORT": "0",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "MONGODB_DB": f"load_test_{'loaded' if loaded else 'control'}",
    }
    if args.uri:
        env["MONGODB_URI"] = args.uri
    proc = subprocess.Popen([sys.executable, "-m", "app", "serve"], env=env, cwd=ROOT)
    try:
        return asyncio.run(one_pass(args, f"http://127.0.0.1:{port}", proc, loaded))
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__":
    raise SystemExit(main())
