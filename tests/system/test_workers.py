"""Parser workers must not outlive an app killed with SIGKILL."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.processes import alive

ROOT = Path(__file__).resolve().parents[2]
OWNER = """
import time
from app.imports.reading.workers import parser_pool
pool = parser_pool(2)
list(pool.map(abs, [1, 2, 3]))
print(" ".join(map(str, pool._processes)), flush=True)
time.sleep(120)
"""


@pytest.mark.system
def test_workers_exit_when_the_app_is_killed() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(pid) for pid in owner.stdout.readline().split()]  # type: ignore[union-attr]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        owner.kill()
        owner.wait()
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in workers)
    finally:
        owner.kill()
        owner.wait()
        owner.stdout.close()  # type: ignore[union-attr]
