"""How each artifact is written into its version folder: a copy, a TorchScript or ONNX export, or a
post-training int8 of an fp32 ONNX file (written once and shared by the variants made from it)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from models.architectures import Normaliser
from models.export import export_onnx, export_torchscript
from models.quantize_portable import quantize_onnx_static, quantize_openvino

if TYPE_CHECKING:
    from models.artifacts import FamilyIO, Trained

Writer = Callable[[Path], dict[str, Path]]


def copy_writer(source: Path | None, name: str) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        assert source is not None
        shutil.copyfile(source, folder / name)
        return {name: folder / name}

    return write


def torchscript_writer(
    item: Trained, example: torch.Tensor, normaliser: Normaliser
) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        path = folder / "model.pt"
        export_torchscript(item.net, path, example, engine=item.engine, normaliser=normaliser)
        return {"model.pt": path}

    return write


class OnnxOnce:
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


def onnx_int8_writer(
    fp32: Callable[[Path], dict[str, Path]], calibration: np.ndarray, input_name: str
) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        source = fp32(folder.parent / f"{folder.name}-fp32")
        path = folder / "model.onnx"
        quantize_onnx_static(source["model.onnx"], path, calibration, input_name)
        return {"model.onnx": path}

    return write


def openvino_int8_writer(
    fp32: Callable[[Path], dict[str, Path]], calibration: np.ndarray
) -> Callable[[Path], dict[str, Path]]:
    def write(folder: Path) -> dict[str, Path]:
        source = fp32(folder.parent / f"{folder.name}-fp32")
        quantize_openvino(source["model.onnx"], folder / "model.xml", calibration)
        return {"model.xml": folder / "model.xml", "model.bin": folder / "model.bin"}

    return write
