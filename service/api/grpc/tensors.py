"""gRPC OIP tensors: typed ``contents`` or ``raw_input_contents`` in, raw outputs out."""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from service.codecs import decode_binary, decode_json, to_little_endian_bytes
from service.errors import InvalidInput
from service.protocol import InferRequest, InferResponse, RequestedOutput, Tensor

CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def parameter_value(parameter: pb.InferParameter) -> Any:
    kind = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, kind) if kind else None


def decode_request(message: pb.ModelInferRequest, max_elements: int) -> InferRequest:
    # each read of a protobuf field builds a Python object (a repeated one, a container): read each once
    raw = message.raw_input_contents
    items = message.inputs
    if raw and len(raw) != len(items):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(items)} inputs; give one per input"
        )
    inputs: list[Tensor] = []
    for index, item in enumerate(items):
        name, datatype, shape = item.name, item.datatype, item.shape[:]  # a list, quicker than list()
        if raw:
            array = decode_binary(name, datatype, shape, raw[index], max_elements)
        else:
            field = CONTENTS_FIELD.get(datatype)
            if field is None:
                raise InvalidInput(f"input '{name}': datatype '{datatype}' needs raw_input_contents")
            values = list(getattr(item.contents, field))
            array = decode_json(name, datatype, shape, values, max_elements)
        inputs.append(Tensor(name, datatype, array))
    parameters = (
        {key: parameter_value(value) for key, value in message.parameters.items()}
        if message.parameters
        else {}
    )
    wanted = message.outputs
    outputs = [RequestedOutput(output.name, binary=True) for output in wanted] if wanted else None
    return InferRequest(inputs, message.id or None, parameters, outputs, binary_outputs=True)


def encode_response(
    response: InferResponse, into: pb.ModelInferResponse | None = None
) -> pb.ModelInferResponse:
    """``response`` as a protobuf message; written ``into`` one that is already part of another (a stream's
    response) to spare copying it there, which cost a third of the encoding."""
    message = pb.ModelInferResponse() if into is None else into
    message.model_name = response.model_name
    message.model_version = response.model_version
    message.id = response.id or ""
    for key, value in response.parameters.items():
        message.parameters[key].string_param = str(value)
    for tensor in response.outputs:
        message.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        message.raw_output_contents.append(to_little_endian_bytes(tensor.array))
    return message
