"""Every error class over HTTP: its status, its OIP body, a message naming what was wrong, no internals."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from contract.layout import ModelVersion
from service.backends.base import Backend
from tests.harness import RunningService, make_settings, run_service
from tests.service.faults import FaultyBackend


def tensor(shape: list[int], datatype: str = "FP32", data: list[float] | None = None) -> dict[str, object]:
    count = int(np.prod(shape))
    return {"name": "INPUT__0", "shape": shape, "datatype": datatype, "data": data or [0.0] * count}


BAD_REQUESTS = [
    ({"inputs": [tensor([1, 784])]}, "expected shape [-1, 1, 28, 28], got [1, 784]"),
    ({"inputs": [tensor([1, 1, 28, 28], "FOO")]}, "unsupported datatype 'FOO'"),
    ({"inputs": [tensor([1, 1, 28, 28], "BYTES")]}, "unsupported datatype 'BYTES'"),
    ({"inputs": [{**tensor([2, 1, 28, 28]), "data": [0.0] * 784}]}, "needs 1568 elements, data has 784"),
    (
        {"inputs": [{**tensor([1, 1, 28, 28]), "data": ["x"] * 784}]},
        "data must be a flat or evenly nested list",
    ),
    ({"inputs": [{**tensor([1, 1, 28, 28]), "name": "pixels"}]}, "unknown input 'pixels'"),
    ({"inputs": [tensor([1, 1, 28, 28]), tensor([1, 1, 28, 28])]}, "given 2 times"),
    ({"inputs": [tensor([1, 1, 28, 28])], "outputs": [{"name": "PROBS"}]}, "unknown output 'PROBS'"),
    ({"inputs": [tensor([300, 1, 28, 28])]}, "batch of 300 rows"),
    (
        {"inputs": [{**tensor([1, 1, 28, 28]), "data": None}]},
        "neither 'data' nor 'parameters.binary_data_size'",
    ),
    ({"inputs": []}, "inputs: List should have at least 1 item"),
    ({"input": []}, "inputs: Field required"),
    ({"inputs": [{"name": "INPUT__0", "shape": "1x784", "datatype": "FP32", "data": []}]}, "inputs.0.shape"),
]


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_request_names_what_is_wrong(
    service: RunningService, body: dict[str, object], message: str
) -> None:
    with service.client() as client:
        response = client.post("/v2/models/mnist-teacher-fp32/infer", json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_not_json_and_bad_binary_header(service: RunningService) -> None:
    with service.client() as client:
        not_json = client.post("/v2/models/mnist-teacher-fp32/infer", content=b"{nope")
        header = orjson.dumps({"inputs": [{**tensor([1, 1, 28, 28]), "data": None,
                                           "parameters": {"binary_data_size": 3136}}]})  # fmt: skip
        short = client.post(
            "/v2/models/mnist-teacher-fp32/infer",
            content=header + b"\0" * 100,
            headers={"inference-header-content-length": str(len(header))},
        )
        nan = client.post(
            "/v2/models/mnist-teacher-fp32/infer",
            content=header + np.full(784, np.nan, dtype="<f4").tobytes(),
            headers={"inference-header-content-length": str(len(header))},
        )
    assert (not_json.status_code, not_json.json()) == (400, {"error": "request body is not valid JSON"})
    assert short.status_code == 400
    assert "binary_data_size 3136 does not fit the body" in short.json()["error"]
    assert nan.status_code == 400
    assert "NaN or infinite values are not accepted" in nan.json()["error"]


def test_tritonclient_sees_status_and_message(service: RunningService) -> None:
    client = triton_http.InferenceServerClient(url=f"{service.host}:{service.port}")
    wrong = triton_http.InferInput("INPUT__0", [1, 784], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 784), dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"expected shape \[-1, 1, 28, 28\]") as bad:
        client.infer("mnist-teacher-fp32", [wrong])
    assert bad.value.status() == "400"
    with pytest.raises(InferenceServerException, match="unknown model 'mnist-nope'") as missing:
        client.get_model_metadata("mnist-nope")
    assert missing.value.status() == "404"


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/v2/models/nope/infer", 404, "unknown model 'nope'"),
        ("/v2/models/mnist-teacher-fp32/versions/7/infer", 404, "has no loaded version 7 (loaded: 1)"),
        ("/v2/models/mnist-teacher-fp32/versions/abc/infer", 400, "version must be a positive integer"),
        ("/v2/models/..%2F..%2Fetc/infer", 404, "Not Found"),
        ("/v2/models/.tmp-1/infer", 404, "unknown model '.tmp-1'"),
        ("/v2/nowhere", 404, "Not Found"),
    ],
)
def test_unknown_model_version_or_route(
    service: RunningService, path: str, status: int, message: str
) -> None:
    with service.client() as client:
        response = client.post(path, json={"inputs": [tensor([1, 1, 28, 28])]})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_payload_too_large(tiny_registry: Path) -> None:
    settings = make_settings(tiny_registry, limits={"max_request_bytes": 4096})
    body = orjson.dumps({"inputs": [tensor([2, 1, 28, 28])]})
    with run_service(settings) as running, running.client() as client:
        plain = client.post("/v2/models/mnist-teacher-fp32/infer", content=body)
        bomb = client.post(
            "/v2/models/mnist-teacher-fp32/infer",
            content=gzip.compress(b" " * 1_000_000),
            headers={"content-encoding": "gzip"},
        )
    assert plain.status_code == 413
    assert "exceeds the limit of 4096 bytes" in plain.json()["error"]
    assert bomb.status_code == 413


def test_not_ready_until_every_variant_is_warm(tiny_registry: Path) -> None:
    gate = threading.Event()

    def gated(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, load_gate=gate) if model.card.variant == "teacher-fp32" else backend

    with run_service(make_settings(tiny_registry), backend_wrapper=gated, wait_ready=False) as running:
        with running.client() as client:
            not_ready = client.get("/v2/health/ready")
            assert not_ready.status_code == 503
            assert not_ready.headers["retry-after"] == "1"
            assert "not ready" in not_ready.json()["error"]
            assert client.get("/v2/models/mnist-teacher-fp32/ready").status_code == 503
            infer = client.post(
                "/v2/models/mnist-teacher-fp32/infer", json={"inputs": [tensor([1, 1, 28, 28])]}
            )
            assert infer.status_code == 503
            assert infer.headers["retry-after"] == "1"
            gate.set()
        from tests.harness import _wait

        _wait(running, ready=True, timeout_s=60)


def test_timeout_gives_504_and_failure_gives_500_without_internals(tiny_registry: Path) -> None:
    def faulty(backend: Backend, model: ModelVersion) -> Backend:
        if model.card.variant == "teacher-fp32":
            return FaultyBackend(backend, infer_delay_s=2.0)
        if model.card.variant == "student-fp32":
            return FaultyBackend(backend, poisoned=lambda row: True)
        return backend

    settings = make_settings(tiny_registry, limits={"request_timeout_s": 0.2})
    body = {"inputs": [tensor([1, 1, 28, 28])]}
    with run_service(settings, backend_wrapper=faulty) as running, running.client() as client:
        slow = client.post("/v2/models/mnist-teacher-fp32/infer", json=body)
        broken = client.post("/v2/models/mnist-student-fp32/infer", json=body)
        healthy = client.post("/v2/models/mnist-student-int8-x86/infer", json=body)
    assert slow.status_code == 504
    assert "did not answer within the deadline" in slow.json()["error"]
    assert broken.status_code == 500
    assert broken.json() == {"error": "inference on model 'mnist-student-fp32' failed"}
    assert healthy.status_code == 200
