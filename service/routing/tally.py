"""Running tallies per experiment and variant: traffic, latency, labelled accuracy, agreement.

Latency is kept as a sketch of counts in log-spaced buckets (about 9 % apart) rather than raw samples: counts
add up across replicas and restarts, so a shared store holds the same sketch the in-process one does.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LATENCY_FLOOR_S = 1e-6
BUCKETS_PER_DOUBLING = 8
LATENCY_BUCKETS = 240  # 1 µs × 2**(240/8) ≈ 18 min: every plausible latency has its own bucket
COUNTS = ("requests", "rows", "labelled", "correct", "compared", "agreed", "kl_micronats", "errors")
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
STAGE_SEPARATOR = "/"  # a cascade stage's tally is "<arm>/<stage>"


def latency_bucket(seconds: float) -> int:
    if seconds <= LATENCY_FLOOR_S:
        return 0
    index = int(math.log2(seconds / LATENCY_FLOOR_S) * BUCKETS_PER_DOUBLING)
    return min(index, LATENCY_BUCKETS - 1)


def bucket_midpoint(index: int) -> float:
    """The geometric middle of a bucket: what a quantile falling in it reports."""
    return LATENCY_FLOOR_S * 2 ** ((index + 0.5) / BUCKETS_PER_DOUBLING)


def latency_quantiles(counts: Mapping[int, int]) -> dict[str, float | None]:
    """p50, p95 and p99 of a latency sketch (bucket index -> requests); None for an empty sketch."""
    total = sum(counts.values())
    quantiles: dict[str, float | None] = dict.fromkeys(name for name, _ in QUANTILES)
    if not total:
        return quantiles
    ordered = sorted(counts.items())
    for name, q in QUANTILES:
        rank, seen = q * total, 0
        for index, count in ordered:
            seen += count
            if seen >= rank:
                quantiles[name] = bucket_midpoint(index)
                break
    return quantiles


@dataclass(slots=True)
class VariantTally:
    requests: int = 0
    rows: int = 0  # rows of the requests answered (a cascade's stages split a request's rows)
    labelled: int = 0
    correct: int = 0
    compared: int = 0  # rows compared against the reference through shadow traffic
    agreed: int = 0
    kl_micronats: int = (
        0  # KL(reference ‖ variant) summed over compared rows, in µnats: an integer, like the rest
    )
    errors: int = 0  # requests assigned here that failed (a rollout's error-rate gate)
    latency: Counter[int] = field(default_factory=Counter)  # bucket index -> requests

    @property
    def accuracy(self) -> float | None:
        """Online accuracy on the labelled rows; None before any label."""
        return self.correct / self.labelled if self.labelled else None

    def add(self, counts: dict[str, int]) -> None:
        for name, value in counts.items():
            setattr(self, name, getattr(self, name) + value)

    def latency_quantiles(self) -> dict[str, float | None]:
        return latency_quantiles(self.latency)


@dataclass(slots=True)
class ExperimentTallies:
    """One experiment's tallies as a report reads them: per variant, plus the shadow copies dropped."""

    variants: dict[str, VariantTally] = field(default_factory=dict)
    shadow_dropped: int = 0

    def of(self, variant: str) -> VariantTally:
        return self.variants.setdefault(variant, VariantTally())


def tally_fields(tally: VariantTally) -> dict[str, Any]:
    """A tally as JSON: its counts and its latency buckets (a rollout's baseline is kept so)."""
    return {**{name: getattr(tally, name) for name in COUNTS},
            "latency": {str(index): count for index, count in tally.latency.items()}}  # fmt: skip


def tally_from(fields: dict[str, Any]) -> VariantTally:
    tally = VariantTally()
    tally.add({name: int(fields.get(name, 0)) for name in COUNTS})
    tally.latency.update({int(index): int(count) for index, count in fields.get("latency", {}).items()})
    return tally


def since(now: VariantTally, then: VariantTally) -> VariantTally:
    """What was counted after ``then``; everything in ``now`` when the tallies started again since (an
    in-process store restarted) and ``then`` is no earlier moment of ``now``."""
    if any(getattr(now, name) < getattr(then, name) for name in COUNTS):
        return now
    window = VariantTally()
    window.add({name: getattr(now, name) - getattr(then, name) for name in COUNTS})
    window.latency = now.latency - then.latency
    return window
