"""Generated requests: schemathesis over the whole OpenAPI spec, hypothesis over tensor decoding."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import orjson
import schemathesis
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err

from service.api.http.json_tensors import parse_document, plain_float_inputs, split_float_data
from service.api.http.wire import decode_infer_request
from service.codecs import NUMPY_DTYPES, decode_binary, decode_json
from service.errors import InvalidInput, SlimServeError
from service.protocol import InferRequest
from tests.harness import RunningService

LIMIT = 1 << 20


EXAMPLES_PER_OPERATION = 30


def test_no_generated_request_gets_a_5xx_and_every_4xx_says_why(service: RunningService) -> None:
    """schemathesis generates requests for every operation of the live server's OpenAPI spec."""
    api = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    calls: list[tuple[str, int]] = []
    for result in api.get_all_operations():
        if isinstance(result, Err):
            raise AssertionError(f"the spec has an invalid operation: {result.err()}")
        operation = result.ok()

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(operation.as_strategy())
        def exercise(case: Any) -> None:
            response = case.call(timeout=30)
            calls.append((case.operation.label, response.status_code))
            case.validate_response(response, checks=[not_a_server_error])
            if 400 <= response.status_code < 500:
                assert isinstance(response.json().get("error"), str), (
                    f"{case.operation.label}: {response.text}"
                )

        exercise()
    assert len({label for label, _ in calls}) >= 20, "every operation was exercised"
    assert len(calls) >= 300, f"only {len(calls)} generated requests"
    assert not [status for _, status in calls if status >= 500]


DATATYPES = sorted(NUMPY_DTYPES)
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5)


@st.composite
def tensors(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(DATATYPES))
    dtype = NUMPY_DTYPES[datatype]
    elements = hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False) if dtype.kind == "f" else None
    array = draw(hnp.arrays(dtype, draw(shapes), elements=elements))
    return datatype, array


@given(tensors())
def test_json_flat_and_nested_and_binary_decode_to_the_same_array(tensor: tuple[str, np.ndarray]) -> None:
    datatype, array = tensor
    shape = list(array.shape)
    flat = decode_json("x", datatype, shape, array.ravel().tolist(), LIMIT)
    nested = decode_json("x", datatype, shape, array.tolist(), LIMIT)
    binary = decode_binary("x", datatype, shape, array.tobytes(), LIMIT)
    for decoded in (flat, nested, binary):
        assert decoded.dtype == array.dtype and decoded.shape == array.shape
        np.testing.assert_array_equal(decoded, array)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4),
    max_leaves=20,
)


@given(
    st.sampled_from([*DATATYPES, "BYTES", "fp32"]),
    st.lists(st.integers(-2, 6), max_size=4),
    st.lists(json_values, max_size=30),
)
@example("FP32", [1], [1e300])  # past FP32's range: inf, without a warning (the suite makes warnings errors)
def test_any_json_data_decodes_or_says_why(datatype: str, shape: list[int], data: list[Any]) -> None:
    try:
        decoded = decode_json("x", datatype, shape, data, LIMIT)
    except InvalidInput as error:
        assert "input 'x'" in error.message
    else:
        assert list(decoded.shape) == shape


@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(-5, 400).map(str), st.text(max_size=4)))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_any_body_decodes_or_raises_a_client_error(body: bytes, header_length: str | None) -> None:
    try:
        decode_infer_request(body, header_length, LIMIT)
    except SlimServeError as error:
        assert 400 <= error.http_status < 500


bounded_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(width=64) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4),
    max_leaves=40,
)


@given(
    st.sampled_from(["FP32", "FP32", "FP64", "INT32"]),
    st.lists(st.integers(-1, 6), max_size=3),
    st.one_of(st.lists(st.floats(width=32) | st.integers(-(2**40), 2**40), max_size=30), bounded_json_values),
)
def test_a_json_body_decodes_alike_through_simdjson_and_the_general_decoder(
    datatype: str, shape: list[int], data: Any
) -> None:
    """A pure JSON body takes the simdjson path; the same bytes as a binary request's JSON header (a header
    length covering the whole body) take the general one: same array, or the same error."""
    body = orjson.dumps(
        {"id": "r", "inputs": [{"name": "x", "shape": shape, "datatype": datatype, "data": data}]}
    )
    outcomes: list[np.ndarray | str] = []
    for header_length in (None, str(len(body))):
        try:
            with warnings.catch_warnings():  # both paths cast 1e39 to an FP32 inf, which numpy warns about
                warnings.simplefilter("ignore", RuntimeWarning)
                outcomes.append(decode_infer_request(body, header_length, LIMIT).inputs[0].array)
        except InvalidInput as error:
            outcomes.append(error.message)
    fast, general = outcomes
    if isinstance(general, str):
        assert fast == general
    else:
        assert isinstance(fast, np.ndarray) and fast.dtype == general.dtype and fast.flags.writeable
        np.testing.assert_array_equal(fast, general)


def decoded_both_ways(body: bytes) -> tuple[InferRequest | str, InferRequest | str]:
    """``body`` as a JSON body (the simdjson paths) and as a binary request's header (the general decoder)."""
    outcomes: list[InferRequest | str] = []
    for header_length in (None, str(len(body))):
        try:
            with warnings.catch_warnings():  # both paths cast 1e39 to an FP32 inf, which numpy warns about
                warnings.simplefilter("ignore", RuntimeWarning)
                outcomes.append(decode_infer_request(body, header_length, LIMIT))
        except InvalidInput as error:
            outcomes.append(error.message)
    return outcomes[0], outcomes[1]


