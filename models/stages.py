"""The training stages of a build: the teacher (trained, or loaded from its weights), the scratch and the
distilled student on the same budget and batches, then the torch.ao int8 variants of the distilled one."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import architectures
from models.architectures import Normaliser
from models.artifacts import DYNAMIC, HINTS, SCRATCH, STUDENT, TEACHER, FamilyIO, Trained, static_variant
from models.data import Dataset, Split
from models.distill import distill
from models.hints import distill_with_hints
from models.methods import train_methods
from models.quantize import quantize_dynamic_linear, quantize_static
from models.recipes import Recipe
from models.spec import SpecError
from models.teachers import load_teacher_artifact
from models.train import FitResult, TrainConfig, fit

log = logging.getLogger(__name__)


def train_config(
    recipe: Recipe, epochs: int, seed: int, *, mixup_alpha: float, normaliser: Normaliser
) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        weight_decay=recipe.weight_decay,
        patience=recipe.patience,
        shift_pixels=recipe.shift_pixels,
        mixup_alpha=mixup_alpha,
        seed=seed,
        normalise=normaliser,
    )


def _seeded(reference: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return architectures.build(reference)


def _stage(name: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    result = work()
    log.info("%s done in %.1f s", name, time.perf_counter() - start)
    return result


def _pretrained(reference: str, state_dict: Path) -> nn.Module:
    """An existing teacher: its factory's network with the weights of a state_dict file (no pickled code)."""
    network = architectures.build(reference)
    try:
        weights = torch.load(state_dict, map_location="cpu", weights_only=True)
        network.load_state_dict(weights)
    except Exception as exc:  # torch raises many types for a foreign or mismatched file
        raise SpecError(
            f"teacher.state_dict: {state_dict.name} does not load into {reference} ({exc})"
        ) from None
    return network.eval()


def train_variants(
    recipe: Recipe,
    data: Dataset,
    *,
    progress: bool,
    io: FamilyIO,
    teacher_weights: Path | None = None,
    teacher_artifact: Path | None = None,
) -> dict[str, Trained]:
    """Train the teacher (unless its weights or a pre-built one are given), the scratch and the distilled
    student, then quantize the distilled one."""
    train = data.train.head(recipe.limit)
    normaliser = io.normaliser
    teacher: nn.Module
    params_t: int | None = None
    if teacher_artifact is not None:
        teacher, params_t = load_teacher_artifact(
            teacher_artifact, recipe.teacher_artifact, io.signature, io.labels, normaliser
        )
    elif teacher_weights is not None:
        teacher = _pretrained(recipe.teacher_architecture, teacher_weights)
    else:
        teacher = _seeded(recipe.teacher_architecture, recipe.seed)
        teacher_config = train_config(
            recipe,
            recipe.teacher_epochs,
            recipe.seed,
            mixup_alpha=recipe.teacher_mixup_alpha,
            normaliser=normaliser,
        )
        _stage(
            "teacher",
            lambda: fit(teacher, train, data.validation, teacher_config, name="teacher", progress=progress),
        )
    # Both students start from the same weights and see the same batches: only the teacher differs.
    student_config = train_config(
        recipe, recipe.student_epochs, recipe.seed + 1, mixup_alpha=recipe.mixup_alpha, normaliser=normaliser
    )
    scratch = _seeded(recipe.student_architecture, recipe.seed + 1)
    _stage(
        "scratch",
        lambda: fit(scratch, train, data.validation, student_config, name="scratch", progress=progress),
    )
    student = _seeded(recipe.student_architecture, recipe.seed + 1)
    _stage("distillation", lambda: _distill(recipe, student, teacher, train, data, student_config, progress))
    params_s = architectures.count_parameters(student)
    if params_t is None:
        params_t = architectures.count_parameters(teacher)
    distilled = Trained(STUDENT, student, recipe.student_architecture, params_s, parent=TEACHER,
                        compression=distillation_card(recipe))  # fmt: skip
    trained = [
        Trained(TEACHER, teacher, recipe.teacher_architecture, params_t, artifact=teacher_artifact),
        Trained(SCRATCH, scratch, recipe.student_architecture, params_s),
        distilled,
    ]
    if recipe.distillation == "logit+hints":  # the same budget, teacher and batches: only the loss differs
        hinted = _seeded(recipe.student_architecture, recipe.seed + 1)
        hints = dataclasses.replace(recipe, distillation="hints")
        _stage(
            "distillation with hints",
            lambda: _distill(hints, hinted, teacher, train, data, student_config, progress),
        )
        trained.append(Trained(HINTS, hinted, recipe.student_architecture, params_s, parent=TEACHER,
                               compression=distillation_card(hints)))  # fmt: skip
    calibration = normaliser(torch.from_numpy(train.images[: recipe.calibration_samples]))
    methods = train_methods(recipe, distilled, teacher, train, data.validation, student_config, calibration,
                            progress=progress)  # fmt: skip
    if "torchscript" in recipe.formats:  # torch.ao int8 exists only as TorchScript
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
    return {item.variant: item for item in trained + methods}


def _distill(
    recipe: Recipe,
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    data: Dataset,
    config: TrainConfig,
    progress: bool,
) -> FitResult:
    kd: dict[str, Any] = {"T": recipe.kd_temperature, "alpha": recipe.kd_alpha, "progress": progress}
    if recipe.distillation == "hints":
        return distill_with_hints(student, teacher, train, data.validation, config, layer=recipe.hint_layer,
                                  beta=recipe.hint_beta, **kd)  # fmt: skip
    return distill(student, teacher, train, data.validation, config, **kd)


def distillation_card(recipe: Recipe) -> dict[str, Any]:
    """The distilled student's method and hyper-parameters, as its card states them."""
    hyperparameters: dict[str, Any] = {"kd_temperature": recipe.kd_temperature, "kd_alpha": recipe.kd_alpha,
                                       "epochs": recipe.student_epochs}  # fmt: skip
    if recipe.distillation == "hints":
        hyperparameters |= {"hint_layer": recipe.hint_layer, "hint_beta": recipe.hint_beta}
        return {"method": "hint-distillation", "hyperparameters": hyperparameters}
    return {"method": "distillation", "hyperparameters": hyperparameters}
