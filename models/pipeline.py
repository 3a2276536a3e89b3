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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract import layout
from contract.engines import check_engine_supported
from contract.publish import draft_version, publish
from models import architectures
from models.artifacts import (
    STUDENT,
    TEACHER,
    TEACHER_ONNX,
    FamilyIO,
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
from models.data import Dataset
from models.evaluate import evaluate_version
from models.methods import check_prunable, plan_methods
from models.recipes import Recipe
from models.sources import fitted_normaliser, load_family_data
from models.spec import FamilySpec, SpecError, builtin_spec
from models.stages import train_variants

log = logging.getLogger(__name__)

__all__ = ["STUDENT", "TEACHER", "BuildResult", "VariantResult", "build", "static_variant", "variants"]


@dataclass
class VariantResult:
    variant: str
    name: str
    version: int
    metrics: dict[str, Any]
    lineage: list[str] = field(default_factory=list)  # published ancestors, the root first


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


@dataclass(frozen=True)
class _Family:
    """One build's family: the spec's name and default, the shared I/O, the data, the recipe and its digest."""

    name: str
    default_variant: str
    io: FamilyIO
    data: Dataset
    recipe: Recipe
    digest: str


def _card(family: _Family, item: Planned, parent: VariantResult | None) -> dict[str, Any]:
    recipe, data, digest = family.recipe, family.data, family.digest
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
        "lineage": [] if parent is None else [*parent.lineage, parent.name],
        "compression": item.compression,
        "dataset": data.card(),
        "recipe_digest": digest,
        "seed": recipe.seed,
        "metrics": {},
        "signature": family.io.signature.model_dump(),
        "labels": family.io.labels,
        "default_variant": family.default_variant,
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
    spec: FamilySpec,
    recipe: Recipe | None,
    *,
    epochs: int | None,
    limit: int | None,
    seed: int | None,
    formats: tuple[str, ...] | None = None,
) -> Recipe:
    base = recipe if recipe is not None else spec.recipe()
    if base.family != spec.name:
        raise ValueError(f"recipe is for family {base.family!r}, not {spec.name!r}")
    return base.with_overrides(epochs=epochs, limit=limit, seed=seed, formats=formats)


def check_default_variant(spec: FamilySpec) -> None:
    built = variants(spec.recipe())
    if spec.serving.default_variant not in built:
        raise SpecError(
            f"serving.default_variant: '{spec.serving.default_variant}' is not a variant this spec builds "
            f"(it builds {', '.join(built)})"
        )


def build(
    family: str | FamilySpec,
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
    """Build a family (a built-in name or a spec): everything is checked, trained, written, measured and
    gated before the first version is published."""
    start = time.perf_counter()
    spec = family if isinstance(family, FamilySpec) else builtin_spec(family)
    check_default_variant(spec)
    recipe = resolve_recipe(spec, recipe, epochs=epochs, limit=limit, seed=seed, formats=formats)
    for engine in recipe.quantization_engines:
        check_engine_supported(engine)
    for reference in {recipe.teacher_architecture, recipe.student_architecture}:
        if not reference.startswith("artifact:"):
            architectures.resolve(reference)
    data = load_family_data(spec, data_dir)
    normaliser = fitted_normaliser(spec, data.train.head(recipe.limit))
    check_prunable(recipe, normaliser(torch.from_numpy(data.train.images[:2])))
    digest = recipe.digest(data.digest, data.split_digest, spec.digest_fields())
    current = None if force else existing_if_current(registry_path, recipe, digest)
    if current is not None:
        log.info("%s: up to date (recipe %s)", spec.name, digest[:12])
        return BuildResult(spec.name, digest, True, current, time.perf_counter() - start)
    io = FamilyIO(spec.signature.signature(), spec.labels, normaliser)
    trained = train_variants(
        recipe, data, progress=progress, io=io, teacher_weights=spec.teacher.state_dict,
        teacher_artifact=spec.teacher.artifact,
    )  # fmt: skip
    default = spec.serving.default_variant if spec.serving.default_variant in variants(recipe) else ""
    published = _publish_all(registry_path, _Family(spec.name, default, io, data, recipe, digest), trained)
    result = BuildResult(spec.name, digest, False, published, time.perf_counter() - start)
    log.info("%s: built in %.1f s\n%s", spec.name, result.seconds, result.table())
    return result


@dataclass
class _Checked:
    """An artifact written, measured and past its gate, waiting to be published with its siblings."""

    item: Planned
    folder: Path
    metrics: dict[str, Any]


def _publish_all(registry_path: Path, family: _Family, trained: dict[str, Trained]) -> list[VariantResult]:
    """Write, measure and gate every planned artifact, then publish them all: a failed gate publishes nothing."""
    recipe, data, normaliser = family.recipe, family.data, family.io.normaliser
    test = data.test
    teacher_predictions = reference_logits(trained[TEACHER].net, test.images, normaliser).argmax(1)
    references: dict[str, np.ndarray] = {}
    example = torch.from_numpy(test.images[:8])
    calibration = data.train.head(recipe.limit).images[: recipe.calibration_samples]
    checked: list[_Checked] = []
    with tempfile.TemporaryDirectory(prefix="slimserve-build-") as work:
        planned = plan(recipe, trained, example, calibration, family.io)
        for item in planned + plan_methods(recipe, trained, example, calibration, family.io):
            folder = Path(work) / item.variant
            folder.mkdir()
            for name, path in item.write(folder).items():
                if path != folder / name:  # an artifact shared with another variant (the fp32 ONNX)
                    shutil.copyfile(path, folder / name)
            metrics, logits = evaluate_version(
                draft_version(folder, _card(family, item, None)), test,
                teacher_predictions=teacher_predictions, parameters=item.source.parameters,
                fast=recipe.limit is not None,
            )  # fmt: skip
            if item.gate is not None:
                if item.source.variant not in references:
                    references[item.source.variant] = reference_logits(
                        item.source.net, test.images, normaliser
                    )
                metrics.update(check_gate(item, recipe, logits, references[item.source.variant]))
            checked.append(_Checked(item, folder, metrics))
        drafts = {e.item.variant: draft_version(e.folder, _card(family, e.item, None)) for e in checked}
        then = TEACHER if TEACHER in drafts else TEACHER_ONNX
        cascades = cascade_choices(drafts, then, data.validation.images, data.validation.labels, "validation")
        published: dict[str, VariantResult] = {}
        for entry in checked:
            item = entry.item
            parent = next((published[p] for p in item.parents if p in published), None)
            card = {
                **_card(family, item, parent),
                "metrics": entry.metrics,
                "cascade": cascades.get(item.variant),
            }
            version = publish(registry_path, card, {name: entry.folder / name for name in item.format.files})
            published[item.variant] = VariantResult(
                item.variant, version.card.name, version.card.version, entry.metrics, version.card.lineage
            )
            log.info(
                "published %s:%d accuracy %.4f",
                version.card.name,
                version.card.version,
                entry.metrics["accuracy"],
            )
    return list(published.values())
