"""The service in front of a real Triton: forwarding over gRPC and HTTP, and a Triton that hangs or is gone.

How each failure under load is answered (fallback, 503, never 500) is in ``test_failure_modes.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.harness import make_settings, run_service
from tests.service.conftest import assert_close, reference_logits
from tests.triton.conftest import TritonServer
from tests.triton.traffic import body

BODY_ROWS = 4


@pytest.fixture(scope="module")
def digits_and_references(
    tiny_registry: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rows = np.ascontiguousarray(mnist_test_digits[0][:BODY_ROWS], dtype=np.float32)
    names = ["mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx", "mnist-student-int8-x86"]
    return rows, {name: reference_logits(tiny_registry / name / "1", rows) for name in names}


def triton_backends(triton: TritonServer, **overrides: object) -> dict[str, dict[str, object]]:
    return {
        "teacher-fp32-onnx": {"kind": "triton", "url": triton.grpc_url, "protocol": "grpc", **overrides},
        "student-fp32-onnx": {"kind": "triton", "url": triton.http_url, "protocol": "http", **overrides},
    }


def test_forwarding_over_grpc_and_http_equals_in_process(
    tiny_registry: Path,
    triton_server: TritonServer,
    digits_and_references: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    rows, references = digits_and_references
    settings = make_settings(tiny_registry, backends=triton_backends(triton_server))
    with run_service(settings) as running, running.client() as client:
        for model in ("mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx"):
            response = client.post(f"/v2/models/{model}/infer", json=body(rows))
            assert response.status_code == 200, response.text
            served = np.asarray(response.json()["outputs"][0]["data"], dtype=np.float32).reshape(
                BODY_ROWS, 10
            )
            assert_close(served, references[model])
        labels = {"model": "mnist", "variant": "teacher-fp32-onnx", "version": "1", "backend": "triton",
                  "protocol": "http", "status": "ok"}  # fmt: skip
        assert running.metrics.get_sample_value("slimserve_requests_total", labels) == 1
        ready = {"model": "mnist", "variant": "teacher-fp32-onnx", "version": "1", "backend": "triton"}
        assert running.metrics.get_sample_value("slimserve_variant_ready", ready) == 1


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never answers: Triton hung, not gone."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def test_a_hung_or_missing_triton_makes_its_variant_unavailable(
    tiny_registry: Path, silent_server: str
) -> None:
    backends = {"teacher-fp32-onnx": {"kind": "triton", "url": silent_server, "protocol": "http", "health_timeout_s": 0.3},
                "student-fp32-onnx": {"kind": "triton", "url": "127.0.0.1:9", "protocol": "grpc", "health_timeout_s": 0.3}}  # fmt: skip
    with run_service(make_settings(tiny_registry, backends=backends)) as running, running.client() as client:
        rows = np.zeros((1, 1, 28, 28), dtype=np.float32)
        for model in ("mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx"):
            assert client.get(f"/v2/models/{model}/ready").status_code == 503
            answer = client.post(f"/v2/models/{model}/infer", json=body(rows))
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "1"
            assert "; it has no fallback" in answer.json()["error"]
        assert client.post("/v2/models/mnist-student-int8-x86/infer", json=body(rows)).status_code == 200
