"""Tensor <-> numpy conversion for OIP JSON ``data`` and the Triton binary tensor extension."""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from service.errors import InvalidInput

LITTLE_ENDIAN_HOST = sys.byteorder == "little"

NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
GIL_HELD_ELEMENTS = 500  # numpy's loops release the GIL above this many elements
CAST_IN_SLICES_UP_TO = 16 * GIL_HELD_ELEMENTS
DATATYPES: dict[np.dtype[Any], str] = {dtype: name for name, dtype in NUMPY_DTYPES.items()}


def numpy_dtype(tensor: str, datatype: str) -> np.dtype[Any]:
    try:
        return NUMPY_DTYPES[datatype]
    except KeyError:
        raise InvalidInput(
            f"input '{tensor}': unsupported datatype '{datatype}' (supported: {', '.join(NUMPY_DTYPES)})"
        ) from None


def element_count(tensor: str, shape: list[int], limit: int) -> int:
    if shape and min(shape) < 0:
        raise InvalidInput(f"input '{tensor}': shape {shape} has a negative dimension")
    count = math.prod(shape)
    if count > limit:
        raise InvalidInput(
            f"input '{tensor}': shape {shape} has {count} elements, more than the limit of {limit}"
        )
    return count


def decode_json(
    tensor: str, datatype: str, shape: list[int], data: list[Any], max_elements: int
) -> np.ndarray:
    """Decode flat row-major or nested ``data`` into an array of exactly ``shape``."""
    dtype = numpy_dtype(tensor, datatype)
    expected = element_count(tensor, shape, max_elements)
    try:
        with np.errstate(over="ignore"):  # past the datatype's range is inf, which the finite check refuses
            array = np.asarray(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input '{tensor}': data must be a flat or evenly nested list of {datatype} values"
        ) from None
    return _shaped(tensor, shape, array, expected)


def decode_float_values(
    tensor: str, datatype: str, shape: list[int], values: np.ndarray, max_elements: int
) -> np.ndarray:
    """``data`` a JSON parser already read as flat float64 values, as an array of ``datatype`` and ``shape``."""
    dtype = numpy_dtype(tensor, datatype)
    expected = element_count(tensor, shape, max_elements)
    with np.errstate(over="ignore"):  # as decode_json: past the datatype's range is inf
        return cast_holding_gil(_shaped(tensor, shape, values, expected), dtype)


def _shaped(tensor: str, shape: list[int], array: np.ndarray, expected: int) -> np.ndarray:
    if array.size != expected:
        raise InvalidInput(
            f"input '{tensor}': shape {shape} needs {expected} elements, data has {array.size}"
        )
    return array.reshape(shape)


def cast_holding_gil(values: np.ndarray, dtype: np.dtype[Any]) -> np.ndarray:
    """``values.astype(dtype)`` (same shape), without releasing the GIL for a request-sized array.

    numpy releases the GIL for a cast of more than 500 elements. On the event loop, with an inference
    thread waiting for it, that is a thread switch there and back for every request, which cost more than
    the cast; slices of 500 stay under numpy's threshold. Large arrays are cast whole.
    """
    if values.size > CAST_IN_SLICES_UP_TO:
        return values.astype(dtype)
    cast = np.empty(values.size, dtype=dtype)
    flat = values.reshape(-1)
    for start in range(0, values.size, GIL_HELD_ELEMENTS):
        cast[start : start + GIL_HELD_ELEMENTS] = flat[start : start + GIL_HELD_ELEMENTS]
    return cast.reshape(values.shape)


def decode_binary(
    tensor: str, datatype: str, shape: list[int], raw: bytes | memoryview, max_elements: int
) -> np.ndarray:
    dtype = numpy_dtype(tensor, datatype)
    expected = element_count(tensor, shape, max_elements) * dtype.itemsize
    if len(raw) != expected:
        raise InvalidInput(
            f"input '{tensor}': shape {shape} of {datatype} needs {expected} bytes, got {len(raw)}"
        )
    # bytearray copies under the GIL: numpy's own copy of an array this size would release it (see
    # service.signature.FiniteCheck), and the array must be writable and the request's own anyway
    return np.ndarray(shape, dtype, bytearray(raw))  # half the time of frombuffer(...).reshape(shape)


def datatype_of(array: np.ndarray) -> str:
    return DATATYPES[array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype]


def to_little_endian_bytes(array: np.ndarray) -> bytes:
    if LITTLE_ENDIAN_HOST and array.dtype.byteorder != ">":
        return array.tobytes()  # C order, whatever the strides; the common case, five times quicker
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
