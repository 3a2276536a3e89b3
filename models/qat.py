"""Quantization-aware training for x86 int8 with torchao's PT2E flow: the one module that imports torchao.

torch 2.13 deprecates its own quantization APIs (eager and FX) and PT2E now lives in torchao. The student is
captured with ``torch.export``, prepared with the x86 quantizer's QAT configuration (fake-quantized int8
weights per channel, uint8 activations per tensor: what x86 int8 kernels run), its observers are first set
on the calibration digits with the weights untouched (the post-training starting point), then it is
fine-tuned with knowledge distillation from the teacher, and converted to explicit quantize/dequantize
operations. ``models.export.export_onnx`` writes that as ONNX QDQ, which ONNX Runtime and OpenVINO both run
as int8, the same two formats as the post-training variants.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from models.data import Split
from models.distill import distillation_loss
from models.quiet import loggers_at
from models.train import FitResult, TrainConfig, fit

Normalise = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def _quiet_torchao() -> Iterator[None]:
    """torchao's import warns about torch.jit and CUDA-only kernels it cannot load; neither concerns CPU QAT."""
    with loggers_at(logging.ERROR, "torchao"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _pt2e() -> Any:
    with _quiet_torchao():
        from torchao.quantization.pt2e import (
            move_exported_model_to_eval,
            move_exported_model_to_train,
            quantize_pt2e,
        )
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer
    return quantize_pt2e, x86_inductor_quantizer, move_exported_model_to_train, move_exported_model_to_eval


class ExportedForTraining(nn.Module):
    """An exported graph the training loop can switch between train and eval (plain ``.train()`` is refused)."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph = graph
        _, _, self._to_train, self._to_eval = _pt2e()

    def train(self, mode: bool = True) -> ExportedForTraining:
        self.training = mode
        (self._to_train if mode else self._to_eval)(self.graph)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)


def prepare(
    student: nn.Module, calibration: np.ndarray, normalise: Normalise, batch_size: int = 64
) -> ExportedForTraining:
    """The student captured and fake-quantized, observers set on ``calibration`` (raw inputs)."""
    quantize_pt2e, x86, _, _ = _pt2e()
    student.eval()
    example = normalise(torch.from_numpy(calibration[:2]))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with _quiet_torchao():
        exported = torch.export.export(student, (example,), dynamic_shapes=({0: batch},)).module()
        quantizer = x86.X86InductorQuantizer().set_global(
            x86.get_default_x86_inductor_quantization_config(is_qat=True)
        )
        prepared = ExportedForTraining(quantize_pt2e.prepare_qat_pt2e(exported, quantizer))
    prepared.eval()
    with torch.no_grad():
        for start in range(0, len(calibration), batch_size):
            prepared(normalise(torch.from_numpy(calibration[start : start + batch_size])))
    return prepared


def quantization_aware_training(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    validation: Split,
    calibration: np.ndarray,
    config: TrainConfig,
    *,
    T: float,
    alpha: float,
    progress: bool = True,
) -> tuple[ExportedForTraining, FitResult]:
    """Fine-tune a fake-quantized copy of ``student`` with KD; return it converted to Q/DQ ops, in eval mode."""
    quantize_pt2e, _, _, _ = _pt2e()
    prepared = prepare(student, calibration, config.normalise)
    with _quiet_torchao():
        result = fit(
            prepared, train, validation, config,
            loss_fn=distillation_loss(teacher, T, alpha), name="student-qat", progress=progress,
        )  # fmt: skip
        prepared.eval()
        converted = ExportedForTraining(quantize_pt2e.convert_pt2e(prepared.graph))
    return converted.eval(), result
