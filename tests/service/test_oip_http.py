"""Open Inference Protocol over HTTP, with the clients users already have: tritonclient.http and httpx."""

from __future__ import annotations

import gzip

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http

from tests.harness import RunningService
from tests.service.conftest import MODEL_NAMES, assert_close


@pytest.fixture
def triton(service: RunningService) -> triton_http.InferenceServerClient:
    return triton_http.InferenceServerClient(url=f"{service.host}:{service.port}")


def infer(
    client: triton_http.InferenceServerClient,
    model: str,
    batch: np.ndarray,
    *,
    binary: bool,
    outputs: list[str] | None = None,
    version: str = "",
) -> triton_http.InferResult:
    tensor = triton_http.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    requested = [triton_http.InferRequestedOutput(name, binary_data=binary) for name in outputs or []]
    return client.infer(model, [tensor], outputs=requested or None, model_version=version)


def test_health_and_server_metadata(triton: triton_http.InferenceServerClient) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    metadata = triton.get_server_metadata()
    assert metadata["name"] == "slimserve"
    assert "binary_tensor_data" in metadata["extensions"]


def test_index_lists_every_variant_ready(service: RunningService) -> None:
    with service.client() as client:
        index = client.get("/v2/models").json()["models"]
    assert sorted(entry["name"] for entry in index) == sorted(MODEL_NAMES)
    assert {entry["state"] for entry in index} == {"READY"}


@pytest.mark.parametrize("model", [*MODEL_NAMES, "mnist"])
def test_model_metadata_and_readiness(triton: triton_http.InferenceServerClient, model: str) -> None:
    metadata = triton.get_model_metadata(model)
    assert metadata["name"] == model
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert metadata["outputs"] == [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}]
    assert triton.is_model_ready(model)
    assert triton.is_model_ready(model, "1")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_infer_every_variant_matches_in_process_torch(
    triton: triton_http.InferenceServerClient,
    digits: np.ndarray,
    references: dict[str, np.ndarray],
    model: str,
    binary: bool,
) -> None:
    batch = digits[:8]
    result = infer(triton, model, batch, binary=binary)
    assert_close(result.as_numpy("OUTPUT__0"), references[model][:8])
    response = result.get_response()
    assert response["model_name"] == model
    assert response["model_version"] == "1"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_requested_outputs_and_request_id(
    triton: triton_http.InferenceServerClient,
    digits: np.ndarray,
    references: dict[str, np.ndarray],
    binary: bool,
) -> None:
    tensor = triton_http.InferInput("INPUT__0", [2, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(digits[:2], binary_data=binary)
    output = triton_http.InferRequestedOutput("OUTPUT__0", binary_data=binary)
    result = triton.infer("mnist-teacher-fp32", [tensor], outputs=[output], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    assert_close(result.as_numpy("OUTPUT__0"), references["mnist-teacher-fp32"][:2])


def test_family_name_routes_to_default_variant(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "data": digits[0].ravel().tolist()}]}  # fmt: skip
    with service.client() as client:
        response = client.post("/v2/models/mnist/infer", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["slimserve-variant"] == "student-int8-x86"
    assert response.headers["slimserve-version"] == "1"
    assert response.headers["slimserve-fallback"] == "false"
    payload = response.json()
    assert payload["parameters"]["variant"] == "student-int8-x86"
    logits = np.asarray(payload["outputs"][0]["data"], dtype=np.float32).reshape(1, 10)
    assert_close(logits, references["mnist-student-int8-x86"][:1])


@pytest.mark.parametrize("datatype", ["UINT8", "INT32", "INT64", "FP16", "FP64", "BOOL"])
def test_datatypes_are_converted_to_what_the_model_takes(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray], datatype: str
) -> None:
    pixels = digits[:1].ravel()
    data = (pixels > 127).tolist() if datatype == "BOOL" else pixels.astype(np.int64).tolist()
    body = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": datatype, "data": data}]}
    with service.client() as client:
        response = client.post("/v2/models/mnist-teacher-fp32/infer", json=body)
    assert response.status_code == 200, response.text
    if datatype != "BOOL":  # digits are integral pixel values, so every numeric type carries them exactly
        logits = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32)
        assert_close(logits, references["mnist-teacher-fp32"][0])


def test_nested_data_and_gzip_body(service: RunningService, digits: np.ndarray) -> None:
    nested = digits[:2].tolist()
    body = {"inputs": [{"name": "INPUT__0", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": nested}]}
    flat = {"inputs": [{**body["inputs"][0], "data": digits[:2].ravel().tolist()}]}
    with service.client() as client:
        from_nested = client.post("/v2/models/mnist-student-fp32/infer", json=body).json()
        compressed = client.post(
            "/v2/models/mnist-student-fp32/infer",
            content=gzip.compress(orjson.dumps(flat)),
            headers={"content-encoding": "gzip", "content-type": "application/json"},
        ).json()
    assert from_nested["outputs"] == compressed["outputs"]


def test_predict_convenience_endpoint(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    with service.client() as client:
        response = client.post(
            "/v1/models/mnist:predict", json={"instances": digits[:3].reshape(3, 28, 28).tolist()}
        )
        flat = client.post(
            "/v1/models/mnist:predict", content=orjson.dumps({"instances": [digits[0].ravel().tolist()]})
        )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = references["mnist-student-int8-x86"][:3].argmax(axis=1)
    assert [p["class"] for p in predictions] == expected.tolist()
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-4 for p in predictions)
    assert flat.status_code == 200, flat.text
    assert flat.json()["predictions"][0]["class"] == expected[0]
    assert response.headers["slimserve-variant"] == "student-int8-x86"
