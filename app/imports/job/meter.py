"""Rows/s over about the last ten seconds, and the ETA it gives: what a user watching an import wants, where a
whole-job average would hide a slowdown (and count the time a job spent cancelled)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW = 10.0
MIN_SPAN = 0.5  # seconds of samples before a rate means anything


class Meter:
    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic):
        self.window, self.clock = window, clock
        self.samples: deque[tuple[float, int, int]] = deque(maxlen=1024)  # (time, rows, bytes)

    def sample(self, rows: int, bytes_read: int) -> None:
        now = self.clock()
        self.samples.append((now, rows, bytes_read))
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()  # keep one sample at or before the window's start

    def rates(self) -> tuple[float, float]:
        """(rows/s, bytes/s) between the oldest and the newest sample, 0 until they span MIN_SPAN."""
        if len(self.samples) < 2:
            return 0.0, 0.0
        (t0, rows0, bytes0), (t1, rows1, bytes1) = self.samples[0], self.samples[-1]
        span = t1 - t0
        if span < MIN_SPAN:
            return 0.0, 0.0
        return (rows1 - rows0) / span, (bytes1 - bytes0) / span
