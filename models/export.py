"""TorchScript export: trace and freeze the Preprocess-wrapped model, then prove the file reproduces it.

Triton's libtorch backend and the service both load ``model.pt`` with ``torch.jit.load``; tracing (not
scripting) keeps the artifact a plain static graph, and freezing folds weights into constants.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models.architectures import Preprocess
from models.quantize import use_engine


class ExportError(Exception):
    """The saved TorchScript does not reproduce the in-memory model."""


def export_torchscript(
    net: nn.Module, path: Path, example: torch.Tensor, *, engine: str | None = None
) -> None:
    """Wrap ``net`` in Preprocess, trace + freeze in eval mode, save to ``path`` and verify the reload.

    ``example`` holds raw 0-255 pixels [N,1,28,28]; ``engine`` must be the quantized engine of an int8 net.
    """
    model = Preprocess(net).eval()
    with use_engine(engine), torch.inference_mode(False), torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
        frozen = torch.jit.freeze(traced)
        expected = model(example)
        torch.jit.save(frozen, str(path))
        reloaded = torch.jit.load(str(path))
        actual = reloaded(example)
    if actual.shape != expected.shape or not torch.allclose(actual, expected, rtol=1e-4, atol=1e-4):
        raise ExportError(f"{path}: reloaded TorchScript does not reproduce the model's outputs")
