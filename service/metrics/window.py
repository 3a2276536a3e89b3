"""Latency and throughput of one variant over the last minutes, kept in this process.

The trade-off page must work without Prometheus, so each variant keeps a ring of fixed-width time slots
(requests, rows and a latency sketch per slot). Recording touches one slot, with no lock: the event loop is
the only writer and the only reader. A slot older than the horizon is reused, so memory stays fixed.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from service.routing.tally import latency_bucket, latency_quantiles

SLOT_S = 5
HORIZON_S = 900  # the longest window a reader may ask for: 15 minutes
DEFAULT_WINDOW_S = 300


@dataclass(frozen=True, slots=True)
class WindowSummary:
    window_s: float  # the span the rates are over: the window asked for, even just after start-up, so two
    # reads with no traffic between them give the same numbers
    requests: int
    rows: int
    latency_seconds: dict[str, float | None]  # p50, p95, p99 of request latency

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.window_s

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.window_s

    def to_json(self) -> dict[str, object]:
        return {
            "window_s": self.window_s,
            "requests": self.requests,
            "rows": self.rows,
            "requests_per_second": self.requests_per_second,
            "rows_per_second": self.rows_per_second,
            "latency_seconds": self.latency_seconds,
        }


class LiveWindow:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, slot_s: int = SLOT_S, horizon_s: int = HORIZON_S
    ) -> None:
        self._clock = clock
        self._slot_s = slot_s
        size = math.ceil(horizon_s / slot_s) + 1  # one more: the slot being filled is partial
        self._numbers = [-1] * size  # which slot of time each position holds now
        self._requests = [0] * size
        self._rows = [0] * size
        self._latency: list[Counter[int]] = [Counter() for _ in range(size)]

    def record(self, seconds: float, rows: int) -> None:
        """One successful request: its latency and how many rows it carried."""
        number = int(self._clock() // self._slot_s)
        position = number % len(self._numbers)
        if self._numbers[position] != number:  # the slot this position held is older than the horizon
            self._numbers[position] = number
            self._requests[position] = self._rows[position] = 0
            self._latency[position].clear()
        self._requests[position] += 1
        self._rows[position] += rows
        self._latency[position][latency_bucket(seconds)] += 1

    def summary(self, window_s: float) -> WindowSummary:
        """What the last ``window_s`` seconds (whole slots, at most the horizon) served."""
        now = self._clock()
        current = int(now // self._slot_s)
        slots = min(math.ceil(window_s / self._slot_s), len(self._numbers) - 1)
        oldest = current - slots + 1
        requests = rows = 0
        latency: Counter[int] = Counter()
        for position, number in enumerate(self._numbers):
            if oldest <= number <= current:
                requests += self._requests[position]
                rows += self._rows[position]
                latency.update(self._latency[position])
        return WindowSummary(window_s, requests, rows, latency_quantiles(latency))
