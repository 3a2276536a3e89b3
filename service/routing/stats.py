"""Statistics for the experiment verdict: Wilson intervals and a one-sided non-inferiority test.

Non-inferiority of a variant against the reference at margin δ: H0: p_v ≤ p_r − δ against H1: p_v > p_r − δ,
a Wald z-test on the difference of two independent proportions (unpooled variance), as statsmodels'
``test_proportions_2indep(..., value=-δ, method="wald", alternative="larger")`` computes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm

ALPHA = 0.05


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    if trials == 0:
        return (0.0, 1.0)
    z = float(norm.ppf(1 - (1 - confidence) / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def _z(correct_v: int, n_v: int, correct_r: int, n_r: int, margin: float) -> float:
    p_v, p_r = correct_v / n_v, correct_r / n_r
    difference = p_v - p_r + margin
    variance = p_v * (1 - p_v) / n_v + p_r * (1 - p_r) / n_r
    if variance == 0:
        return math.inf if difference > 0 else -math.inf if difference < 0 else 0.0
    return difference / math.sqrt(variance)


def non_inferiority_p_value(correct_v: int, n_v: int, correct_r: int, n_r: int, margin: float) -> float:
    """p-value of H0 'the variant is worse than the reference by more than ``margin``'."""
    return float(norm.sf(_z(correct_v, n_v, correct_r, n_r, margin)))


def inferiority_p_value(correct_v: int, n_v: int, correct_r: int, n_r: int, margin: float) -> float:
    """p-value of H0 'the variant is within ``margin`` of the reference or better'."""
    return float(norm.cdf(_z(correct_v, n_v, correct_r, n_r, margin)))


@dataclass(frozen=True)
class Verdict:
    verdict: str  # "non-inferior" | "inferior" | "not enough data"
    p_value: float | None


def verdict(correct_v: int, n_v: int, correct_r: int, n_r: int, margin: float, min_samples: int) -> Verdict:
    if n_v < min_samples or n_r < min_samples:
        return Verdict("not enough data", None)
    p_value = non_inferiority_p_value(correct_v, n_v, correct_r, n_r, margin)
    if p_value < ALPHA:
        return Verdict("non-inferior", p_value)
    if inferiority_p_value(correct_v, n_v, correct_r, n_r, margin) < ALPHA:
        return Verdict("inferior", p_value)
    return Verdict("not enough data", p_value)
