"""Checking a decoded request against a variant's I/O signature; every message names the tensor."""

from __future__ import annotations

import numpy as np

from contract.card import Signature
from service.codecs import NUMPY_DTYPES
from service.errors import InvalidInput
from service.protocol import InferRequest, RequestedOutput


def prepare_input(
    model: str, signature: Signature, request: InferRequest, *, max_rows: int, allow_non_finite: bool
) -> np.ndarray:
    """The single input as the model takes it: right shape, converted datatype, a fresh writable array."""
    spec = signature.inputs[0]
    names = [tensor.name for tensor in request.inputs]
    for name in names:
        if name != spec.name:
            raise InvalidInput(f"unknown input '{name[:64]}': model '{model}' takes '{spec.name}'")
    if len(names) != 1:
        raise InvalidInput(f"input '{spec.name}' is given {len(names)} times")
    array = request.inputs[0].array
    expected = spec.shape
    if array.ndim != len(expected) or any(
        want not in (-1, got) for want, got in zip(expected, array.shape, strict=True)
    ):
        raise InvalidInput(f"input '{spec.name}': expected shape {expected}, got {list(array.shape)}")
    rows = array.shape[0]
    if rows < 1 or rows > max_rows:
        raise InvalidInput(
            f"input '{spec.name}': batch of {rows} rows; between 1 and {max_rows} are accepted"
        )
    converted = array.astype(NUMPY_DTYPES[spec.datatype])  # always a copy: writable, owned by the batch
    if not allow_non_finite and not np.isfinite(converted).all():
        raise InvalidInput(f"input '{spec.name}': NaN or infinite values are not accepted")
    return converted


def select_outputs(model: str, signature: Signature, request: InferRequest) -> list[RequestedOutput]:
    known = [spec.name for spec in signature.outputs]
    if request.outputs is None:
        return [RequestedOutput(name, binary=request.binary_outputs) for name in known]
    for wanted in request.outputs:
        if wanted.name not in known:
            raise InvalidInput(f"unknown output '{wanted.name[:64]}': model '{model}' has {', '.join(known)}")
    return request.outputs
