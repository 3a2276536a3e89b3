"""The compression methods beyond post-training int8, as build stages: prune, then quantize-aware train.

Both start from the distilled student and learn from the teacher. ``prune`` removes filters and hidden
units by L1 norm (``models.prune``) and publishes the smaller network with an int8 of it in every format;
``qat`` fine-tunes a fake-quantized copy (``models.qat``) and publishes it as ONNX QDQ and OpenVINO IR.
Each variant's card names its method and hyper-parameters, and its parent chain gives the lineage
(teacher -> student -> pruned -> int8).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.card import ArtifactFormat
from models import architectures
from models.artifacts import (
    PRUNED,
    PRUNED_INT8_ONNX,
    PRUNED_INT8_OPENVINO,
    QAT_INT8_ONNX,
    QAT_INT8_OPENVINO,
    STUDENT,
    STUDENT_ONNX,
    FamilyIO,
    Planned,
    Trained,
    portable_int8,
    static_variant,
)
from models.data import Split
from models.prune import check_is_chain, hidden_widths, prune_and_finetune
from models.qat import quantization_aware_training
from models.quantize import quantize_static
from models.recipes import Recipe
from models.train import TrainConfig
from models.writers import OnnxOnce, Writer

log = logging.getLogger(__name__)


def check_prunable(recipe: Recipe, example: torch.Tensor) -> None:
    """Refuse an architecture that cannot be pruned before anything is trained (a PruningError)."""
    if "prune" in recipe.methods:
        check_is_chain(architectures.build(recipe.student_architecture), example)


def pruning_hyperparameters(recipe: Recipe, widths: list[int]) -> dict[str, Any]:
    return {
        "criterion": "l1-norm", "sparsity": recipe.prune_sparsity, "schedule": recipe.prune_schedule,
        "steps": recipe.prune_steps, "finetune_epochs": recipe.prune_epochs, "finetune": "distillation",
        "kd_temperature": recipe.kd_temperature, "kd_alpha": recipe.kd_alpha, "widths": widths,
    }  # fmt: skip


def train_methods(
    recipe: Recipe,
    student: Trained,
    teacher: nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    calibration: torch.Tensor,
    *,
    progress: bool,
) -> list[Trained]:
    """The recipe's methods applied to the distilled ``student``; ``config`` is its training configuration."""
    made: list[Trained] = []
    kd: dict[str, Any] = {"T": recipe.kd_temperature, "alpha": recipe.kd_alpha, "progress": progress}
    if "prune" in recipe.methods:
        started = time.perf_counter()
        prune_config = dataclasses.replace(config, epochs=recipe.prune_epochs)
        pruned, _ = prune_and_finetune(
            student.net, teacher, train, validation, prune_config, sparsity=recipe.prune_sparsity,
            schedule=recipe.prune_schedule, steps=recipe.prune_steps, **kd,
        )  # fmt: skip
        log.info("pruning done in %.1f s", time.perf_counter() - started)
        parameters = architectures.count_parameters(pruned)
        widths = hidden_widths(pruned)
        made.append(Trained(PRUNED, pruned, recipe.student_architecture, parameters, parent=STUDENT,
                            compression={"method": "l1-filter-pruning",
                                         "hyperparameters": pruning_hyperparameters(recipe, widths)}))  # fmt: skip
        if "torchscript" in recipe.formats:
            for engine in recipe.quantization_engines:
                int8 = quantize_static(pruned, calibration, engine)
                variant = static_variant(engine, "student-pruned")
                made.append(
                    Trained(variant, int8, recipe.student_architecture, parameters, engine, "static", PRUNED)
                )
    if "qat" in recipe.methods and {"onnx", "openvino"} & set(recipe.formats):
        started = time.perf_counter()
        qat_config = dataclasses.replace(config, epochs=recipe.qat_epochs, lr=recipe.qat_lr, mixup_alpha=0.0)
        raw_calibration = train.images[: len(calibration)]
        converted, _ = quantization_aware_training(
            student.net, teacher, train, validation, raw_calibration, qat_config, **kd
        )
        log.info("quantization-aware training done in %.1f s", time.perf_counter() - started)
        hyperparameters = {
            "framework": "torchao pt2e", "quantizer": "X86InductorQuantizer (QAT)", "epochs": recipe.qat_epochs,
            "lr": recipe.qat_lr, "observers_from": f"{len(raw_calibration)} calibration inputs",
            "finetune": "distillation", "kd_temperature": recipe.kd_temperature, "kd_alpha": recipe.kd_alpha,
        }  # fmt: skip
        made.append(Trained("student-qat", converted, recipe.student_architecture, student.parameters,
                            parent=STUDENT, torchscript=False,
                            compression={"method": "quantization-aware-training",
                                         "hyperparameters": hyperparameters}))  # fmt: skip
    return made


def plan_methods(
    recipe: Recipe, trained: dict[str, Trained], example: torch.Tensor, calibration: np.ndarray, io: FamilyIO
) -> list[Planned]:
    """The portable artifacts of the pruned and QAT students (their TorchScript comes with the others)."""
    planned: list[Planned] = []
    if PRUNED in trained:
        pruned = trained[PRUNED]
        fp32 = OnnxOnce(pruned.net, example, io)
        planned += portable_int8(recipe, pruned, fp32, calibration, io, (PRUNED_INT8_ONNX, PRUNED_INT8_OPENVINO),
                                 (PRUNED, STUDENT_ONNX, STUDENT))  # fmt: skip
    if "student-qat" in trained:
        qat = trained["student-qat"]
        qdq = OnnxOnce(qat.net, example, io)
        method = {
            "engine": "onnxruntime",
            "method": "qat-qdq-per-channel",
            "calibration_samples": len(calibration),
        }
        if "onnx" in recipe.formats:
            planned.append(Planned(QAT_INT8_ONNX, ArtifactFormat.ONNX, qat, qdq, (STUDENT_ONNX, STUDENT), method,
                                   gate="int8", compression=qat.compression))  # fmt: skip
        if "openvino" in recipe.formats:
            planned.append(Planned(QAT_INT8_OPENVINO, ArtifactFormat.OPENVINO, qat, _openvino_from_qdq(qdq),
                                   (QAT_INT8_ONNX, STUDENT_ONNX, STUDENT), {**method, "engine": "openvino"},
                                   gate="int8", compression=qat.compression))  # fmt: skip
    return planned


def _openvino_from_qdq(qdq: Writer) -> Writer:
    """OpenVINO reads the QDQ graph as int8: the IR is a conversion, no second quantization."""

    def write(folder: Any) -> dict[str, Any]:
        import openvino

        source = qdq(folder.parent / f"{folder.name}-qdq")
        openvino.save_model(openvino.convert_model(str(source["model.onnx"])), str(folder / "model.xml"),
                            compress_to_fp16=False)  # fmt: skip
        return {"model.xml": folder / "model.xml", "model.bin": folder / "model.bin"}

    return write
