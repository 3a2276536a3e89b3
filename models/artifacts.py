"""From trained networks to publishable artifacts: which variant each format yields, how it is written,
and the gate it must pass against its in-memory torch parent before it is published.

    torchscript  teacher-fp32, student-scratch-fp32, student-fp32, student-int8-<engine>  (torch.ao int8)
    onnx         teacher-fp32-onnx, student-fp32-onnx, student-int8-onnx                  (ONNX Runtime QDQ int8)
    openvino     student-int8-openvino                                                      (NNCF int8 IR)

With the recipe's ``methods`` (``models.methods``): ``prune`` adds student-pruned-fp32 and its int8 in
every format (student-pruned-int8-<engine>, -onnx, -openvino); ``qat`` adds student-qat-int8-onnx and
student-qat-int8-openvino.

Gates, on the whole test split: an fp32 export reproduces its network's logits within
``recipe.max_fp32_logit_delta``; a portable int8 agrees with the fp32 network's argmax on at least
``recipe.min_int8_agreement`` of the digits.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.card import ArtifactFormat, Signature
from models.architectures import MNIST_NORMALISER, Normaliser, Preprocess
from models.recipes import Recipe
from models.writers import OnnxOnce, copy_writer, onnx_int8_writer, openvino_int8_writer, torchscript_writer

TEACHER = "teacher-fp32"
SCRATCH = "student-scratch-fp32"
STUDENT = "student-fp32"
DYNAMIC = "student-int8-dynamic"
TEACHER_ONNX = "teacher-fp32-onnx"
STUDENT_ONNX = "student-fp32-onnx"
INT8_ONNX = "student-int8-onnx"
INT8_OPENVINO = "student-int8-openvino"
PRUNED = "student-pruned-fp32"
PRUNED_INT8_ONNX = "student-pruned-int8-onnx"
PRUNED_INT8_OPENVINO = "student-pruned-int8-openvino"
QAT_INT8_ONNX = "student-qat-int8-onnx"
QAT_INT8_OPENVINO = "student-qat-int8-openvino"
HINTS = "student-hints-fp32"  # only with distillation "logit+hints": the benchmark's side-by-side
LABELS = [str(i) for i in range(10)]
SIGNATURE = Signature.model_validate(
    {
        "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}],
    }
)


@dataclass(frozen=True)
class FamilyIO:
    """What every artifact of a family shares: its signature, class labels and in-model preprocessing."""

    signature: Signature
    labels: list[str]
    normaliser: Normaliser


MNIST_IO = FamilyIO(SIGNATURE, LABELS, MNIST_NORMALISER)


class GateError(Exception):
    """An artifact that does not reproduce its torch parent closely enough to be published."""


def static_variant(engine: str, student: str = "student") -> str:
    return f"{student}-int8-{engine}"


def variants(recipe: Recipe) -> list[str]:
    """Every variant a build of ``recipe`` publishes, in publication order."""
    names: list[str] = []
    pruned = "prune" in recipe.methods
    if "torchscript" in recipe.formats:  # a pre-built teacher is published in its own format only
        names += [TEACHER] if recipe.teacher_artifact in ("", "torchscript") else []
        names += [SCRATCH, STUDENT, *(static_variant(e) for e in recipe.quantization_engines)]
        names += [DYNAMIC] if recipe.dynamic_int8 else []
        names += [HINTS] if recipe.distillation == "logit+hints" else []
        if pruned:
            names += [PRUNED, *(static_variant(e, "student-pruned") for e in recipe.quantization_engines)]
    if "onnx" in recipe.formats:
        names += [TEACHER_ONNX] if recipe.teacher_artifact in ("", "onnx") else []
        names += [STUDENT_ONNX, INT8_ONNX]
        names += [PRUNED_INT8_ONNX] if pruned else []
        names += [QAT_INT8_ONNX] if "qat" in recipe.methods else []
    if "openvino" in recipe.formats:
        names += [INT8_OPENVINO]
        names += [PRUNED_INT8_OPENVINO] if pruned else []
        names += [QAT_INT8_OPENVINO] if "qat" in recipe.methods else []
    return names


@dataclass
class Trained:
    """A network as training left it: fp32, or int8 from torch.ao with the engine it was quantized for."""

    variant: str
    net: nn.Module
    architecture: str
    parameters: int
    engine: str | None = None
    method: str | None = None
    parent: str | None = None
    artifact: Path | None = None  # a pre-built teacher: published as this file, not exported from ``net``
    compression: dict[str, Any] | None = None  # the card's method and hyper-parameters (contract.card)
    torchscript: bool = True  # a torchao QAT graph is exported to ONNX only


@dataclass
class Planned:
    """One variant to publish: how to write its files, and what its torch reference says it must reproduce."""

    variant: str
    format: ArtifactFormat
    source: Trained  # the network it is (or is quantized from)
    write: Callable[[Path], dict[str, Path]]  # into a folder; returns registry file name -> path
    parents: tuple[str, ...] = ()  # the first of these that is published is its parent
    quantization: dict[str, Any] | None = None
    gate: str | None = None  # "fp32" (logits) or "int8" (argmax agreement), against ``source``
    compression: dict[str, Any] | None = None  # the step from its parent, when it is not the quantization

    @property
    def precision(self) -> str:
        return "int8" if self.quantization else "fp32"


def library_versions(fmt: ArtifactFormat) -> dict[str, str]:
    names = {
        ArtifactFormat.TORCHSCRIPT: ("torch",),
        ArtifactFormat.ONNX: ("torch", "onnx", "onnxruntime"),
        ArtifactFormat.OPENVINO: ("torch", "onnx", "openvino", "nncf"),
    }[fmt]
    return {name: importlib.metadata.version(name) for name in names}


def plan(
    recipe: Recipe,
    trained: dict[str, Trained],
    example: torch.Tensor,
    calibration: np.ndarray,
    io: FamilyIO = MNIST_IO,
) -> list[Planned]:
    """The artifacts of every format the recipe asks for; the fp32 student's ONNX file is written once."""
    planned: list[Planned] = []
    if "torchscript" in recipe.formats:
        for item in trained.values():
            if not item.torchscript or (
                item.artifact is not None and recipe.teacher_artifact != "torchscript"
            ):
                continue
            quantization = None
            if item.engine is not None:
                samples = recipe.calibration_samples if item.method == "static" else 0
                quantization = {"engine": item.engine, "method": item.method, "calibration_samples": samples}
            planned.append(
                Planned(
                    item.variant,
                    ArtifactFormat.TORCHSCRIPT,
                    item,
                    copy_writer(item.artifact, "model.pt")
                    if item.artifact is not None
                    else torchscript_writer(item, example, io.normaliser),
                    (item.parent,) if item.parent else (),
                    quantization,
                    compression=None if quantization else item.compression,
                )
            )
    teacher, student = trained[TEACHER], trained[STUDENT]
    student_onnx = OnnxOnce(student.net, example, io)
    if "onnx" in recipe.formats and teacher.artifact is None:
        teacher_onnx = OnnxOnce(teacher.net, example, io)
        planned.append(Planned(TEACHER_ONNX, ArtifactFormat.ONNX, teacher, teacher_onnx, gate="fp32"))
    elif "onnx" in recipe.formats and recipe.teacher_artifact == "onnx":
        copied = copy_writer(teacher.artifact, "model.onnx")
        planned.append(Planned(TEACHER_ONNX, ArtifactFormat.ONNX, teacher, copied))
    if "onnx" in recipe.formats:
        planned.append(
            Planned(
                STUDENT_ONNX,
                ArtifactFormat.ONNX,
                student,
                student_onnx,
                (TEACHER_ONNX, TEACHER),
                gate="fp32",
                compression=student.compression,
            )
        )
    return planned + portable_int8(
        recipe, student, student_onnx, calibration, io, (INT8_ONNX, INT8_OPENVINO), (STUDENT_ONNX, STUDENT)
    )


