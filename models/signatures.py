"""The I/O signature of a pre-built artifact: read from an ONNX graph or an OpenVINO model, or declared.

A TorchScript file carries no tensor names or shapes, so its signature is declared (flags) or the family's.
Whatever the source, the signature is then checked against what is declared and against the family's, and
every disagreement names the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contract.card import ArtifactFormat, Signature, TensorSpec

_ONNX_TYPES = {1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64", 9: "BOOL",
               10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64"}  # fmt: skip
_OPENVINO_TYPES = {"f32": "FP32", "f16": "FP16", "f64": "FP64", "u8": "UINT8", "i8": "INT8", "i16": "INT16",
                   "u16": "UINT16", "i32": "INT32", "i64": "INT64", "u32": "UINT32", "u64": "UINT64",
                   "boolean": "BOOL"}  # fmt: skip
INT8_ONNX_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "MatMulInteger",
                 "ConvInteger", "DynamicQuantizeLinear"}  # fmt: skip


class ImportRefused(Exception):
    """A pre-built artifact that cannot be imported as it is; the message names the flag, file or field."""


def _spec(name: str, datatype: str, shape: list[int], where: str) -> TensorSpec:
    try:
        return TensorSpec.model_validate({"name": name, "datatype": datatype, "shape": shape})
    except ValueError as exc:
        raise ImportRefused(f"{where}: unusable tensor {name!r} ({exc})") from None


def _only(items: list[Any], what: str, path: Path) -> Any:
    if len(items) != 1:
        raise ImportRefused(
            f"--file: {path.name} has {len(items)} {what}s; slimserve serves one input and one output"
        )
    return items[0]


def onnx_signature(path: Path) -> tuple[Signature, int, bool]:
    """The graph's signature, its parameter count (initializer elements) and whether it is quantized."""
    import numpy as np
    import onnx

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a file that is not a model
        raise ImportRefused(f"--file: {path.name} is not a readable ONNX model ({exc})") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in initializers]

    def spec(value: Any) -> TensorSpec:
        tensor = value.type.tensor_type
        shape = [dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor.shape.dim]
        return _spec(
            value.name, _ONNX_TYPES.get(tensor.elem_type, f"type {tensor.elem_type}"), shape, "--file"
        )

    signature = Signature(
        inputs=[spec(_only(inputs, "input", path))],
        outputs=[spec(_only(list(model.graph.output), "output", path))],
    )
    parameters = sum(int(np.prod(tensor.dims)) for tensor in model.graph.initializer)
    quantized = any(node.op_type in INT8_ONNX_OPS for node in model.graph.node)
    return signature, parameters, quantized


def openvino_signature(xml: Path) -> tuple[Signature, bool]:
    import openvino

    try:
        model = openvino.Core().read_model(str(xml), str(xml.with_suffix(".bin")))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable IR
        raise ImportRefused(f"--file: {xml.name} is not a readable OpenVINO model ({exc})") from None

    def spec(port: Any) -> TensorSpec:
        shape = [dim.get_length() if dim.is_static else -1 for dim in port.get_partial_shape()]
        datatype = _OPENVINO_TYPES.get(port.get_element_type().get_type_name(), str(port.get_element_type()))
        return _spec(port.get_any_name(), datatype, shape, "--file")

    signature = Signature(
        inputs=[spec(_only(list(model.inputs), "input", xml))],
        outputs=[spec(_only(list(model.outputs), "output", xml))],
    )
    quantized = any(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
    return signature, quantized


def differences(found: Signature, expected: Signature, *, prefix: str = "signature") -> list[str]:
    """Every field in which ``found`` differs from ``expected``, by path (``signature.outputs[0].shape``)."""
    problems = []
    for side in ("inputs", "outputs"):
        for index, (got, want) in enumerate(zip(getattr(found, side), getattr(expected, side), strict=False)):
            for field in ("name", "datatype", "shape"):
                if getattr(got, field) != getattr(want, field):
                    problems.append(
                        f"{prefix}.{side}[{index}].{field}: {getattr(got, field)} differs from {getattr(want, field)}"
                    )
    return problems


def check_servable(signature: Signature, fmt: ArtifactFormat) -> None:
    """A signature the service can batch and the protocol can carry: [batch, ...] in, [batch, classes] out."""
    tensor_in, tensor_out = signature.inputs[0], signature.outputs[0]
    if tensor_in.shape[0] != -1:
        raise ImportRefused(
            f"--file: input '{tensor_in.name}' has a fixed batch dimension {tensor_in.shape[0]}; "
            f"export the {fmt} model with a dynamic batch axis"
        )
    if len(tensor_out.shape) != 2 or tensor_out.shape[1] < 2:
        raise ImportRefused(
            f"--file: output '{tensor_out.name}' is shaped {tensor_out.shape}; expected [-1, classes]"
        )
