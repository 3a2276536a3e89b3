"""Two PNGs per run: latency over time per variant, and the trade-off (online accuracy against p99).

matplotlib's Agg backend renders to files without a display, so the command runs on servers and in CI.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after choosing the backend
import numpy as np

from loadtests.report import UNROUTED, Report, Sample


def latency_over_time(samples: list[Sample], path: Path, bin_s: float = 1.0) -> None:
    """p50 (solid) and p99 (dashed) per variant in ``bin_s`` windows since the first request."""
    ok = [s for s in samples if s.ok and s.kind != "feedback" and s.variant != UNROUTED]
    origin = min((s.start for s in ok), default=0.0)
    windows: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for sample in ok:
        windows[sample.variant][int((sample.start - origin) // bin_s)].append(sample.ms)
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for index, variant in enumerate(sorted(windows)):
        color = f"C{index}"
        bins = sorted(windows[variant])
        x = [(b + 0.5) * bin_s for b in bins]
        axes.plot(
            x, [np.percentile(windows[variant][b], 50) for b in bins], color=color, label=f"{variant} p50"
        )
        axes.plot(x, [np.percentile(windows[variant][b], 99) for b in bins], color=color, linestyle="--",
                  label=f"{variant} p99")  # fmt: skip
    axes.set(
        xlabel="seconds since the first request", ylabel="latency (ms)", title="Latency over time per variant"
    )
    axes.set_yscale("log")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def trade_off(report: Report, path: Path) -> None:
    """One point per variant with traffic and labels: online accuracy against p99, area by model bytes."""
    rows = [r for r in report.rows if r.p99_ms is not None and r.online_accuracy is not None]
    figure, axes = plt.subplots(figsize=(7, 5))
    largest = max((r.model_bytes or 0.0 for r in rows), default=0.0) or 1.0
    for index, row in enumerate(rows):
        size = 60 + 1400 * (row.model_bytes or 0.0) / largest
        assert row.p99_ms is not None and row.online_accuracy is not None
        axes.scatter(
            row.p99_ms, row.online_accuracy * 100, s=size, color=f"C{index}", alpha=0.6, edgecolors="k"
        )
        mib = (row.model_bytes or 0.0) / 2**20
        axes.annotate(f"{row.variant}\n{mib:.2f} MiB, n={row.labelled}", (row.p99_ms, row.online_accuracy * 100),
                      textcoords="offset points", xytext=(8, 8), fontsize="small")  # fmt: skip
    axes.set(xlabel="p99 latency (ms, client)", ylabel="online accuracy (%)",
             title="Trade-off: accuracy against p99 (marker area: model bytes)")  # fmt: skip
    axes.grid(True, alpha=0.3)
    axes.margins(0.25)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
