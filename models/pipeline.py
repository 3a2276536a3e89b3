"""The offline build: data -> teacher -> scratch student -> distilled student -> int8 -> export -> publish.

Idempotent: when the latest version of every variant already carries the current recipe digest, nothing is
trained and nothing is published (unless ``force``).
"""

from __future__ import annotations

import datetime
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import architectures, registry
from models.data import Dataset, load_dataset
from models.distill import distill
from models.evaluate import evaluate_artifact
from models.export import export_torchscript
from models.quantize import check_engine_supported, quantize_dynamic_linear, quantize_static
from models.recipes import Recipe, default_recipe
from models.train import TrainConfig, fit

log = logging.getLogger(__name__)

TEACHER = "teacher-fp32"
SCRATCH = "student-scratch-fp32"
STUDENT = "student-fp32"
DYNAMIC = "student-int8-dynamic"
LABELS = [str(i) for i in range(10)]
SIGNATURE = {
    "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
    "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}],
}


def static_variant(engine: str) -> str:
    return f"student-int8-{engine}"


def variants(recipe: Recipe) -> list[str]:
    names = [TEACHER, SCRATCH, STUDENT, *(static_variant(e) for e in recipe.quantization_engines)]
    return [*names, DYNAMIC] if recipe.dynamic_int8 else names


@dataclass
class VariantResult:
    variant: str
    name: str
    version: int
    metrics: dict[str, Any]


@dataclass
class BuildResult:
    family: str
    recipe_digest: str
    up_to_date: bool
    variants: list[VariantResult] = field(default_factory=list)
    seconds: float = 0.0

    def metrics(self, variant: str) -> dict[str, Any]:
        return next(v.metrics for v in self.variants if v.variant == variant)

    def table(self) -> str:
        """variant, accuracy, Δ vs teacher, bytes, × smaller, latency p50, × faster (vs the teacher)."""
        teacher = self.metrics(TEACHER)
        rows = [
            "| variant | version | accuracy | Δ vs teacher (pt) | bytes | × smaller | latency p50 (ms) | × faster |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for v in self.variants:
            m = v.metrics
            rows.append(
                f"| {v.variant} | {v.version} | {m['accuracy'] * 100:.2f}% "
                f"| {(m['accuracy'] - teacher['accuracy']) * 100:+.2f} | {m['bytes']:,} "
                f"| {teacher['bytes'] / m['bytes']:.1f} | {m['latency_p50_batch1_seconds'] * 1e3:.3f} "
                f"| {teacher['latency_p50_batch1_seconds'] / m['latency_p50_batch1_seconds']:.1f} |"
            )
        return "\n".join(rows)


@dataclass
class _Trained:
    """One variant ready to publish: its bare network, the engine it is quantized for, its lineage."""

    variant: str
    net: nn.Module
    architecture: str
    parameters: int
    engine: str | None = None
    method: str | None = None
    parent: str | None = None


def train_config(recipe: Recipe, epochs: int, seed: int, *, mixup_alpha: float) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        patience=recipe.patience,
        shift_pixels=recipe.shift_pixels,
        mixup_alpha=mixup_alpha,
        seed=seed,
    )


