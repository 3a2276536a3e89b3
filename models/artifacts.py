"""From trained networks to publishable artifacts: which variant each format yields, how it is written,
and the gate it must pass against its in-memory torch parent before it is published.

    torchscript  teacher-fp32, student-scratch-fp32, student-fp32, student-int8-<engine>  (torch.ao int8)
    onnx         teacher-fp32-onnx, student-fp32-onnx, student-int8-onnx                  (ONNX Runtime QDQ int8)
    openvino     student-int8-openvino                                                      (NNCF int8 IR)

Gates, on the whole test split: an fp32 export reproduces its network's logits within
``recipe.max_fp32_logit_delta``; a portable int8 agrees with the fp32 network's argmax on at least
``recipe.min_int8_agreement`` of the digits.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.card import ArtifactFormat, Signature
from models.architectures import MNIST_NORMALISER, Normaliser, Preprocess
from models.export import export_onnx, export_torchscript
from models.quantize_portable import quantize_onnx_static, quantize_openvino
from models.recipes import Recipe

TEACHER = "teacher-fp32"
SCRATCH = "student-scratch-fp32"
STUDENT = "student-fp32"
DYNAMIC = "student-int8-dynamic"
TEACHER_ONNX = "teacher-fp32-onnx"
STUDENT_ONNX = "student-fp32-onnx"
INT8_ONNX = "student-int8-onnx"
INT8_OPENVINO = "student-int8-openvino"
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


def static_variant(engine: str) -> str:
    return f"student-int8-{engine}"


def variants(recipe: Recipe) -> list[str]:
    """Every variant a build of ``recipe`` publishes, in publication order."""
    names: list[str] = []
    if "torchscript" in recipe.formats:  # a pre-built teacher is published in its own format only
        names += [TEACHER] if recipe.teacher_artifact in ("", "torchscript") else []
        names += [SCRATCH, STUDENT, *(static_variant(e) for e in recipe.quantization_engines)]
        names += [DYNAMIC] if recipe.dynamic_int8 else []
    if "onnx" in recipe.formats:
        names += [TEACHER_ONNX] if recipe.teacher_artifact in ("", "onnx") else []
        names += [STUDENT_ONNX, INT8_ONNX]
    if "openvino" in recipe.formats:
        names += [INT8_OPENVINO]
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
            if item.artifact is not None and recipe.teacher_artifact != "torchscript":
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
                    _copy_writer(item.artifact, "model.pt")
                    if item.artifact is not None
                    else _torchscript_writer(item, example, io.normaliser),
                    (item.parent,) if item.parent else (),
                    quantization,
                )
            )
    teacher, student = trained[TEACHER], trained[STUDENT]
    student_onnx = _OnnxOnce(student.net, example, io)
    if "onnx" in recipe.formats and teacher.artifact is None:
        teacher_onnx = _OnnxOnce(teacher.net, example, io)
        planned.append(Planned(TEACHER_ONNX, ArtifactFormat.ONNX, teacher, teacher_onnx, gate="fp32"))
    elif "onnx" in recipe.formats and recipe.teacher_artifact == "onnx":
        copied = _copy_writer(teacher.artifact, "model.onnx")
        planned.append(Planned(TEACHER_ONNX, ArtifactFormat.ONNX, teacher, copied))
    if "onnx" in recipe.formats:
        planned += [
            Planned(
                STUDENT_ONNX, ArtifactFormat.ONNX, student, student_onnx, (TEACHER_ONNX, TEACHER), gate="fp32"
            ),
            Planned(
                INT8_ONNX,
                ArtifactFormat.ONNX,
                student,
                _onnx_int8_writer(student_onnx, calibration, io.signature.inputs[0].name),
                (STUDENT_ONNX, STUDENT),
                {
                    "engine": "onnxruntime",
                    "method": "static-qdq-per-channel",
                    "calibration_samples": len(calibration),
                },
                gate="int8",
            ),
        ]
    if "openvino" in recipe.formats:
        planned.append(
            Planned(
                INT8_OPENVINO,
                ArtifactFormat.OPENVINO,
                student,
                _openvino_int8_writer(student_onnx, calibration),
                (STUDENT_ONNX, STUDENT),
                {"engine": "openvino", "method": "nncf-ptq", "calibration_samples": len(calibration)},
                gate="int8",
            )
        )
    return planned


def _copy_writer(source: Path | None, name: str) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        assert source is not None
        shutil.copyfile(source, folder / name)
        return {name: folder / name}

    return write


def _torchscript_writer(
    item: Trained, example: torch.Tensor, normaliser: Normaliser
) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        path = folder / "model.pt"
        export_torchscript(item.net, path, example, engine=item.engine, normaliser=normaliser)
        return {"model.pt": path}

    return write


class _OnnxOnce:
    """Exports a network to ONNX the first time it is asked and hands back the same file afterwards."""

    def __init__(self, net: nn.Module, example: torch.Tensor, io: FamilyIO) -> None:
        self._net, self._example, self._io = net, example, io
        self._path: Path | None = None

    def __call__(self, folder: Path) -> dict[str, Path]:
        if self._path is None:
            folder.mkdir(parents=True, exist_ok=True)
            self._path = folder / "model.onnx"
            export_onnx(self._net, self._path, self._example, self._io.signature, self._io.normaliser)
        return {"model.onnx": self._path}


def _onnx_int8_writer(
    fp32: _OnnxOnce, calibration: np.ndarray, input_name: str
) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        source = fp32(folder.parent / f"{folder.name}-fp32")
        path = folder / "model.onnx"
        quantize_onnx_static(source["model.onnx"], path, calibration, input_name)
        return {"model.onnx": path}

    return write


def _openvino_int8_writer(fp32: _OnnxOnce, calibration: np.ndarray) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        source = fp32(folder.parent / f"{folder.name}-fp32")
        quantize_openvino(source["model.onnx"], folder / "model.xml", calibration)
        return {"model.xml": folder / "model.xml", "model.bin": folder / "model.bin"}

    return write


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
