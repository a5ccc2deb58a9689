"""GET /metrics: Prometheus text with import counters, event-loop lag and memory."""

import re

from litestar.testing import AsyncTestClient
from pymongo.asynchronous.database import AsyncDatabase

from app.metrics import LagMonitor


def parse(text: str) -> dict[str, float]:
    return {m[1]: float(m[2]) for m in re.finditer(r"^([a-z_0-9]+) ([0-9.e+-]+)$", text, re.M)}


async def test_metrics_exposes_import_lag_and_memory(client: AsyncTestClient, db: AsyncDatabase) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = parse(response.text)
    assert values["import_running"] == 0
    assert values["import_rows_processed"] == 0
    # No upper bound: a loaded machine lags more; test_lag_monitor_sees_a_blocked_loop checks what the value means.
    assert 0 <= values["event_loop_lag_p99_seconds"] <= values["event_loop_lag_max_seconds"]
    assert values["process_resident_memory_bytes"] > 10_000_000
    assert "# TYPE import_rows_inserted gauge" in response.text


async def test_lag_monitor_sees_a_blocked_loop() -> None:
    import asyncio
    import time

    monitor = LagMonitor(interval=0.01)
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - block the loop on purpose: the monitor must see it
    await asyncio.sleep(0.05)
    await monitor.stop()
    lag_max, lag_p99 = monitor.stats()
    assert lag_max >= 0.15
    assert lag_p99 <= lag_max
