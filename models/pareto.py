"""The Pareto frontier of a family's variants: which are worth serving for accuracy against a cost.

A variant is dominated when another is at least as accurate *and* at least as cheap, and strictly better in
one of the two. The frontier is what is left: every variant on it is the most accurate at its cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Point:
    variant: str
    accuracy: float  # higher is better
    cost: float  # lower is better: latency, bytes


def dominated_by(points: Sequence[Point]) -> dict[str, str]:
    """Each dominated variant and one variant that dominates it (the most accurate, then the cheapest)."""
    result = {}
    for point in points:
        better = [
            other
            for other in points
            if other.accuracy >= point.accuracy
            and other.cost <= point.cost
            and (other.accuracy > point.accuracy or other.cost < point.cost)
        ]
        if better:
            result[point.variant] = max(better, key=lambda other: (other.accuracy, -other.cost)).variant
    return result


def frontier(points: Sequence[Point]) -> list[Point]:
    """The undominated points, cheapest first."""
    dominated = dominated_by(points)
    return sorted((p for p in points if p.variant not in dominated), key=lambda p: (p.cost, -p.accuracy))


def plot(
    axes_points: Mapping[str, Sequence[Point]], path: Path, *, title: str, accuracy_label: str = "accuracy"
) -> None:
    """One panel per cost (e.g. "p50 latency, batch 1 (ms)", "bytes"), the frontier drawn as a step line."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(axes_points), figsize=(6.5 * len(axes_points), 5), squeeze=False)
    for panel, (cost_label, points) in zip(panels[0], axes_points.items(), strict=True):
        dominated = dominated_by(points)
        for point in points:
            on_frontier = point.variant not in dominated
            panel.scatter(point.cost, point.accuracy * 100, s=60 if on_frontier else 30,
                          color="tab:blue" if on_frontier else "tab:gray", zorder=3)  # fmt: skip
            panel.annotate(point.variant, (point.cost, point.accuracy * 100), fontsize=7,
                           xytext=(4, 3), textcoords="offset points")  # fmt: skip
        line = frontier(points)
        panel.step([p.cost for p in line], [p.accuracy * 100 for p in line], where="post", color="tab:blue",
                   linewidth=1, label="Pareto frontier")  # fmt: skip
        panel.set_xscale("log")
        panel.set_xlabel(f"{cost_label} (log scale)")
        panel.set_ylabel(f"{accuracy_label} (%)")
        panel.grid(True, which="both", alpha=0.3)
        panel.legend(loc="lower right", fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