envelope_values = st.sampled_from(
    [None, "r", "", "é[", "x" * 256, "x" * 257, 5, 2.0, True, [1], {"a": 1}, "FP32", "INT32"]
)
envelope_changes = st.one_of(  # one field of the commonest body, changed
    st.tuples(st.just("id"), envelope_values),
    st.tuples(st.just("name"), envelope_values),
    st.tuples(st.just("datatype"), envelope_values),
    st.tuples(
        st.just("shape"),
        st.lists(st.one_of(st.integers(-1, 3), st.sampled_from([2.0, True, "2", None])), max_size=3),
    ),
    st.tuples(
        st.just("request"),
        st.sampled_from(
            [
                {"parameters": {}},
                {"parameters": {"binary_data_output": True}},
                {"parameters": {"a": [1]}},
                {"outputs": [{"name": "y"}]},
                {"other": 1},
            ]
        ),
    ),
    st.tuples(st.just("drop"), st.sampled_from(["name", "shape", "datatype", "data"])),
    st.tuples(st.just("data"), st.sampled_from([5, "x", None, {"a": 1}, [[0.5, 2.0], []], [0.5, True]])),
    st.tuples(st.just("input"), st.sampled_from([{"parameters": {}}, {"other": 1}])),
    st.tuples(st.just("inputs"), st.sampled_from([0, 2, 64, 65])),
)


@given(st.lists(envelope_changes, max_size=2))
@example([])
@example([("shape", [2.0])])
@example([("id", "x" * 257)])
@example([("name", "")])
@example([("inputs", 65)])
@example([("data", 5)])
def test_any_json_envelope_decodes_alike_through_simdjson_and_the_general_decoder(
    changes: list[tuple[str, Any]],
) -> None:
    """Around flat FP32 data, the fields the plain path reads with exact types only: the same request (id,
    inputs, parameters, outputs) or the same error as the general decoder, whichever path took it."""
    item: dict[str, Any] = {"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, 2.0]}
    document: dict[str, Any] = {"id": "r"}
    copies = 1
    for field, value in changes:
        if field in ("name", "shape", "datatype", "data"):
            item[field] = value
        elif field == "id":
            document["id"] = value
        elif field == "request":
            document |= value
        elif field == "input":
            item |= value
        elif field == "drop":
            item.pop(value, None)
        elif field == "inputs":
            copies = value
    document["inputs"] = [item] * copies
    fast, general = decoded_both_ways(orjson.dumps(document))
    if isinstance(general, str):
        assert fast == general
        return
    assert isinstance(fast, InferRequest)
    assert (fast.id, fast.parameters, fast.outputs, fast.binary_outputs) == (
        general.id, general.parameters, general.outputs, general.binary_outputs
    )  # fmt: skip
    assert [(t.name, t.datatype, t.parameters) for t in fast.inputs] == [
        (t.name, t.datatype, t.parameters) for t in general.inputs
    ]
    for mine, theirs in zip(fast.inputs, general.inputs, strict=True):
        assert mine.array.dtype == theirs.array.dtype and mine.array.flags.writeable
        np.testing.assert_array_equal(mine.array, theirs.array)


def test_the_commonest_body_is_read_without_the_skeleton_and_anything_else_is_not() -> None:
    def body(**fields: Any) -> bytes:
        item = {"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, 2]}
        return orjson.dumps({"id": "r", "inputs": [{**item, **fields}]})

    request_id, inputs = plain_float_inputs(parse_document(body()), body())  # type: ignore[misc]
    assert request_id == "r" and [(name, shape) for name, shape, _ in inputs] == [("x", [2])]
    np.testing.assert_array_equal(inputs[0][2], [0.5, 2.0])
    for declined in (
        body(data=[[0.5], [2]]),
        body(data=[[0.5, 2], []]),  # ragged, and as long as flat: only the count of '[' tells
        body(name="[x"),
        body(shape=[2.0]),
        body(shape=[True]),
        body(datatype="FP64"),
        body(parameters={}),
        orjson.dumps({"inputs": [], "outputs": []}),
        orjson.dumps(
            {"id": 7, "inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [0.5, 2]}]}
        ),
        body().replace(b'"x"', b'"\\u0078"'),  # escapes: not counted
        body(data=5),
        body(shape=2),
        b'{"inputs": ["x"]}',
        b'{"inputs": [], "inputs": []}',
        orjson.dumps({"inputs": [orjson.loads(body())["inputs"][0]] * 65}),
    ):
        assert plain_float_inputs(parse_document(declined), declined) is None, declined


def split_of(body: bytes) -> tuple[dict[str, Any], dict[int, np.ndarray]] | None:
    return split_float_data(parse_document(body), body)


def test_flat_fp32_data_is_taken_by_simdjson_and_anything_else_is_left_to_the_general_decoder() -> None:
    def body(data: Any, datatype: str = "FP32") -> bytes:
        return orjson.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": datatype, "data": data}]})

    split = split_of(body([0.5, 2]))
    assert split is not None
    document, taken = split
    assert document == {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32"}]}
    np.testing.assert_array_equal(taken[0], [0.5, 2.0])
    for nested in (
        [[0.5], [2]],
        [[0.5], [2, 3], []],
        [0.5, [2]],
    ):  # evenness is the general decoder's to check
        assert split_of(body(nested)) is None
    assert split_of(body([0.5, 2]).replace(b'"x"', b'"[\\u005b"')) is None  # escapes: not counted
    assert split_of(body([0.5, True])) is None
    assert split_of(b'{"inputs": [], "inputs": []}') is None
    assert split_of(b'{"inputs": [], "id": 123456789012345678901234567890}') is None
    assert split_of(body([0.5, 2]).replace(b"2]", b"123456789012345678901234567890]")) is None
    assert split_of(body([1, 2], "INT32")) == (orjson.loads(body([1, 2], "INT32")), {})
