"""OIP over gRPC with tritonclient.grpc (sync and aio) and the raw generated stub, against the real server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
import tritonclient.http as triton_http
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from contract.layout import ModelVersion
from service.backends.base import Backend
from tests.harness import ADMIN, RunningService, make_settings, run_service
from tests.service.conftest import MODEL_NAMES, assert_close
from tests.service.faults import FaultyBackend


@pytest.fixture(scope="module")
def service(grpc_service: RunningService) -> RunningService:
    return grpc_service


@pytest.fixture
def client(service: RunningService) -> Iterator[triton_grpc.InferenceServerClient]:
    with triton_grpc.InferenceServerClient(url=service.grpc_url) as grpc_client:
        yield grpc_client


@pytest.fixture
def stub(service: RunningService) -> Iterator[service_pb2_grpc.GRPCInferenceServiceStub]:
    with grpc.insecure_channel(service.grpc_url) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def grpc_input(batch: np.ndarray) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    return tensor


def test_health_metadata_and_index(
    client: triton_grpc.InferenceServerClient, service: RunningService
) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.get_server_metadata(as_json=True)["name"] == "slimserve"
    with pytest.raises(InferenceServerException) as anonymous:
        client.get_model_repository_index()
    assert anonymous.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
    index = client.get_model_repository_index(headers=ADMIN, as_json=True)["models"]
    assert sorted(entry["name"] for entry in index) == sorted(MODEL_NAMES)
    with grpc.insecure_channel(service.grpc_url) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "inference.GRPCInferenceService"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=name))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("model", [*MODEL_NAMES, "mnist"])
def test_model_metadata_ready_and_config(client: triton_grpc.InferenceServerClient, model: str) -> None:
    assert client.is_model_ready(model)
    metadata = client.get_model_metadata(model, as_json=True)
    assert metadata["name"] == model
    assert metadata["inputs"] == [{"name": "INPUT__0", "datatype": "FP32", "shape": ["-1", "1", "28", "28"]}]
    config = client.get_model_config(model, as_json=True)["config"]
    assert config["platform"] == {"onnx": "onnxruntime_onnx", "openvino": "openvino"}.get(
        model.rsplit("-", 1)[-1], "pytorch_libtorch"
    )
    assert int(config["max_batch_size"]) == 64
    assert config["input"][0]["dims"] == ["1", "28", "28"]
    assert config["output"][0]["dims"] == ["10"]


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_infer_raw_tensors_on_every_variant(
    client: triton_grpc.InferenceServerClient,
    digits: np.ndarray,
    references: dict[str, np.ndarray],
    model: str,
) -> None:
    result = client.infer(model, [grpc_input(digits[:8])], request_id="g-1")
    assert_close(result.as_numpy("OUTPUT__0"), references[model][:8])
    assert result.get_response().id == "g-1"


def test_infer_typed_contents_and_response_metadata(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    request = pb.ModelInferRequest(model_name="mnist")
    tensor = request.inputs.add(name="INPUT__0", datatype="FP32", shape=[2, 1, 28, 28])
    tensor.contents.fp32_contents.extend(digits[:2].ravel().tolist())
    response, call = stub.ModelInfer.with_call(request, metadata=(("x-user-id", "u1"),))
    logits = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(2, 10)
    assert_close(logits, references["mnist-student-int8-x86"][:2])
    assert dict(call.trailing_metadata())["slimserve-variant"] == "student-int8-x86"
    assert response.parameters["variant"].string_param == "student-int8-x86"


def test_asyncio_client(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    async def run() -> list[np.ndarray]:
        async with triton_grpc_aio.InferenceServerClient(url=service.grpc_url) as aio_client:
            assert await aio_client.is_server_ready()
            results = await asyncio.gather(
                *(aio_client.infer("mnist-teacher-fp32", [grpc_input(digits[i : i + 1])]) for i in range(16))
            )
            return [result.as_numpy("OUTPUT__0") for result in results]

    outputs = np.concatenate(asyncio.run(run()))
    assert_close(outputs, references["mnist-teacher-fp32"][:16])


@pytest.mark.parametrize("model", ["mnist-teacher-fp32", "mnist-student-int8-qnnpack"])
def test_grpc_equals_http_bit_for_bit(
    client: triton_grpc.InferenceServerClient, service: RunningService, digits: np.ndarray, model: str
) -> None:
    batch = digits[:4]
    over_grpc = client.infer(model, [grpc_input(batch)]).as_numpy("OUTPUT__0")
    http_client = triton_http.InferenceServerClient(url=f"{service.host}:{service.port}")
    tensor = triton_http.InferInput("INPUT__0", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=True)
    over_http = http_client.infer(model, [tensor]).as_numpy("OUTPUT__0")
    assert over_grpc is not None and over_http is not None
    assert over_grpc.tobytes() == over_http.tobytes()


def test_statistics_count_requests_and_rows(
    client: triton_grpc.InferenceServerClient, digits: np.ndarray
) -> None:
    before = client.get_inference_statistics("mnist-student-fp32", as_json=True)["model_stats"][0]
    for _ in range(3):
        client.infer("mnist-student-fp32", [grpc_input(digits[:5])])
    after = client.get_inference_statistics("mnist-student-fp32", as_json=True)["model_stats"][0]
    success = after["inference_stats"]["success"]
    assert int(success["count"]) - int(before["inference_stats"]["success"].get("count", 0)) == 3
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == 15
    assert int(success["ns"]) > 0
    assert int(after["execution_count"]) >= 3


def test_metrics_label_grpc_protocol(
    client: triton_grpc.InferenceServerClient, service: RunningService, digits: np.ndarray
) -> None:
    client.infer("mnist-student-int8-x86", [grpc_input(digits[:1])])
    labels = {"model": "mnist", "variant": "student-int8-x86", "version": "1", "backend": "torch",
              "protocol": "grpc", "status": "ok"}  # fmt: skip
    assert (service.metrics.get_sample_value("slimserve_requests_total", labels) or 0) >= 1


def expect_code(code: grpc.StatusCode, message: str, call: object, *args: object, **kwargs: object) -> None:
    with pytest.raises(InferenceServerException) as raised:
        call(*args, **kwargs)  # type: ignore[operator]
    assert raised.value.status() == str(code), raised.value
    assert message in (raised.value.message() or "")


def test_error_codes(
    client: triton_grpc.InferenceServerClient, stub: service_pb2_grpc.GRPCInferenceServiceStub
) -> None:
    wrong = triton_grpc.InferInput("INPUT__0", [1, 784], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 784), dtype=np.float32))
    expect_code(
        grpc.StatusCode.INVALID_ARGUMENT, "expected shape [-1, 1, 28, 28]", client.infer, "mnist", [wrong]
    )
    good = grpc_input(np.zeros((1, 1, 28, 28), dtype=np.float32))
    expect_code(grpc.StatusCode.NOT_FOUND, "unknown model 'nope'", client.infer, "nope", [good])
    expect_code(grpc.StatusCode.NOT_FOUND, "no loaded version 9", client.get_model_metadata, "mnist", "9")
    expect_code(grpc.StatusCode.INVALID_ARGUMENT, "positive integer", client.get_model_config, "mnist", "x")
    with pytest.raises(grpc.RpcError) as unimplemented:
        stub.CudaSharedMemoryStatus(pb.CudaSharedMemoryStatusRequest())
    assert unimplemented.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as unauthenticated:
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="mnist-teacher-fp32"))
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as too_big:
        request = pb.ModelInferRequest(model_name="mnist")
        request.inputs.add(name="INPUT__0", datatype="FP32", shape=[6000, 1, 28, 28])
        request.raw_input_contents.append(b"\0" * (6000 * 784 * 4))
        stub.ModelInfer(request)
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_deadline_unavailable_and_internal(tiny_registry: Path, digits: np.ndarray) -> None:
    def faulty(backend: Backend, model: ModelVersion) -> Backend:
        if model.card.variant == "teacher-fp32":
            return FaultyBackend(backend, infer_delay_s=0.5)
        if model.card.variant == "student-fp32":
            return FaultyBackend(backend, poisoned=lambda row: True)
        return backend

    settings = make_settings(tiny_registry, batching={"max_batch_size": 1, "max_queue_size": 1})
    with run_service(settings, backend_wrapper=faulty) as running:
        with triton_grpc.InferenceServerClient(url=running.grpc_url) as grpc_client:
            one = [grpc_input(digits[:1])]
            expect_code(grpc.StatusCode.DEADLINE_EXCEEDED, "", grpc_client.infer, "mnist-teacher-fp32", one,
                        client_timeout=0.1)  # fmt: skip
            expect_code(grpc.StatusCode.INTERNAL, "inference on model 'mnist-student-fp32' failed",
                        grpc_client.infer, "mnist-student-fp32", one)  # fmt: skip

        async def flood() -> list[BaseException | object]:
            async with triton_grpc_aio.InferenceServerClient(url=running.grpc_url) as aio_client:
                calls = [aio_client.infer("mnist-teacher-fp32", [grpc_input(digits[:1])]) for _ in range(6)]
                return await asyncio.gather(*calls, return_exceptions=True)

        errors = [r for r in asyncio.run(flood()) if isinstance(r, InferenceServerException)]
        assert errors, "a queue of one never overflowed"
        assert {e.status() for e in errors} == {str(grpc.StatusCode.UNAVAILABLE)}
        assert all("queue is full" in (e.message() or "") for e in errors)


def test_an_unsupported_method_is_unimplemented_without_an_error_logged(
    stub: service_pb2_grpc.GRPCInferenceServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        stub.SystemSharedMemoryStatus(pb.SystemSharedMemoryStatusRequest())
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert "system shared memory is not supported" in (refused.value.details() or "")
    with pytest.raises(grpc.RpcError) as refused:
        stub.TraceSetting(pb.TraceSettingRequest())
    assert refused.value.code() is grpc.StatusCode.UNIMPLEMENTED
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an unsupported method is no error"
