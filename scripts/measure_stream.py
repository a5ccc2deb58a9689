"""Progress events per second on GET /import/progress/stream during a real import (issue 12, item 9).

    .venv/bin/python scripts/measure_stream.py --rows 200000

Starts an embedded SecantusDB server and the app (uvicorn, in this process), generates a file, subscribes to the
stream, starts the import and counts the `progress` events until `done`: the events per second while the
counters change, and the longest gap between two events.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.asgi import create_app  # noqa: E402
from app.embedded import EmbeddedMongo, free_port  # noqa: E402
from app.settings import Settings  # noqa: E402


async def follow(url: str, file: str) -> tuple[list[float], dict]:
    times: list[float] = []
    async with (
        httpx.AsyncClient(base_url=url, timeout=None) as http,
        http.stream("GET", "/import/progress/stream") as r,
    ):
        lines = r.aiter_lines()
        event = None
        started = False
        async for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event:
                data = json.loads(line[6:])
                if not started:  # the snapshot: now start the import
                    started = True
                    response = await http.post("/import/sync", json={"filePath": file})
                    assert response.status_code == 202, response.text
                elif event == "progress":
                    times.append(time.monotonic())
                elif event == "done":
                    return times, data
                event = None
    raise RuntimeError("the stream ended before done")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="measure-stream-"))
    (work / "imports").mkdir()
    generate = [sys.executable, str(ROOT / "scripts" / "generate_customers.py"), "--rows", str(args.rows)]
    subprocess.run([*generate, "--out", str(work / "imports" / "c.csv")], check=True, stdout=subprocess.DEVNULL)
    with EmbeddedMongo(work / "db", free_port(), log_level="ERROR") as server:
        settings = Settings(mongodb_uri=server.uri, data_dir=str(work), import_dir=str(work / "imports"))
        port = free_port()
        config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        uv = uvicorn.Server(config)
        threading.Thread(target=uv.run, daemon=True).start()
        while not uv.started:
            time.sleep(0.05)
        times, final = asyncio.run(follow(f"http://127.0.0.1:{port}", "c.csv"))
        uv.should_exit = True
    span = times[-1] - times[0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    print(
        f"{final['rowsProcessed']:,} rows in {final['activeSec']:.1f} s: {len(times)} progress events over "
        f"{span:.1f} s = {len(times) / span:.2f}/s; longest gap {max(gaps):.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
