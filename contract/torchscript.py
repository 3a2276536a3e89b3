"""The one module that touches ``torch.jit`` (deprecated in torch 2.13 in favour of torch.export).

TorchScript stays a published format because Triton's libtorch backend loads it and the legacy int8
kernels (fbgemm/x86, qnnpack) exist only there; new formats (ONNX, OpenVINO) do not go through here.
The test configuration turns torch's deprecation warnings into errors in every other module.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def save_traced(module: nn.Module, path: Path, example: torch.Tensor) -> None:
    """Trace and freeze ``module`` (eval mode) on ``example`` and save it: a plain static graph."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        with torch.inference_mode(False), torch.no_grad():
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
            torch.jit.save(torch.jit.freeze(traced), str(path))


def load(path: Path, *, optimize: bool = False) -> torch.jit.ScriptModule:
    """Load for CPU inference; ``optimize`` (fp32 only) fuses and folds the graph for this CPU's oneDNN.

    The fused graph is specific to this CPU build, which is why it is made at load and never published.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        module = torch.jit.load(str(path), map_location="cpu")
        module.eval()
        if optimize:
            module = torch.jit.optimize_for_inference(module)
    return module
