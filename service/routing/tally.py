"""Running tallies per experiment and variant: traffic, latency, labelled accuracy, agreement."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

LATENCY_WINDOW = 10_000


@dataclass(slots=True)
class VariantTally:
    requests: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    labelled: int = 0
    correct: int = 0
    compared: int = 0  # rows compared against the reference through shadow traffic
    agreed: int = 0

    def latency_quantiles(self) -> dict[str, float | None]:
        if not self.latencies:
            return {"p50": None, "p95": None, "p99": None}
        p50, p95, p99 = np.percentile(np.fromiter(self.latencies, dtype=float), [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99)}


class Tallies:
    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str], VariantTally] = {}
        self.shadow_dropped: dict[str, int] = {}

    def of(self, experiment: str, variant: str) -> VariantTally:
        key = (experiment, variant)
        if key not in self._tallies:
            self._tallies[key] = VariantTally()
        return self._tallies[key]

    def variants(self, experiment: str) -> list[str]:
        return [variant for name, variant in self._tallies if name == experiment]
