"""The compression benchmark's comparisons across methods: feature vs logit distillation, and the Pareto
frontier of accuracy against latency and against bytes (a table naming the dominated variants, and a plot)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from models.pareto import Point, dominated_by, plot
from models.pipeline import BuildResult

COSTS = {  # label: (card metric, scale, format)
    "p50 latency, batch 1 (ms)": ("latency_p50_batch1_seconds", 1e3, ",.3f"),
    "bytes": ("bytes", 1.0, ",.0f"),
}


def _mean(results: Sequence[BuildResult], variant: str, metric: str) -> float:
    return statistics.fmean(float(r.metrics(variant)[metric]) for r in results)


def distillation_comparison(results: Sequence[BuildResult], logit: str, hints: str) -> list[str]:
    """Logit KD against KD with FitNets hints, per seed and as mean ± std, whichever wins."""
    if not any(v.variant == hints for v in results[0].variants):
        return []
    per_seed = [(r.metrics(logit)["accuracy"] * 100, r.metrics(hints)["accuracy"] * 100) for r in results]
    differences = [h - g for g, h in per_seed]
    spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
    lines = [
        "## Feature distillation (hints) against logit distillation",
        "",
        "Same teacher, budget, initial weights and batches per seed; only the loss differs "
        "(hints: logit KD + β · MSE between the teacher's feature map and the student's through a 1×1 adapter).",
        "",
        "| seed | logit KD (%) | logit KD + hints (%) | hints − logit (pt) |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {seed} | {g:.2f} | {h:.2f} | {h - g:+.2f} |" for seed, (g, h) in enumerate(per_seed)]
    mean = statistics.fmean(differences)
    winner = "hints" if mean > 0 else "logit KD" if mean < 0 else "neither"
    lines += ["", f"Mean difference {mean:+.2f} ± {spread:.2f} pt over {len(per_seed)} seeds: {winner} ahead"
              + (" (within one standard deviation: not a reliable difference)." if abs(mean) <= spread else "."), ""]  # fmt: skip
    return lines


def frontier_section(results: Sequence[BuildResult], png: Path, family: str) -> str:
    """For each cost, the variants on the Pareto frontier and the dominated ones (with what dominates them)."""
    variants = [v.variant for v in results[0].variants]
    panels = {
        label: [Point(v, _mean(results, v, "accuracy"), _mean(results, v, metric) * scale) for v in variants]
        for label, (metric, scale, _) in COSTS.items()
    }
    lines = ["", "## Pareto frontier", "",
             f"Mean accuracy against each cost; a variant is dominated when another is at least as accurate and at "
             f"least as cheap, and better in one. Plot: `{png.name}`.", ""]  # fmt: skip
    for label, points in panels.items():
        dominated, fmt = dominated_by(points), COSTS[label][2]
        lines += [f"### Accuracy against {label}", "", "| variant | accuracy (%) | cost | on the frontier |",
                  "|---|---:|---:|---|"]  # fmt: skip
        for point in sorted(points, key=lambda p: p.cost):
            verdict = (
                f"no: dominated by {dominated[point.variant]}" if point.variant in dominated else "**yes**"
            )
            lines.append(f"| {point.variant} | {point.accuracy * 100:.2f} | {point.cost:{fmt}} | {verdict} |")
        lines.append("")
    plot(panels, png, title=f"{family}: accuracy against cost, mean of {len(results)} seeds")
    return "\n".join(lines)
