"""The build recipe: every knob that changes a published artifact, frozen and digested.

The digest covers the recipe and the dataset digests, so a rebuild with nothing changed is a no-op and
any change (data, hyper-parameter, engine list) produces new versions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

FORMATS = ("torchscript", "onnx", "openvino")
SMOKE_MIN_INT8_AGREEMENT = 0.95


class RecipeError(Exception):
    """An unknown family, an invalid family spec or an invalid recipe override."""


@dataclass(frozen=True)
class Recipe:
    family: str
    teacher_architecture: str = "models.architectures:teacher"
    teacher_artifact: str = ""  # "onnx" or "torchscript": a pre-built teacher, published as it is
    student_architecture: str = "models.architectures:student"
    teacher_epochs: int = 25
    student_epochs: int = 60  # patient teaching; the scratch baseline and the KD student get the same budget
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 15  # epochs without validation improvement before stopping
    shift_pixels: int = 2  # Hinton's jitter: random translations of up to this many pixels
    # A mixup-trained teacher is both more accurate and better calibrated, i.e. a better source of soft labels.
    teacher_mixup_alpha: float = 0.2
    mixup_alpha: float = 0.0  # for both students alike (scratch and KD); 0 disables mixup
    kd_temperature: float = 4.0
    kd_alpha: float = 0.5
    calibration_samples: int = 512
    seed: int = 0
    quantization_engines: tuple[str, ...] = ("x86", "qnnpack")
    dynamic_int8: bool = False
    max_batch_size: int = 64
    # Artifact formats to publish (contract.card.ArtifactFormat); torchscript can be left out altogether.
    formats: tuple[str, ...] = FORMATS
    # Publish gates for the portable variants, against their torch parent on the whole test split.
    max_fp32_logit_delta: float = 1e-4
    min_int8_agreement: float = 0.995
    # How the student learns from the teacher: "logit" (Hinton KD) or "hints" (FitNets: KD plus a feature map)
    distillation: str = "logit"
    hint_layer: str = "features"  # a module name in both networks (models.hints)
    hint_beta: float = 1.0
    # More compression of the distilled student (models.prune, models.qat): any of "prune", "qat"
    methods: tuple[str, ...] = ("prune", "qat")
    prune_sparsity: float = 0.5  # share of every conv's filters and hidden units removed
    prune_schedule: str = "iterative"  # or "one-shot"
    prune_steps: int = 3
    prune_epochs: int = 15  # KD fine-tuning over all steps
    qat_epochs: int = 3
    qat_lr: float = 2e-4
    limit: int | None = None  # cap on training samples, for fast tests

    def with_overrides(
        self,
        *,
        epochs: int | None = None,
        limit: int | None = None,
        seed: int | None = None,
        formats: tuple[str, ...] | None = None,
    ) -> Recipe:
        """Fast overrides: ``epochs`` sets every training stage's budget; early stopping stays on."""
        changes: dict[str, Any] = {}
        if epochs is not None:
            if epochs < 1:
                raise RecipeError(f"epochs must be >= 1, got {epochs}")
            changes.update(
                teacher_epochs=epochs, student_epochs=epochs, prune_epochs=epochs * self.prune_steps,
                qat_epochs=epochs,
            )  # fmt: skip
        if limit is not None:
            if limit < 10:
                raise RecipeError(f"limit must be >= 10, got {limit}")
            # A smoke build's barely-trained network has near-tied logits that any int8 rounding flips, so
            # its int8 gate only catches a broken export, not a lossy one.
            changes.update(
                limit=limit,
                calibration_samples=min(self.calibration_samples, limit),
                min_int8_agreement=min(self.min_int8_agreement, SMOKE_MIN_INT8_AGREEMENT),
            )
        if seed is not None:
            changes.update(seed=seed)
        if formats is not None:
            changes.update(formats=checked_formats(formats))
        return dataclasses.replace(self, **changes)

    def fields(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["quantization_engines"] = list(self.quantization_engines)
        values["formats"] = list(self.formats)
        values["methods"] = list(self.methods)
        return values

    def digest(self, dataset_digest: str, split_digest: str, family: dict[str, Any] | None = None) -> str:
        """``family``: what the family spec adds (signature, labels, preprocessing), digested with the rest."""
        payload: dict[str, Any] = {"recipe": self.fields(), "dataset": dataset_digest, "split": split_digest}
        if family is not None:
            payload["family"] = family
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def checked_formats(names: Sequence[str]) -> tuple[str, ...]:
    """Known artifact formats, in order, each once; an unknown or empty list is a RecipeError."""
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise RecipeError(
            f"formats: unknown format {', '.join(unknown) or '(none given)'} (known: {', '.join(FORMATS)})"
        )
    return tuple(dict.fromkeys(names))


def default_recipe(family: str) -> Recipe:
    """The recipe of a built-in family's spec (``models/families/<family>.yaml``)."""
    from models.spec import builtin_spec

    return builtin_spec(family).recipe()
