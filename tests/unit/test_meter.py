"""The rate over the last ten seconds, with a clock the test drives."""

from __future__ import annotations

import pytest

from app.imports.job.meter import Meter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_rate_follows_the_last_ten_seconds_not_the_whole_job() -> None:
    clock = Clock()
    meter = Meter(clock=clock)
    rows = 0
    for _ in range(60):  # a minute at 1,000 rows/s
        clock.now += 1
        rows += 1000
        meter.sample(rows, rows * 100)
    assert meter.rates() == (pytest.approx(1000), pytest.approx(100_000))
    for _ in range(12):  # then 12 s at 100 rows/s: the whole-job average would still say about 830
        clock.now += 1
        rows += 100
        meter.sample(rows, rows * 100)
    rows_per_sec, _ = meter.rates()
    assert rows_per_sec == pytest.approx(100, rel=0.15)


def test_no_rate_until_the_samples_span_half_a_second() -> None:
    clock = Clock()
    meter = Meter(clock=clock)
    meter.sample(0, 0)
    clock.now = 0.2
    meter.sample(500, 5000)
    assert meter.rates() == (0.0, 0.0)
    clock.now = 1.0
    meter.sample(1000, 10_000)
    assert meter.rates() == (1000.0, 10_000.0)
