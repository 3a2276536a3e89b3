"""The exported repository served by a real Triton Inference Server, over HTTP and gRPC.

References are computed in this process by the service's own runner on the same ``model.onnx`` before the
server starts (``references`` is requested before ``triton_server``).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from contract import layout
from contract.runners import open_runner
from tests.triton.conftest import TritonServer

pytestmark = pytest.mark.slow

FP32 = ["mnist-student-fp32-onnx", "mnist-teacher-fp32-onnx"]
ROWS = 8


@pytest.fixture(scope="session")
def pixels(mnist_test_digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(mnist_test_digits[0][:ROWS], dtype=np.float32)


@pytest.fixture(scope="session")
def references(tiny_registry: Path, pixels: np.ndarray) -> dict[str, np.ndarray]:
    outputs = {}
    for name in FP32:
        outputs[name] = open_runner(layout.latest(tiny_registry, name))(pixels)["OUTPUT__0"]
    return outputs


def infer(protocol: ModuleType, url: str, name: str, pixels: np.ndarray) -> np.ndarray:
    """One inference with ``tritonclient.http`` or ``tritonclient.grpc`` (the same API)."""
    with contextlib.closing(protocol.InferenceServerClient(url)) as client:
        tensor = protocol.InferInput("INPUT__0", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels)
        result = client.infer(name, [tensor], outputs=[protocol.InferRequestedOutput("OUTPUT__0")])
        output = result.as_numpy("OUTPUT__0")
    assert isinstance(output, np.ndarray)
    return output


def test_every_exported_model_is_ready(
    references: dict[str, np.ndarray], triton_server: TritonServer
) -> None:
    assert sorted(triton_server.models) == FP32
    assert sorted(p.name for p in triton_server.repository.iterdir()) == FP32
    with (
        contextlib.closing(httpclient.InferenceServerClient(triton_server.http_url)) as http,
        contextlib.closing(grpcclient.InferenceServerClient(triton_server.grpc_url)) as grpc,
    ):
        assert http.is_server_live() and http.is_server_ready()
        assert grpc.is_server_live() and grpc.is_server_ready()
        index = {m["name"]: m for m in http.get_model_repository_index()}
        assert sorted(index) == FP32
        for name in FP32:
            assert index[name]["state"] == "READY"
            assert http.is_model_ready(name) and grpc.is_model_ready(name)
            config = http.get_model_config(name)
            assert config["backend"] == "python"
            assert config["max_batch_size"] == 64
            assert config["dynamic_batching"] is not None
            metadata = grpc.get_model_metadata(name)
            assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [
                ("INPUT__0", "FP32", [-1, 1, 28, 28])
            ]
            assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
                ("OUTPUT__0", "FP32", [-1, 10])
            ]


@pytest.mark.parametrize("name", FP32)
def test_outputs_equal_the_in_process_runner(
    name: str, pixels: np.ndarray, references: dict[str, np.ndarray], triton_server: TritonServer
) -> None:
    expected = references[name]
    assert expected.shape == (ROWS, 10)
    for served in (
        infer(httpclient, triton_server.http_url, name, pixels),
        infer(grpcclient, triton_server.grpc_url, name, pixels),
        infer(httpclient, triton_server.http_url, name, pixels[:1]),
    ):
        assert served.dtype == np.float32
        np.testing.assert_allclose(served, expected[: len(served)], rtol=1e-5, atol=1e-5)


def test_concurrent_requests_are_batched_and_answered_each(
    pixels: np.ndarray, references: dict[str, np.ndarray], triton_server: TritonServer
) -> None:
    name = "mnist-student-fp32-onnx"
    with contextlib.closing(
        httpclient.InferenceServerClient(triton_server.http_url, concurrency=8)
    ) as client:
        pending = []
        for row in range(ROWS):
            tensor = httpclient.InferInput("INPUT__0", [1, 1, 28, 28], "FP32")
            tensor.set_data_from_numpy(pixels[row : row + 1])
            pending.append(client.async_infer(name, [tensor]))
        served = np.concatenate([p.get_result(timeout=60).as_numpy("OUTPUT__0") for p in pending])
    np.testing.assert_allclose(served, references[name], rtol=1e-5, atol=1e-5)


def test_a_bad_request_is_an_error_not_a_crash(triton_server: TritonServer) -> None:
    with contextlib.closing(httpclient.InferenceServerClient(triton_server.http_url)) as client:
        tensor = httpclient.InferInput("INPUT__0", [1, 1, 28, 27], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 1, 28, 27), dtype=np.float32))
        with pytest.raises(httpclient.InferenceServerException, match="unexpected shape"):
            client.infer("mnist-student-fp32-onnx", [tensor])
        assert client.is_server_ready()


def test_kill_then_restart_on_the_same_ports(
    pixels: np.ndarray, references: dict[str, np.ndarray], triton_server: TritonServer
) -> None:
    http_url, grpc_url, pid = triton_server.http_url, triton_server.grpc_url, triton_server.pid
    triton_server.kill()
    with (
        contextlib.closing(httpclient.InferenceServerClient(http_url)) as http,
        pytest.raises(Exception),  # noqa: B017 (refused: the exact exception is the client's business)
    ):
        http.is_server_live()
    triton_server.restart()
    assert (triton_server.http_url, triton_server.grpc_url) == (http_url, grpc_url)
    assert triton_server.pid != pid
    name = "mnist-teacher-fp32-onnx"
    np.testing.assert_allclose(
        infer(grpcclient, grpc_url, name, pixels), references[name], rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        infer(httpclient, http_url, name, pixels), references[name], rtol=1e-5, atol=1e-5
    )
