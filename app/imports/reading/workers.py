"""Parser worker processes: a forkserver pool whose workers exit when the app that owns them is gone.

After kill -9 of the app, pool workers (children of the forkserver, not of the app) would otherwise wait
forever on their call queue, keeping the forkserver alive too.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from app.imports.model import Parsed, ParseSpec
from app.imports.reading import parse

TAIL = 64  # bytes of a block's end the app sends along, to notice a file rewritten under the import


def _init_worker(owner: int, nice: int, interval: float = 1.0) -> None:
    """Lower this worker's CPU priority (parsing is background work: on a 2-core machine the app's event loop
    and the database must not wait for it), and exit when the owner is gone."""
    if nice:
        os.nice(nice)

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(owner, 0)
            except ProcessLookupError:
                os._exit(0)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="owner-watch", daemon=True).start()


def parse_range(path: str, start: int, end: int, first_line: int, tail: bytes, spec: ParseSpec) -> Parsed:
    """Parse bytes start..end of the file, read here, in the worker, from the page cache: the app read them
    (with aiofiles) to find the record boundaries, and sends offsets, not megabytes through a pipe."""
    with open(path, "rb") as file:
        data = os.pread(file.fileno(), end - start, start)
    if len(data) != end - start or not data.endswith(tail):
        name = os.path.basename(path)  # no server path in an error (docs/architecture.md)
        return Parsed(fatal=f"{name} changed while it was being imported (bytes {start}..{end} differ)")
    return parse.parse_block(data, first_line, spec)


def parser_pool(workers: int, nice: int = 0) -> ProcessPoolExecutor:
    """Worker processes from a forkserver (PyMongo is not fork-safe, so never plain fork)."""
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_init_worker,
        initargs=(os.getpid(), nice),
    )


async def warm_up(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now (they start lazily), so an import's first blocks are parsed at full speed."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, parse.warm_up) for _ in range(workers)))
