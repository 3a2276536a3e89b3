"""OIP JSON bodies through simdjson: an FP32 input's ``data`` goes from JSON text to an array in C.

orjson builds one Python float per element and numpy then reads them back: for a one-digit request (784
values) that was 29 µs on one core, the largest row of the request's budget after the transport. simdjson
parses the body into its own tape and exports a flat numeric array as a buffer of doubles: 11 µs for the
same body. The commonest body (an id and flat FP32 inputs) is then read straight from simdjson's document
(``plain_float_inputs``); in any other, everything but the taken ``data`` becomes Python as before and goes
through the same pydantic model and the same checks (``split_float_data``). A body neither takes whole
(invalid JSON, duplicate keys, nested or non-numeric ``data``, another datatype) returns None, and the
general decoder reads it and gives the errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import simdjson

FLOAT_DATATYPE = "FP32"


PLAIN_REQUEST_KEYS = frozenset({"id", "inputs"})
PLAIN_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data"})
MAX_NAME_CHARS = 256  # WireInput.name's and WireInferRequest.id's max_length
MAX_INPUTS = 64  # WireInferRequest.inputs' max_length

PlainInput = tuple[str, list[int], np.ndarray]  # name, shape, flat float64 values


def parse_document(body: bytes) -> Any:
    """The body as simdjson's document, or None when simdjson cannot read it (the general decoder says why)."""
    try:
        # one parser per call: its tape is this request's alone (the document keeps its parser alive)
        return simdjson.Parser().parse(body)
    except (ValueError, RuntimeError):  # invalid JSON or UTF-8, an integer past 64 bits
        return None


def plain_float_inputs(document: Any, body: bytes) -> tuple[str | None, list[PlainInput]] | None:
    """The request id and inputs of the commonest body, read without a skeleton or pydantic.

    That body is ``{"id"?, "inputs"}`` whose inputs are exactly name, shape, datatype FP32 and flat ``data``
    (what curl users and our clients send). Each field is taken only with the exact Python type the wire
    model would produce from it, so the request is the one the general path builds; anything else (other
    fields, coercible types, outputs, parameters, nested data) returns None and takes ``split_float_data``.
    Skipping the skeleton, its flatness text and the model's validation saved a third of the decoding.
    """
    if not isinstance(document, simdjson.Object):
        return None
    keys = _unique_keys(document)
    if keys is None or "inputs" not in keys or not PLAIN_REQUEST_KEYS.issuperset(keys):
        return None
    request_id = document["id"] if "id" in keys else None  # simdjson's get() of a missing key costs 2 µs
    if request_id is not None and (type(request_id) is not str or len(request_id) > MAX_NAME_CHARS):
        return None
    items = document["inputs"]
    if not isinstance(items, simdjson.Array) or not 0 < len(items) <= MAX_INPUTS:
        return None
    inputs: list[PlainInput] = []
    for item in items:
        if not isinstance(item, simdjson.Object):
            return None
        fields = _unique_keys(item)
        if fields is None or len(fields) != len(PLAIN_INPUT_KEYS) or not PLAIN_INPUT_KEYS.issuperset(fields):
            return None
        name, shape, data = item["name"], item["shape"], item["data"]
        if (
            item["datatype"] != FLOAT_DATATYPE
            or type(name) is not str
            or not 0 < len(name) <= MAX_NAME_CHARS
            or not isinstance(shape, simdjson.Array)
            or not isinstance(data, simdjson.Array)
        ):
            return None
        dims: list[Any] = shape.as_list()
        if any(type(dim) is not int for dim in dims):
            return None
        values = _float_values(data)
        if values is None:
            return None
        inputs.append((name, dims, values))
    # the body's other lists: ``inputs`` and each input's shape
    return (request_id, inputs) if _only_flat_data(body, 1 + len(inputs), len(inputs)) else None


def split_float_data(document: Any, body: bytes) -> tuple[dict[str, Any], dict[int, np.ndarray]] | None:
    """``body``'s document with each FP32 input's flat ``data`` taken out as float64 values (by input index)."""
    keys = _unique_keys(document) if isinstance(document, simdjson.Object) else None
    if keys is None:
        return None
    skeleton: dict[str, Any] = {}
    taken: dict[int, np.ndarray] = {}
    for key in keys:
        value = document[key]
        if key == "inputs" and isinstance(value, simdjson.Array):
            inputs = [_input(index, item, taken) for index, item in enumerate(value)]
            if any(item is None for item in inputs):
                return None
            skeleton[key] = inputs
        else:
            skeleton[key] = _plain(value)
    if taken and not _all_flat(body, skeleton, taken):
        return None  # nested data: the general decoder checks that it is even
    return skeleton, taken


def _input(index: int, item: Any, taken: dict[int, np.ndarray]) -> Any:
    if not isinstance(item, simdjson.Object):
        return _plain(item)
    fields = _unique_keys(item)
    if fields is None:
        return None
    entry: dict[str, Any] = {}
    for field in fields:
        value = item[field]
        if field == "data" and isinstance(value, simdjson.Array) and item.get("datatype") == FLOAT_DATATYPE:
            values = _float_values(value)
            if values is None:
                return None
            taken[index] = values
        else:
            entry[field] = _plain(value)
    return entry


def _float_values(data: Any) -> np.ndarray | None:
    """A simdjson array's numbers as float64, flattened; None for a non-number or a number out of range."""
    try:
        return np.frombuffer(data.as_buffer(of_type="d"), dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _all_flat(body: bytes, skeleton: dict[str, Any], taken: dict[int, np.ndarray]) -> bool:
    """Whether every taken ``data`` was a flat list, the skeleton's own lists counted in its JSON text.

    orjson writes the text in C (JSON never escapes '['): walking the skeleton in Python was a fifth of the
    decoding.
    """
    try:
        skeleton_text = orjson.dumps(skeleton)
    except orjson.JSONEncodeError:
        return False  # nothing simdjson parsed should fail; if it does, the general decoder decides
    return _only_flat_data(body, skeleton_text.count(b"["), len(taken))


def _only_flat_data(body: bytes, other_lists: int, taken: int) -> bool:
    """Whether each of the ``taken`` data arrays was a flat list (``as_buffer`` flattens nested ones, even
    ragged), given the number of the body's other lists.

    Counted, not walked: with no escapes in the body, each '[' in it opens one of the other lists, sits in a
    string, or opens a taken array; so the count matches only if each taken array has one.
    """
    return b"\\" not in body and body.count(b"[") == other_lists + taken


def _unique_keys(value: Any) -> list[str] | None:
    keys = list(value.keys())
    return keys if len(keys) == len(set(keys)) else None


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
