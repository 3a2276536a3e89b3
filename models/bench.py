"""The compression benchmark: build a family's recipe with several seeds and report against the targets.

Each seed is a full, forced build into a throw-away registry; the report gives mean ± std per variant and
states every quality target as PASS or MISS with its margin, so regressions are visible in review.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import platform
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from models import architectures
from models.artifacts import (
    HINTS,
    INT8_ONNX,
    INT8_OPENVINO,
    PRUNED,
    QAT_INT8_ONNX,
    SCRATCH,
    STUDENT,
    TEACHER,
    TEACHER_ONNX,
    static_variant,
)
from models.bench_frontier import distillation_comparison, frontier_section
from models.pipeline import BuildResult, build
from models.recipes import Recipe
from models.spec import FamilySpec, builtin_spec

METRICS = (
    ("accuracy", "accuracy (%)", 100.0, ".2f"),
    ("parameters", "parameters", 1.0, ",.0f"),
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
    found += method_targets(results, accuracy, mean, built)
    if INT8_OPENVINO in built:
        target = "torch x86 int8" if reference == INT8 else reference
        found.append(
            Target(
                f"OpenVINO int8 batch-32 throughput vs {target}", throughput_ratio(INT8_OPENVINO), 1.5, "×"
            )
        )
    return found


def method_targets(
    results: Sequence[BuildResult],
    accuracy: Callable[[str], float],
    mean: Callable[[str, str], float],
    built: set[str],
) -> list[Target]:
    """Issue 15's targets for the pruned and the QAT students, when the recipe builds them."""
    found = []
    teacher = reference_teacher(results)
    if PRUNED in built:
        smallest_pruned = min(
            (v for v in built if v.startswith("student-pruned-int8")), key=lambda v: mean(v, "bytes")
        )
        smallest_other = min(
            (v for v in built if not v.startswith("student-pruned")), key=lambda v: mean(v, "bytes")
        )
        found += [
            Target("pruned student: parameters of the distilled student over its own",
                   mean(STUDENT, "parameters") / mean(PRUNED, "parameters"), 2.0, "×"),
            Target("pruned student accuracy vs teacher − 1.0 pt", accuracy(PRUNED) - accuracy(teacher), -1.0, " pt"),
            Target(f"pruned int8 is the smallest variant: {smallest_other} bytes over {smallest_pruned}'s",
                   mean(smallest_other, "bytes") / mean(smallest_pruned, "bytes"), 1.0, "×"),
        ]  # fmt: skip
    if QAT_INT8_ONNX in built:
        found += [
            Target("QAT int8 (ONNX) accuracy vs post-training int8 (ONNX)",
                   accuracy(QAT_INT8_ONNX) - accuracy(INT8_ONNX), 0.0, " pt"),
            Target("QAT int8 (ONNX) accuracy within 0.2 pt of its fp32 parent",
                   accuracy(QAT_INT8_ONNX) - accuracy(STUDENT), -0.2, " pt"),
        ]  # fmt: skip
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
    ]
    lines += distillation_comparison(results, STUDENT, HINTS)
    lines += ["## Targets", ""]
    lines += [t.line() for t in targets(results, reference)]
    return "\n".join(lines) + "\n"


def hints_apply(recipe: Recipe) -> bool:
    """Both networks are built here and have the hint layer (an MLP family has no ``features`` block)."""
    if recipe.teacher_architecture.startswith("artifact:") or recipe.teacher_artifact:
        return False
    try:
        networks = [
            architectures.build(r) for r in (recipe.teacher_architecture, recipe.student_architecture)
        ]
    except architectures.ArchitectureError:
        return False
    return all(recipe.hint_layer in dict(net.named_modules()) for net in networks)


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
    recipe = spec.recipe()
    if "torchscript" in recipe.formats and recipe.distillation == "logit" and hints_apply(recipe):
        recipe = dataclasses.replace(recipe, distillation="logit+hints")  # hints beside logits, same budget
    results = []
    with tempfile.TemporaryDirectory(prefix="slimserve-bench-") as scratch_registry:
        for seed in range(seeds):
            results.append(
                build(spec, Path(scratch_registry), recipe=recipe, seed=seed, force=True, progress=False)
            )
    command = command or f"python -m models bench {spec.name} --seeds {seeds} --out {out}"
    text = report(spec.name, results, command, spec.serving.default_variant)
    text += frontier_section(results, out.with_suffix(".png"), spec.name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