def portable_int8(
    recipe: Recipe,
    source: Trained,
    fp32_onnx: Callable[[Path], dict[str, Path]],
    calibration: np.ndarray,
    io: FamilyIO,
    names: tuple[str, str],
    parents: tuple[str, ...],
) -> list[Planned]:
    """Post-training int8 of an fp32 network for ONNX Runtime and OpenVINO, as the recipe's formats ask."""
    onnx_name, openvino_name = names
    planned = []
    if "onnx" in recipe.formats:
        writer = onnx_int8_writer(fp32_onnx, calibration, io.signature.inputs[0].name)
        method = {
            "engine": "onnxruntime",
            "method": "static-qdq-per-channel",
            "calibration_samples": len(calibration),
        }
        planned.append(Planned(onnx_name, ArtifactFormat.ONNX, source, writer, parents, method, gate="int8"))
    if "openvino" in recipe.formats:
        writer = openvino_int8_writer(fp32_onnx, calibration)
        method = {"engine": "openvino", "method": "nncf-ptq", "calibration_samples": len(calibration)}
        planned.append(
            Planned(openvino_name, ArtifactFormat.OPENVINO, source, writer, parents, method, gate="int8")
        )
    return planned


def reference_logits(
    net: nn.Module, images: np.ndarray, normaliser: Normaliser = MNIST_NORMALISER, batch_size: int = 250
) -> np.ndarray:
    """What the in-memory network (with its preprocessing) answers: the yardstick of its exports."""
    model = Preprocess(net, normaliser).eval()
    with torch.inference_mode():
        parts = [
            model(torch.from_numpy(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
        ]
    return torch.cat(parts).numpy()


def check_gate(item: Planned, recipe: Recipe, logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Raise GateError when ``logits`` stray from ``reference`` too far; return what was measured."""
    if item.gate == "fp32":
        delta = float(np.abs(logits - reference).max())
        if delta > recipe.max_fp32_logit_delta:
            raise GateError(
                f"{item.variant}: max |Δlogit| against its torch network is {delta:.3g} "
                f"(max_fp32_logit_delta {recipe.max_fp32_logit_delta:g})"
            )
        return {"max_abs_logit_delta_vs_torch": delta}
    if item.gate == "int8":
        agreement = float((logits.argmax(1) == reference.argmax(1)).mean())
        if agreement < recipe.min_int8_agreement:
            raise GateError(
                f"{item.variant}: argmax agreement with its fp32 network is {agreement:.4f} "
                f"(min_int8_agreement {recipe.min_int8_agreement:g})"
            )
        return {"agreement_with_fp32_parent": agreement}
    return {}
