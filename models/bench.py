"""The compression benchmark: build a family's recipe with several seeds and report against the targets.

Each seed is a full, forced build into a throw-away registry; the report gives mean ± std per variant and
states every quality target as PASS or MISS with its margin, so regressions are visible in review.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from models.artifacts import INT8_ONNX, INT8_OPENVINO, SCRATCH, STUDENT, TEACHER, TEACHER_ONNX, static_variant
from models.pipeline import BuildResult, build
from models.spec import FamilySpec, builtin_spec

METRICS = (
    ("accuracy", "accuracy (%)", 100.0, ".2f"),
    ("bytes", "bytes", 1.0, ",.0f"),
    ("latency_p50_batch1_seconds", "latency p50 b1 (ms)", 1e3, ".3f"),
    ("throughput_batch32_per_second", "throughput b32 (/s)", 1.0, ",.0f"),
)
INT8 = static_variant("x86")
QNNPACK = static_variant("qnnpack")


@dataclass(frozen=True)
class Target:
    description: str
    value: float
    threshold: float
    unit: str

    @property
    def passed(self) -> bool:
        return self.value >= self.threshold

    def line(self) -> str:
        if math.isnan(self.value):  # e.g. no teacher–scratch gap to close
            return f"- **N/A** {self.description}: not measurable in this run"
        verdict = "PASS" if self.passed else "MISS"
        return (
            f"- **{verdict}** {self.description}: {self.value:.3g}{self.unit} "
            f"(target ≥ {self.threshold:.3g}{self.unit}, margin {self.value - self.threshold:+.3g}{self.unit})"
        )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def gap_closed(teacher: float, scratch: float, kd: float) -> float:
    """Fraction of the teacher-scratch accuracy gap the distilled student closes (nan without a gap)."""
    gap = teacher - scratch
    return (kd - scratch) / gap if gap > 0 else float("nan")


def reference_teacher(results: Sequence[BuildResult]) -> str:
    """The TorchScript teacher, or the ONNX one when the family has no TorchScript teacher."""
    return TEACHER if any(v.variant == TEACHER for v in results[0].variants) else TEACHER_ONNX


def targets(results: Sequence[BuildResult], reference: str = INT8) -> list[Target]:
    """The quality targets, against ``reference`` (the family's default int8 variant); a target whose
    variants the family does not build is left out."""
    built = {v.variant for v in results[0].variants}
    teacher = reference_teacher(results)

    def mean(variant: str, metric: str) -> float:
        return statistics.fmean(float(r.metrics(variant)[metric]) for r in results)

    def accuracy(variant: str) -> float:
        return mean(variant, "accuracy") * 100

    def throughput_ratio(variant: str) -> float:
        return throughput_ratios(results, reference)[variant]

    short = "x86" if reference == INT8 else reference
    # On the mean accuracies: a per-seed ratio is undefined whenever a seed's teacher does not beat its scratch.
    gap = gap_closed(accuracy(teacher), accuracy(SCRATCH), accuracy(STUDENT))
    found = [
        Target(
            "int8 student accuracy vs teacher − 1.0 pt", accuracy(reference) - accuracy(teacher), -1.0, " pt"
        ),
        Target("KD closes the teacher–scratch gap (on mean accuracies)", gap * 100, 50.0, "%"),
        Target(
            "int8 student size reduction vs teacher",
            mean(teacher, "bytes") / mean(reference, "bytes"),
            20.0,
            "×",
        ),
        Target(
            "int8 batch-32 throughput vs teacher",
            mean(reference, "throughput_batch32_per_second") / mean(teacher, "throughput_batch32_per_second"),
            10.0,
            "×",
        ),
    ]
    found += [
        Target(f"{'qnnpack' if name == QNNPACK else name} accuracy within 0.3 pt of {short}",
               0.0 - abs(accuracy(name) - accuracy(reference)), -0.3, " pt")
        for name in (QNNPACK, INT8_ONNX, INT8_OPENVINO) if name in built and name != reference
    ]  # fmt: skip
    if INT8_OPENVINO in built:
        target = "torch x86 int8" if reference == INT8 else reference
        found.append(
            Target(
                f"OpenVINO int8 batch-32 throughput vs {target}", throughput_ratio(INT8_OPENVINO), 1.5, "×"
            )
        )
    return found


def throughput_ratios(results: Sequence[BuildResult], reference: str = INT8) -> dict[str, float]:
    """Every variant's mean batch-32 throughput over the reference's (measured in the same run)."""
    reference_value = statistics.fmean(
        float(r.metrics(reference)["throughput_batch32_per_second"]) for r in results
    )
    return {
        v.variant: statistics.fmean(
            float(r.metrics(v.variant)["throughput_batch32_per_second"]) for r in results
        )
        / reference_value
        for v in results[0].variants
    }


def report(family: str, results: Sequence[BuildResult], command: str, reference: str = INT8) -> str:
    variants = [v.variant for v in results[0].variants]
    header = "| variant | " + " | ".join(label for _, label, _, _ in METRICS) + " |"
    lines = [
        f"# Compression benchmark: {family}",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__}; "
        f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}",
        "",
        f"Seeds: {len(results)} (mean ± std); build time per seed "
        f"{statistics.fmean(r.seconds for r in results):.0f} s. Latency and throughput: 1 intra-op thread, on the "
        "published artifact through the runner the service uses (TorchScript, ONNX Runtime or OpenVINO).",
        "",
        header,
        "|---" * (len(METRICS) + 1) + "|",
    ]
    for variant in variants:
        cells = []
        for key, _, scale, fmt in METRICS:
            mean, std = mean_std([float(r.metrics(variant)[key]) * scale for r in results])
            cells.append(f"{mean:{fmt}} ± {std:{fmt}}")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    gaps = [
        gap_closed(
            r.metrics(reference_teacher(results))["accuracy"],
            r.metrics(SCRATCH)["accuracy"],
            r.metrics(STUDENT)["accuracy"],
        )
        for r in results
    ]
    lines += [
        "",
        "KD gap closed per seed: "
        + ", ".join("n/a (no gap)" if math.isnan(g) else f"{g * 100:.0f}%" for g in gaps),
        "",
        f"Batch-32 throughput relative to {'the torch x86 int8 (TorchScript)' if reference == INT8 else reference}: "
        + ", ".join(f"{name} {ratio:.2f}×" for name, ratio in throughput_ratios(results, reference).items()),
        "",
        "## Targets",
        "",
    ]
    lines += [t.line() for t in targets(results, reference)]
    return "\n".join(lines) + "\n"


def bench(
    family: str | FamilySpec,
    seeds: int = 3,
    out: Path = Path("benchmarks/compression.md"),
    *,
    command: str = "",
) -> str:
    """Build the family's recipe once per seed (0..seeds-1) and write the markdown report to ``out``."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    spec = family if isinstance(family, FamilySpec) else builtin_spec(family)
    results = []
    with tempfile.TemporaryDirectory(prefix="slimserve-bench-") as scratch_registry:
        for seed in range(seeds):
            results.append(build(spec, Path(scratch_registry), seed=seed, force=True, progress=False))
    command = command or f"python -m models bench {spec.name} --seeds {seeds} --out {out}"
    text = report(spec.name, results, command, spec.serving.default_variant)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
