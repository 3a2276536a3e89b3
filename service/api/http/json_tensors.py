"""OIP JSON bodies through simdjson: an FP32 input's ``data`` goes from JSON text to an array in C.

orjson builds one Python float per element and numpy then reads them back: for a one-digit request (784
values) that was 29 µs on one core, the largest row of the request's budget after the transport. simdjson
parses the body into its own tape and exports a flat numeric array as a buffer of doubles: 11 µs for the
same body. Everything else in the document becomes Python as before and goes through the same pydantic
model and the same checks. A body this path does not take whole (invalid JSON, duplicate keys, nested or
non-numeric ``data``, another datatype) returns None, and the general decoder reads it and gives the errors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import simdjson

FLOAT_DATATYPE = "FP32"


def split_float_data(body: bytes) -> tuple[dict[str, Any], dict[int, np.ndarray]] | None:
    """The document with each FP32 input's flat ``data`` taken out as float64 values (by input index)."""
    try:
        # one parser per call: its tape is this request's alone
        document: Any = simdjson.Parser().parse(body)
    except (ValueError, RuntimeError):  # invalid JSON or UTF-8, an integer past 64 bits
        return None
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
            try:
                taken[index] = np.frombuffer(value.as_buffer(of_type="d"), dtype=np.float64)
            except (TypeError, ValueError, RuntimeError):  # a non-number, or a number out of range
                return None
        else:
            entry[field] = _plain(value)
    return entry


def _all_flat(body: bytes, skeleton: dict[str, Any], taken: dict[int, np.ndarray]) -> bool:
    """Whether every taken ``data`` was a flat list (``as_buffer`` flattens nested ones, even ragged).

    Counted, not walked: with no escapes in the body, each '[' in it opens a list of the skeleton, sits in
    one of its strings, or opens a taken array; so the counts match only if each taken array has one. The
    skeleton's own are counted in its JSON text (JSON never escapes '['), which orjson writes in C: walking
    it in Python was a fifth of the decoding.
    """
    if b"\\" in body:
        return False
    try:
        skeleton_text = orjson.dumps(skeleton)
    except orjson.JSONEncodeError:
        return False  # nothing simdjson parsed should fail; if it does, the general decoder decides
    return body.count(b"[") == skeleton_text.count(b"[") + len(taken)


def _unique_keys(value: Any) -> list[str] | None:
    keys = list(value.keys())
    return keys if len(keys) == len(set(keys)) else None


def _plain(value: Any) -> Any:
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    if isinstance(value, simdjson.Array):
        return value.as_list()
    return value
