"""Post-training int8 quantization; the only module that imports the (deprecated) ``torch.ao.quantization``.

Static int8 uses FX graph mode (``prepare_fx`` / ``convert_fx``) with the engine's own default qconfig
mapping, calibrated on a recorded number of training samples. Dynamic int8 quantizes Linear layers only.
``torch.backends.quantized.engine`` is process-global, so it is set only inside ``contract.engines.use_engine``
while preparing, converting and tracing, and restored afterwards.

Engine at load/run time (measured with torch 2.13.0+cpu; kept true by tests/models/test_quantize.py): a
TorchScript int8 model traced and frozen under one engine DOES load and run when
``torch.backends.quantized.engine`` is another supported engine at load/run time. Only the engine in
effect at ``torch.jit.load`` matters: the frozen weights are re-packed for it then, and changing the engine
afterwards does not change the outputs. Under a foreign load engine nothing crashes; outputs differ only by
kernel rounding (x86 model loaded under qnnpack or vice versa: max |Δlogit| ~ 5e-3..1e-2, argmax agreement
≥ 99.5% on real digits) and are identical among x86, fbgemm and onednn. So a server should set the card's
``quantization.engine`` before ``torch.jit.load`` to reproduce the published metrics exactly (qnnpack kernels
are also much slower on x86 CPUs than the x86/fbgemm ones).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from contract.engines import use_engine

STATIC_ENGINES = ("x86", "qnnpack")


@torch.inference_mode(False)
def quantize_static(
    net: nn.Module, calibration_inputs: torch.Tensor, engine: str, batch_size: int = 256
) -> nn.Module:
    """FX static int8 of a bare (already normalised-input) network; the input stays fp32 at the boundary."""
    with use_engine(engine):
        model = copy.deepcopy(net).eval()
        example = (calibration_inputs[:1],)
        prepared = prepare_fx(model, get_default_qconfig_mapping(engine), example)
        with torch.no_grad():
            for start in range(0, len(calibration_inputs), batch_size):
                prepared(calibration_inputs[start : start + batch_size])
        return convert_fx(prepared)


def quantize_dynamic_linear(net: nn.Module, engine: str) -> nn.Module:
    """Dynamic int8 for Linear layers only: weights int8, activations quantized on the fly."""
    with use_engine(engine):
        return quantize_dynamic(copy.deepcopy(net).eval(), {nn.Linear}, dtype=torch.qint8)
