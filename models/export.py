"""Export a trained network, wrapped in its input preprocessing, as TorchScript or ONNX.

Both artifacts take raw pixels and return logits, exactly what a client sends and receives, so every format
of a family shares one I/O signature. ONNX goes through torch's ``torch.export``-based exporter (the legacy
TorchScript-based one is deprecated); TorchScript through ``contract.torchscript``, the one module that may
touch ``torch.jit``. The pipeline checks each artifact against its in-memory network before publishing.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from contract import torchscript
from contract.card import Signature
from contract.engines import use_engine
from models.architectures import MNIST_NORMALISER, Normaliser, Preprocess
from models.quiet import loggers_at


class ExportError(Exception):
    """An artifact that does not reproduce the in-memory model, or an exporter failure."""


def export_torchscript(
    net: nn.Module,
    path: Path,
    example: torch.Tensor,
    *,
    engine: str | None = None,
    normaliser: Normaliser = MNIST_NORMALISER,
) -> None:
    """Trace + freeze ``Preprocess(net)`` and save it; ``engine`` must be the quantized engine of an int8 net."""
    with use_engine(engine):
        torchscript.save_traced(Preprocess(net, normaliser), path, example)


def export_onnx(
    net: nn.Module,
    path: Path,
    example: torch.Tensor,
    signature: Signature,
    normaliser: Normaliser = MNIST_NORMALISER,
) -> None:
    """``Preprocess(net)`` as ONNX with a dynamic batch axis, tensors named as in ``signature``."""
    model = Preprocess(net, normaliser).eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        with (
            loggers_at(
                logging.WARNING, "torch.onnx", "onnxscript", "onnx_ir"
            ),  # INFO: every optimisation pass
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),  # the exporter prints its progress
            torch.inference_mode(False),
            torch.no_grad(),
        ):
            warnings.filterwarnings("ignore", category=FutureWarning, message=r".*LeafSpec")
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=True,
                input_names=[signature.inputs[0].name],
                output_names=[signature.outputs[0].name],
                dynamic_shapes=({0: batch},),
                external_data=False,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types; the build reports one
        raise ExportError(f"{path.name}: ONNX export failed ({exc})") from exc
