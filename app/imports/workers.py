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

from app.imports import parse


def _exit_with_owner(owner: int, interval: float = 1.0) -> None:
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


def parser_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes from a forkserver (PyMongo is not fork-safe, so never plain fork)."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"),
                               initializer=_exit_with_owner, initargs=(os.getpid(),))


async def warm_up(pool: ProcessPoolExecutor, workers: int) -> None:
    """Start every worker now (they start lazily), so an import's first blocks are parsed at full speed."""
    loop = asyncio.get_running_loop()
    await asyncio.gather(*(loop.run_in_executor(pool, parse.warm_up) for _ in range(workers)))
