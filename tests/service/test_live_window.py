"""The in-process window behind the trade-off page's latency and throughput, on a clock the test moves."""

from __future__ import annotations

import dataclasses

import pytest

from service.metrics.window import LiveWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_rates_and_quantiles_over_the_window() -> None:
    clock = Clock()
    window = LiveWindow(clock, slot_s=5, horizon_s=60)
    latencies = [0.001] * 98 + [0.1, 0.1]
    for seconds in latencies:
        window.record(seconds, rows=2)
    summary = window.summary(30)
    assert (summary.requests, summary.rows) == (100, 200)
    assert summary.requests_per_second == pytest.approx(100 / 30)
    assert summary.rows_per_second == pytest.approx(200 / 30)
    assert summary.latency_seconds["p50"] == pytest.approx(0.001, rel=0.1)
    assert summary.latency_seconds["p99"] == pytest.approx(0.1, rel=0.1)


def test_old_traffic_leaves_the_window_and_the_ring_reuses_its_slots() -> None:
    clock = Clock()
    window = LiveWindow(clock, slot_s=5, horizon_s=60)
    window.record(0.5, 1)
    clock.now += 20
    window.record(0.002, 1)
    assert window.summary(10).requests == 1  # the first request is 20 s old
    assert window.summary(60).requests == 2
    assert window.summary(10).latency_seconds["p99"] == pytest.approx(0.002, rel=0.1)
    clock.now += 3600  # an hour later every slot has expired, and new traffic reuses them
    assert window.summary(60).requests == 0
    assert window.summary(60).latency_seconds == {"p50": None, "p95": None, "p99": None}
    window.record(0.003, 1)
    assert window.summary(60).requests == 1


def test_a_window_longer_than_the_horizon_reads_the_horizon() -> None:
    clock = Clock()
    window = LiveWindow(clock, slot_s=5, horizon_s=30)
    for _ in range(10):
        window.record(0.01, 1)
        clock.now += 10
    assert window.summary(30).requests == 2  # six 5 s slots, the current one included: the last two requests
    assert window.summary(10_000) == dataclasses.replace(window.summary(30), window_s=10_000)
