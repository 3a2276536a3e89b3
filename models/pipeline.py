"""The offline build: data -> teacher -> scratch student -> distilled student -> int8 -> export -> publish.

Idempotent: when the latest version of every variant already carries the current recipe digest, nothing is
trained and nothing is published (unless ``force``).
"""

from __future__ import annotations

import datetime
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract import layout
from contract.engines import check_engine_supported
from contract.publish import draft_version, publish
from models import architectures
from models.artifacts import (
    DYNAMIC,
    LABELS,
    SCRATCH,
    SIGNATURE,
    STUDENT,
    TEACHER,
    TEACHER_ONNX,
    Planned,
    Trained,
    check_gate,
    library_versions,
    plan,
    reference_logits,
    static_variant,
    variants,
)
from models.cascade import cascade_choices
from models.data import Dataset, load_dataset
from models.distill import distill
from models.evaluate import evaluate_version
from models.quantize import quantize_dynamic_linear, quantize_static
from models.recipes import Recipe, default_recipe
from models.train import TrainConfig, fit

log = logging.getLogger(__name__)

__all__ = ["STUDENT", "TEACHER", "BuildResult", "VariantResult", "build", "static_variant", "variants"]


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
        teacher = self.metrics(TEACHER if any(v.variant == TEACHER for v in self.variants) else TEACHER_ONNX)
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


def train_variants(recipe: Recipe, data: Dataset, *, progress: bool) -> dict[str, Trained]:
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
        Trained(TEACHER, teacher, recipe.teacher_architecture, params_t),
        Trained(SCRATCH, scratch, recipe.student_architecture, params_s),
        Trained(STUDENT, student, recipe.student_architecture, params_s, parent=TEACHER),
    ]
    if "torchscript" in recipe.formats:  # torch.ao int8 exists only as TorchScript
        calibration = architectures.normalise(torch.from_numpy(train.images[: recipe.calibration_samples]))
        for engine in recipe.quantization_engines:
            int8 = quantize_static(student, calibration, engine)
            trained.append(
                Trained(
                    static_variant(engine),
                    int8,
                    recipe.student_architecture,
                    params_s,
                    engine,
                    "static",
                    STUDENT,
                )
            )
        if recipe.dynamic_int8:
            engine = recipe.quantization_engines[0] if recipe.quantization_engines else "x86"
            int8 = quantize_dynamic_linear(student, engine)
            trained.append(
                Trained(DYNAMIC, int8, recipe.student_architecture, params_s, engine, "dynamic", STUDENT)
            )
    return {item.variant: item for item in trained}


def _card(
    recipe: Recipe, data: Dataset, digest: str, item: Planned, parent: VariantResult | None
) -> dict[str, Any]:
    return {
        "family": recipe.family,
        "variant": item.variant,
        "name": f"{recipe.family}-{item.variant}",
        "version": 1,  # set by publish
        "format": str(item.format),
        "precision": item.precision,
        "quantization": item.quantization,
        "architecture": item.source.architecture,
        "hyperparameters": recipe.fields(),
        "parent": None if parent is None else {"name": parent.name, "version": parent.version},
        "dataset": data.card(),
        "recipe_digest": digest,
        "seed": recipe.seed,
        "metrics": {},
        "signature": SIGNATURE.model_dump(),
        "labels": LABELS,
        "max_batch_size": recipe.max_batch_size,
        "files": {},
        "libraries": library_versions(item.format),
        "torch_version": torch.__version__,
        "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def existing_if_current(registry_path: Path, recipe: Recipe, digest: str) -> list[VariantResult] | None:
    """The latest versions of every variant if they were all built from ``digest``; otherwise None."""
    results = []
    for variant in variants(recipe):
        name = f"{recipe.family}-{variant}"
        try:
            card = layout.latest(registry_path, name).card
        except layout.ArtifactError:
            return None
        if card.recipe_digest != digest:
            return None
        results.append(VariantResult(variant, name, card.version, card.metrics))
    return results


def resolve_recipe(
    family: str,
    recipe: Recipe | None,
    *,
    epochs: int | None,
    limit: int | None,
    seed: int | None,
    formats: tuple[str, ...] | None = None,
) -> Recipe:
    base = recipe if recipe is not None else default_recipe(family)
    if base.family != family:
        raise ValueError(f"recipe is for family {base.family!r}, not {family!r}")
    return base.with_overrides(epochs=epochs, limit=limit, seed=seed, formats=formats)


def build(
    family: str,
    registry_path: Path,
    *,
    recipe: Recipe | None = None,
    data_dir: Path | None = None,
    epochs: int | None = None,
    limit: int | None = None,
    seed: int | None = None,
    formats: tuple[str, ...] | None = None,
    force: bool = False,
    progress: bool = True,
) -> BuildResult:
    start = time.perf_counter()
    recipe = resolve_recipe(family, recipe, epochs=epochs, limit=limit, seed=seed, formats=formats)
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


@dataclass
class _Checked:
    """An artifact written, measured and past its gate, waiting to be published with its siblings."""

    item: Planned
    folder: Path
    metrics: dict[str, Any]


def _publish_all(
    registry_path: Path, recipe: Recipe, data: Dataset, digest: str, trained: dict[str, Trained]
) -> list[VariantResult]:
    """Write, measure and gate every planned artifact, then publish them all: a failed gate publishes nothing."""
    test = data.test
    teacher_predictions = reference_logits(trained[TEACHER].net, test.images).argmax(1)
    references: dict[str, np.ndarray] = {}
    example = torch.from_numpy(test.images[:8])
    calibration = data.train.head(recipe.limit).images[: recipe.calibration_samples]
    checked: list[_Checked] = []
    with tempfile.TemporaryDirectory(prefix="slimserve-build-") as work:
        for item in plan(recipe, trained, example, calibration):
            folder = Path(work) / item.variant
            folder.mkdir()
            for name, path in item.write(folder).items():
                if path != folder / name:  # an artifact shared with another variant (the fp32 ONNX)
                    shutil.copyfile(path, folder / name)
            metrics, logits = evaluate_version(
                draft_version(folder, _card(recipe, data, digest, item, None)), test,
                teacher_predictions=teacher_predictions, parameters=item.source.parameters,
                fast=recipe.limit is not None,
            )  # fmt: skip
            if item.gate is not None:
                if item.source.variant not in references:
                    references[item.source.variant] = reference_logits(item.source.net, test.images)
                metrics.update(check_gate(item, recipe, logits, references[item.source.variant]))
            checked.append(_Checked(item, folder, metrics))
        drafts = {
            e.item.variant: draft_version(e.folder, _card(recipe, data, digest, e.item, None))
            for e in checked
        }
        then = TEACHER if TEACHER in drafts else TEACHER_ONNX
        cascades = cascade_choices(drafts, then, data.validation.images, data.validation.labels, "validation")
        published: dict[str, VariantResult] = {}
        for entry in checked:
            item = entry.item
            parent = next((published[p] for p in item.parents if p in published), None)
            card = {**_card(recipe, data, digest, item, parent), "metrics": entry.metrics,
                    "cascade": cascades.get(item.variant)}  # fmt: skip
            version = publish(registry_path, card, {name: entry.folder / name for name in item.format.files})
            published[item.variant] = VariantResult(
                item.variant, version.card.name, version.card.version, entry.metrics
            )
            log.info(
                "published %s:%d accuracy %.4f",
                version.card.name,
                version.card.version,
                entry.metrics["accuracy"],
            )
    return list(published.values())
