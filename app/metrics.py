"""Event-loop lag monitor and GET /metrics in Prometheus text format."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from pathlib import Path

from litestar import Response, get
from litestar.di import NamedDependency

from app.admission import Admission
from app.imports.model import Status
from app.imports.schemas import Progress
from app.imports.service import ImportService
from app.warmup import Warmup

PAGE = os.sysconf("SC_PAGE_SIZE")


class LagMonitor:
    """Wakes every `interval` seconds and records how late it woke: the event loop's lag."""

    def __init__(self, interval: float = 0.05, window: float = 60.0):
        self.interval = interval
        self.samples: deque[tuple[float, float]] = deque(maxlen=int(window / interval) + 1)
        self.window = window
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.interval)
            now = time.perf_counter()
            self.samples.append((now, max(0.0, now - before - self.interval)))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lag-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def stats(self) -> tuple[float, float]:
        """(max, p99) lag in seconds over the window."""
        cutoff = time.perf_counter() - self.window
        lags = sorted(lag for at, lag in self.samples if at >= cutoff)
        if not lags:
            return 0.0, 0.0
        return lags[-1], lags[min(len(lags) - 1, int(len(lags) * 0.99))]


def rss_bytes(pid: int | str = "self") -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _line(name: str, value: float, help_text: str, kind: str = "gauge") -> str:
    return f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n{name} {value}\n"


ADMISSION = {
    "in_flight": (
        "gauge",
        "requests of the class holding one of its slots now (waiting for the warm-up or with database work in flight)",
    ),
    "admitted": ("counter", "requests of the class given a slot"),
    "shed": ("counter", "requests of the class answered 503 before any database work (slots, share, warm-up)"),
    "deadline_exceeded": ("counter", "requests of the class whose database work ran out of its deadline"),
}


def _admission(admission: Admission) -> list[str]:
    """One family per counter, one sample per class of work (app/admission.py)."""
    parts = []
    for name, (kind, help_text) in ADMISSION.items():
        samples = "".join(
            f'admission_{name}{{class="{work}"}} {getattr(slots, name)}\n' for work, slots in admission.classes.items()
        )
        parts.append(f"# HELP admission_{name} {help_text}\n# TYPE admission_{name} {kind}\n{samples}")
    parts.append(_line("http_requests_in_flight", admission.requests, "requests held by this instance now"))
    parts.append(
        _line("http_requests_refused", admission.refused, "requests refused: MAX_REQUESTS_IN_FLIGHT held", "counter")
    )
    return parts


@get(
    "/metrics",
    tags=["health"],
    summary="Prometheus metrics: import counters and rate, admission per class of work, event-loop lag, RSS",
    media_type="text/plain; version=0.0.4",
)
async def metrics(
    service: NamedDependency[ImportService],
    lag: NamedDependency[LagMonitor],
    admission: NamedDependency[Admission],
    warmup: NamedDependency[Warmup],
) -> Response[str]:
    snap = Progress.of(await service.snapshot())
    lag_max, lag_p99 = lag.stats()
    parts = [
        _line("import_running", int(snap.status == Status.RUNNING), "1 while a job runs (on any instance)"),
        *(
            _line(f"import_{name}", value, f"{name.replace('_', ' ')} of the current or latest job")
            for name, value in snap.counts().items()
        ),
        _line("import_bytes_read", snap.bytes_read, "watermark of the current or latest job"),
        _line("import_rate_rows_per_second", snap.rate_rows_per_sec, "rows per second of the current or latest job"),
        _line("event_loop_lag_max_seconds", round(lag_max, 6), "largest event-loop lag over the last minute"),
        _line("event_loop_lag_p99_seconds", round(lag_p99, 6), "99th percentile event-loop lag, last minute"),
        _line("process_resident_memory_bytes", rss_bytes(), "RSS of the app process"),
        _line(
            "import_workers_resident_memory_bytes",
            sum(rss_bytes(pid) for pid in service.worker_pids()),
            "RSS of the parser worker processes, summed",
        ),
        *_admission(admission),
        _line("db_warm", int(warmup.warm), "0 while requests wait for a warm-up query (after start or an index drop)"),
        _line("db_warmups", warmup.runs, "warm-up queries run (docs/api.md#under-load)", "counter"),
        _line("db_warmup_seconds", round(warmup.seconds, 3), "how long the last warm-up query took"),
    ]
    return Response("".join(parts), media_type="text/plain; version=0.0.4")
