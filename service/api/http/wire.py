"""HTTP wire format of OIP inference: JSON tensors and Triton's binary tensor extension.

A binary request is a JSON header of ``Inference-Header-Content-Length`` bytes followed by the raw
tensors, in input order, each ``parameters.binary_data_size`` long. A response carries binary outputs the
same way when the client asked for them (``binary_data`` per output, or ``binary_data_output``).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.types import Receive

from service.api.http.json_tensors import (
    FLOAT_DATATYPE,
    PlainInput,
    parse_document,
    plain_float_inputs,
    split_float_data,
)
from service.codecs import decode_binary, decode_float_values, decode_json, to_little_endian_bytes
from service.errors import InvalidInput, PayloadTooLarge
from service.protocol import InferRequest, InferResponse, RequestedOutput, Tensor, WireInferRequest

HEADER_LENGTH = "inference-header-content-length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes:
    """The request body, decompressed, refusing more than ``limit`` bytes before reading it all."""
    declared = headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise InvalidInput("the client disconnected before sending the whole body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # a body that came whole is not copied
    encoding = headers.get("content-encoding")
    if encoding is None:
        return body
    encoding = encoding.lower()
    if encoding in ("gzip", "deflate"):
        return _decompress(body, encoding, limit)
    if encoding != "identity":
        raise InvalidInput(f"Content-Encoding '{encoding[:32]}' is not supported (gzip, deflate)")
    return body


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InvalidInput(f"request body is not valid {encoding} data") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed request body exceeds the limit of {limit} bytes")
    return data


def validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


def parse_json(data: bytes | memoryview, what: str = "request body") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"{what} is not valid JSON") from None


def decode_infer_request(body: bytes, header_length: str | None, max_elements: int) -> InferRequest:
    view = memoryview(body)
    if header_length is not None:
        if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
            raise InvalidInput(
                f"Inference-Header-Content-Length must be a byte count within the body ({len(body)} bytes)"
            )
        json_part, binary = view[: int(header_length)], view[int(header_length) :]
    else:
        json_part, binary = view, view[:0]
    split = None
    if header_length is None:  # the whole body is JSON
        parsed = parse_document(body)
        plain = plain_float_inputs(parsed, body)
        if plain is not None:
            return _plain_request(*plain, max_elements)
        split = split_float_data(parsed, body)  # None too when simdjson could not read it
        del parsed  # simdjson's tape, as large as the body: nothing below reads it
    document, taken = split if split is not None else (parse_json(json_part), {})
    try:
        wire = WireInferRequest.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput(validation_message(exc)) from None

    inputs: list[Tensor] = []
    offset = 0
    for index, item in enumerate(wire.inputs):
        size = (item.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise InvalidInput(f"input '{item.name}': binary_data_size {size!r} does not fit the body")
            chunk = binary[offset : offset + size]
            array = decode_binary(item.name, item.datatype, item.shape, chunk, max_elements)
            offset += size
        elif index in taken:
            array = decode_float_values(item.name, item.datatype, item.shape, taken[index], max_elements)
        elif item.data is not None:
            array = decode_json(item.name, item.datatype, item.shape, item.data, max_elements)
        else:
            raise InvalidInput(f"input '{item.name}': neither 'data' nor 'parameters.binary_data_size' given")
        inputs.append(Tensor(item.name, item.datatype, array))
    if offset != len(binary):
        raise InvalidInput(f"body has {len(binary) - offset} bytes of binary data that no input claims")

    parameters = wire.parameters or {}
    binary_default = parameters.get("binary_data_output") is True
    outputs = None
    if wire.outputs is not None:
        outputs = []
        for output in wire.outputs:
            flags = output.parameters or {}
            unsupported = sorted(set(flags) - {"binary_data"})
            if unsupported:
                raise InvalidInput(f"output '{output.name}': parameter '{unsupported[0]}' is not supported")
            binary_output = flags.get("binary_data", binary_default) is True
            outputs.append(RequestedOutput(output.name, binary=binary_output))
    return InferRequest(inputs, wire.id, parameters, outputs, binary_default)


def _plain_request(request_id: str | None, inputs: list[PlainInput], max_elements: int) -> InferRequest:
    tensors = [
        Tensor(name, FLOAT_DATATYPE, decode_float_values(name, FLOAT_DATATYPE, shape, values, max_elements))
        for name, shape, values in inputs
    ]
    return InferRequest(tensors, request_id)


def encode_infer_response(response: InferResponse) -> tuple[bytes, dict[str, str]]:
    """Body and headers; binary outputs follow the JSON header when the client asked for them."""
    outputs: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for tensor in response.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        if tensor.parameters.get("binary_data"):
            raw = to_little_endian_bytes(tensor.array)
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = tensor.array.ravel()
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": response.model_name, "model_version": response.model_version}
    if response.id is not None:
        document["id"] = response.id
    document["parameters"] = response.parameters
    document["outputs"] = outputs
    header = orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY)
    if not chunks:
        return header, {"content-type": JSON_TYPE}
    return header + b"".join(chunks), {"content-type": BINARY_TYPE, HEADER_LENGTH: str(len(header))}
