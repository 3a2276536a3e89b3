"""Post-training int8 for the portable formats, from the fp32 ONNX artifact and the same calibration digits.

- ONNX Runtime: static QDQ (``quantize_static``), per-channel int8 weights, uint8 activations, after ONNX
  Runtime's own pre-processing (shape inference and graph optimisation). The in-model preprocessing (the
  multiply-add on the raw input) stays fp32: raw features of very different ranges (tabular data) cannot
  share one uint8 scale.
- OpenVINO: the ONNX model converted to OpenVINO IR, then NNCF post-training quantization (statistics and
  fast bias correction) on the same digits; written without fp16 compression so fp32 parts stay fp32.
Neither touches torch's deprecated quantization APIs.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from models.quiet import loggers_at


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF draws progress bars on stdout and logs at INFO; a build log needs neither."""
    with loggers_at(logging.WARNING, "nncf"), contextlib.redirect_stdout(io.StringIO()):
        yield


def quantize_onnx_static(
    fp32: Path, out: Path, calibration: np.ndarray, input_name: str, batch: int = 64
) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{input_name: calibration[i : i + batch]} for i in range(0, len(calibration), batch)]
            )

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    prepared = out.with_name(f"{out.stem}.prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    try:
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            nodes_to_exclude=preprocessing_nodes(prepared),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    finally:
        prepared.unlink(missing_ok=True)


WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")


def preprocessing_nodes(path: Path) -> list[str]:
    """The nodes before the first weighted operation: the network's input preprocessing."""
    import onnx

    names = []
    for node in onnx.load(str(path)).graph.node:
        if node.op_type in WEIGHTED_OPS:
            break
        names.append(node.name)
    return names


def quantize_openvino(fp32: Path, out_xml: Path, calibration: np.ndarray) -> None:
    """Writes ``out_xml`` and the ``.bin`` beside it."""
    import nncf
    import openvino

    model = openvino.convert_model(str(fp32))
    with _quiet_nncf():
        dataset = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
        quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
    openvino.save_model(quantized, str(out_xml), compress_to_fp16=False)
