"""Checking a decoded request against a variant's I/O signature; every message names the tensor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.card import Signature, shape_fits
from service.codecs import NUMPY_DTYPES
from service.errors import InvalidInput
from service.protocol import InferRequest, RequestedOutput


def prepare_input(model: str, signature: Signature, request: InferRequest, *, max_rows: int) -> np.ndarray:
    """The single input as the model takes it: right shape, converted datatype, a fresh writable array.

    NaN and infinities are refused by the batcher (``FiniteCheck``), once per batch.
    """
    spec = signature.inputs[0]
    inputs = request.inputs
    for tensor in inputs:
        if tensor.name != spec.name:
            raise InvalidInput(f"unknown input '{tensor.name[:64]}': model '{model}' takes '{spec.name}'")
    if len(inputs) != 1:
        raise InvalidInput(f"input '{spec.name}' is given {len(inputs)} times")
    array = inputs[0].array
    expected = spec.shape
    if not shape_fits(expected, array.shape):
        raise InvalidInput(f"input '{spec.name}': expected shape {expected}, got {list(array.shape)}")
    rows = array.shape[0]
    if rows < 1 or rows > max_rows:
        raise InvalidInput(
            f"input '{spec.name}': batch of {rows} rows; between 1 and {max_rows} are accepted"
        )
    wanted = NUMPY_DTYPES[spec.datatype]
    # the decoders make a fresh, writable array per request: only another datatype (or a read-only array) copies
    return array if array.dtype == wanted and array.flags.writeable else array.astype(wanted)


@dataclass(frozen=True, slots=True)
class FiniteCheck:
    """Refuses requests with NaN or infinite values, run by the batcher on a whole batch at once.

    numpy releases the GIL for an array of this size, and on the event loop that hands the interpreter to
    the inference thread and back: measured on one core at 64 connections, checking each one-digit request
    cost a fifth of the service's throughput; checking the batch costs the same switch once per batch.
    """

    tensor: str

    def refused_rows(self, batch: np.ndarray) -> np.ndarray | None:
        """A mask of the rows to refuse, or None when every row is finite."""
        finite = np.isfinite(batch.reshape(batch.shape[0], -1)).all(axis=1)
        return None if finite.all() else ~finite

    def error(self) -> InvalidInput:
        return InvalidInput(f"input '{self.tensor}': NaN or infinite values are not accepted")


def select_outputs(model: str, signature: Signature, request: InferRequest) -> list[RequestedOutput]:
    if request.outputs is None:
        binary = request.binary_outputs
        return [RequestedOutput(spec.name, binary=binary) for spec in signature.outputs]
    known = [spec.name for spec in signature.outputs]
    for wanted in request.outputs:
        if wanted.name not in known:
            raise InvalidInput(f"unknown output '{wanted.name[:64]}': model '{model}' has {', '.join(known)}")
    return request.outputs