def _seeded(reference: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return architectures.build(reference)


def _stage(name: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    log.info("%s done in %.1f s", name, time.perf_counter() - start)
    return result


def train_variants(recipe: Recipe, data: Dataset, *, progress: bool) -> list[_Trained]:
    """Train the teacher, the scratch and the distilled student, then quantize the distilled one."""
    train = data.train.head(recipe.limit)
    teacher = _seeded(recipe.teacher_architecture, recipe.seed)
    teacher_config = train_config(
        recipe, recipe.teacher_epochs, recipe.seed, mixup_alpha=recipe.teacher_mixup_alpha
    )
    _stage(
        "teacher",
        lambda: fit(teacher, train, data.validation, teacher_config, name="teacher", progress=progress),
    )
    # Both students start from the same weights and see the same batches: only the teacher differs.
    student_config = train_config(
        recipe, recipe.student_epochs, recipe.seed + 1, mixup_alpha=recipe.mixup_alpha
    )
    scratch = _seeded(recipe.student_architecture, recipe.seed + 1)
    _stage(
        "scratch",
        lambda: fit(scratch, train, data.validation, student_config, name="scratch", progress=progress),
    )
    student = _seeded(recipe.student_architecture, recipe.seed + 1)
    _stage(
        "distillation",
        lambda: distill(
            student, teacher, train, data.validation, student_config,
            T=recipe.kd_temperature, alpha=recipe.kd_alpha, progress=progress,
        ),
    )  # fmt: skip
    params_t, params_s = architectures.count_parameters(teacher), architectures.count_parameters(student)
    trained = [
        _Trained(TEACHER, teacher, recipe.teacher_architecture, params_t),
        _Trained(SCRATCH, scratch, recipe.student_architecture, params_s),
        _Trained(STUDENT, student, recipe.student_architecture, params_s, parent=TEACHER),
    ]
    calibration = architectures.normalise(torch.from_numpy(train.images[: recipe.calibration_samples]))
    for engine in recipe.quantization_engines:
        int8 = quantize_static(student, calibration, engine)
        trained.append(
            _Trained(
                static_variant(engine), int8, recipe.student_architecture, params_s, engine, "static", STUDENT
            )
        )
    if recipe.dynamic_int8:
        engine = recipe.quantization_engines[0] if recipe.quantization_engines else "x86"
        int8 = quantize_dynamic_linear(student, engine)
        trained.append(
            _Trained(DYNAMIC, int8, recipe.student_architecture, params_s, engine, "dynamic", STUDENT)
        )
    return trained


def _card(
    recipe: Recipe, data: Dataset, digest: str, item: _Trained, parent: VariantResult | None
) -> dict[str, Any]:
    quantization = None
    if item.engine is not None:
        samples = recipe.calibration_samples if item.method == "static" else 0
        quantization = {"engine": item.engine, "method": item.method, "calibration_samples": samples}
    return {
        "family": recipe.family,
        "variant": item.variant,
        "name": f"{recipe.family}-{item.variant}",
        "version": 0,  # set by registry.publish
        "precision": "int8" if item.engine else "fp32",
        "quantization": quantization,
        "architecture": item.architecture,
        "hyperparameters": recipe.fields(),
        "parent": None if parent is None else {"name": parent.name, "version": parent.version},
        "dataset": data.card(),
        "recipe_digest": digest,
        "seed": recipe.seed,
        "metrics": {},
        "signature": SIGNATURE,
        "labels": LABELS,
        "max_batch_size": recipe.max_batch_size,
        "files": {},
        "torch_version": torch.__version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def existing_if_current(registry_path: Path, recipe: Recipe, digest: str) -> list[VariantResult] | None:
    """The latest versions of every variant if they were all built from ``digest``; otherwise None."""
    results = []
    for variant in variants(recipe):
        name = f"{recipe.family}-{variant}"
        try:
            directory = registry.version_dir(registry_path, name)
            card = registry.read_card(directory)
        except registry.RegistryError:
            return None
        if card.get("recipe_digest") != digest:
            return None
        results.append(VariantResult(variant, name, int(card["version"]), card.get("metrics", {})))
    return results


def resolve_recipe(
    family: str, recipe: Recipe | None, *, epochs: int | None, limit: int | None, seed: int | None
) -> Recipe:
    base = recipe if recipe is not None else default_recipe(family)
    if base.family != family:
        raise ValueError(f"recipe is for family {base.family!r}, not {family!r}")
    return base.with_overrides(epochs=epochs, limit=limit, seed=seed)


def build(
    family: str,
    registry_path: Path,
    *,
    recipe: Recipe | None = None,
    data_dir: Path | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    seed: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> BuildResult:
    start = time.perf_counter()
    recipe = resolve_recipe(family, recipe, epochs=epochs, limit=limit, seed=seed)
    for engine in recipe.quantization_engines:
        check_engine_supported(engine)
    for reference in {recipe.teacher_architecture, recipe.student_architecture}:
        architectures.resolve(reference)
    data = load_dataset(data_dir)
    digest = recipe.digest(data.digest, data.split_digest)
    current = None if force else existing_if_current(registry_path, recipe, digest)
    if current is not None:
        log.info("%s: up to date (recipe %s)", family, digest[:12])
        return BuildResult(family, digest, True, current, time.perf_counter() - start)
    trained = train_variants(recipe, data, progress=progress)
    published = _publish_all(registry_path, recipe, data, digest, trained)
    result = BuildResult(family, digest, False, published, time.perf_counter() - start)
    log.info("%s: built in %.1f s\n%s", family, result.seconds, result.table())
    return result


def _publish_all(
    registry_path: Path, recipe: Recipe, data: Dataset, digest: str, trained: list[_Trained]
) -> list[VariantResult]:
    published: dict[str, VariantResult] = {}
    teacher_predictions: torch.Tensor | None = None
    example = torch.from_numpy(data.test.images[:8])
    with tempfile.TemporaryDirectory(prefix="slimserve-build-") as work:
        for item in trained:
            path = Path(work) / item.variant / registry.MODEL_FILE
            path.parent.mkdir()
            export_torchscript(item.net, path, example, engine=item.engine)
            metrics, predictions = evaluate_artifact(
                path, data.test, teacher_predictions=teacher_predictions, parameters=item.parameters,
                engine=item.engine, fast=recipe.limit is not None,
            )  # fmt: skip
            if item.variant == TEACHER:
                teacher_predictions = predictions
            parent = published.get(item.parent) if item.parent else None
            card = {**_card(recipe, data, digest, item, parent), "metrics": metrics}
            version = registry.publish(registry_path, card, {registry.MODEL_FILE: path})
            published[item.variant] = VariantResult(item.variant, str(card["name"]), version, metrics)
            log.info("published %s:%d accuracy %.4f", card["name"], version, metrics["accuracy"])
    return list(published.values())
