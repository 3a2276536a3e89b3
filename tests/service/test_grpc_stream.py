"""ModelStreamInfer with tritonclient's stream APIs (sync callback and asyncio iterator) against the real server."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.grpc.aio as triton_grpc_aio
from tritonclient.utils import InferenceServerException

from tests.harness import RunningService
from tests.service.conftest import assert_close


@pytest.fixture(scope="module")
def service(grpc_service: RunningService) -> RunningService:
    return grpc_service


def grpc_input(batch: np.ndarray, shape: list[int] | None = None) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("INPUT__0", shape or list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.reshape(shape) if shape else batch)
    return tensor


def test_stream_answers_every_request_and_keeps_going_after_errors(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    answers: queue.Queue[tuple[Any, InferenceServerException | None]] = queue.Queue()
    models = ["mnist-teacher-fp32", "mnist-student-int8-x86", "mnist-student-int8-qnnpack"]
    with triton_grpc.InferenceServerClient(url=service.grpc_url) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        client.async_stream_infer(
            "mnist-teacher-fp32", [grpc_input(digits[:1], [1, 784])], request_id="bad-shape"
        )
        client.async_stream_infer("nope", [grpc_input(digits[:1])], request_id="unknown-model")
        for index in range(24):  # sent after the failures: the stream is still open
            row = digits[index : index + 1]
            client.async_stream_infer(models[index % 3], [grpc_input(row)], request_id=f"r-{index}")
        received = [answers.get(timeout=30) for _ in range(26)]
        client.stop_stream()
    errors = [error for _, error in received if error is not None]
    assert sorted(error.message() or "" for error in errors) == [
        "input 'INPUT__0': expected shape [-1, 1, 28, 28], got [1, 784]",
        "unknown model 'nope'",
    ]
    results = {result.get_response().id: result for result, error in received if error is None}
    assert sorted(results) == sorted(f"r-{index}" for index in range(24))
    for index in range(24):
        logits = results[f"r-{index}"].as_numpy("OUTPUT__0")
        assert_close(logits, references[models[index % 3]][index : index + 1])


def test_asyncio_stream_routes_the_family_by_the_stream_metadata(
    service: RunningService, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    async def requests() -> AsyncIterator[dict[str, Any]]:
        for index in range(32):
            yield {
                "model_name": "mnist",
                "inputs": [grpc_input(digits[index : index + 1])],
                "request_id": str(index),
            }

    async def run() -> dict[str, Any]:
        async with triton_grpc_aio.InferenceServerClient(url=service.grpc_url) as client:
            answers = {}
            async for result, error in client.stream_infer(requests(), headers={"x-user-id": "u1"}):
                assert error is None, error
                answers[result.get_response().id] = result
            return answers

    answers = asyncio.run(run())
    assert sorted(answers, key=int) == [str(index) for index in range(32)]
    for index, result in answers.items():
        assert result.get_response().parameters["variant"].string_param == "student-int8-x86"
        expected = references["mnist-student-int8-x86"][int(index) : int(index) + 1]
        assert_close(result.as_numpy("OUTPUT__0"), expected)
