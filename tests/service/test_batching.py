"""Dynamic batching on the real server: right results to the right callers, bounded queues, isolation."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import orjson
from prometheus_client import CollectorRegistry

from contract.layout import ModelVersion
from service.backends.base import Backend
from tests.harness import make_settings, run_service
from tests.service.conftest import assert_close
from tests.service.faults import FaultyBackend

POISON = 123.0  # a pixel value no digit has in its corner


def body(row: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "data": row.ravel().tolist()}]}  # fmt: skip


async def post_all(url: str, model: str, rows: list[np.ndarray]) -> list[httpx.Response]:
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=100)
    ) as client:
        return await asyncio.gather(
            *(client.post(f"/v2/models/{model}/infer", json=body(row)) for row in rows)
        )


RUNTIMES = {"teacher-fp32": "torch", "student-int8-x86": "torch", "student-int8-onnx": "onnxruntime",
            "student-int8-openvino": "openvino"}  # fmt: skip


def batch_count_and_rows(metrics: CollectorRegistry, variant: str) -> tuple[float, float]:
    labels = {"model": "mnist", "variant": variant, "version": "1", "backend": RUNTIMES[variant]}
    count = metrics.get_sample_value("slimserve_batch_size_rows_count", labels) or 0.0
    rows = metrics.get_sample_value("slimserve_batch_size_rows_sum", labels) or 0.0
    return count, rows


def test_64_concurrent_callers_each_get_their_own_result(
    tiny_registry: Path, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    settings = make_settings(tiny_registry, batching={"max_batch_size": 32, "max_queue_delay_ms": 20})
    with run_service(settings) as running:
        for variant in RUNTIMES:
            responses = asyncio.run(post_all(running.url, f"mnist-{variant}", list(digits[:64])))
            assert [r.status_code for r in responses] == [200] * 64
            served = np.stack(
                [np.asarray(r.json()["outputs"][0]["data"], dtype=np.float32) for r in responses]
            )
            assert_close(served, references[f"mnist-{variant}"][:64])
            requests, rows = batch_count_and_rows(running.metrics, variant)
            assert requests == 64
            assert rows / requests > 4, "requests were hardly batched together"


def test_full_queue_answers_503_instead_of_waiting(tiny_registry: Path, digits: np.ndarray) -> None:
    def slow(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, infer_delay_s=0.3)

    settings = make_settings(tiny_registry, batching={"max_batch_size": 1, "max_queue_size": 2})
    with run_service(settings, backend_wrapper=slow) as running:
        responses = asyncio.run(post_all(running.url, "mnist-teacher-fp32", [digits[0]] * 12))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) >= 2
    assert statuses.count(503) >= 6
    rejected = next(r for r in responses if r.status_code == 503)
    assert rejected.headers["retry-after"] == "1"
    assert "queue is full" in rejected.json()["error"]


def test_a_failing_request_does_not_fail_its_batch_neighbours(
    tiny_registry: Path, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    wrapped: list[FaultyBackend] = []

    def poisonable(backend: Backend, model: ModelVersion) -> Backend:
        faulty = FaultyBackend(backend, poisoned=lambda row: bool(row.flat[0] == POISON))
        wrapped.append(faulty)
        return faulty

    rows = [row.copy() for row in digits[:16]]
    rows[5].flat[0] = POISON
    settings = make_settings(tiny_registry, batching={"max_batch_size": 32, "max_queue_delay_ms": 50})
    with run_service(settings, backend_wrapper=poisonable) as running:
        responses = asyncio.run(post_all(running.url, "mnist-student-fp32", rows))
    statuses = [r.status_code for r in responses]
    assert statuses[5] == 500
    assert statuses[:5] + statuses[6:] == [200] * 15
    assert max(b for f in wrapped for b in f.batches) > 1, "the poisoned request was never batched"
    for index in [0, 4, 6, 15]:
        served = np.asarray(responses[index].json()["outputs"][0]["data"], dtype=np.float32)
        assert_close(served, references["mnist-student-fp32"][index])


def test_a_batch_its_backend_cannot_answer_is_not_resent_request_by_request(
    tiny_registry: Path, digits: np.ndarray
) -> None:
    """Each caller gets the 503 of its batch; the dead backend is asked once per batch, not once per request."""
    down = threading.Event()
    down.set()
    wrapped: list[FaultyBackend] = []

    def unavailable(backend: Backend, model: ModelVersion) -> Backend:
        if model.card.variant != "teacher-fp32":
            return backend
        wrapped.append(FaultyBackend(backend, infer_delay_s=0.05, down=down))
        return wrapped[-1]

    settings = make_settings(tiny_registry, batching={"max_batch_size": 32})
    with run_service(settings, backend_wrapper=unavailable) as running:
        responses = asyncio.run(post_all(running.url, "mnist-teacher-fp32", list(digits[:32])))
    assert {r.status_code for r in responses} == {503}
    assert all("the backend cannot answer" in r.json()["error"] for r in responses)
    calls = wrapped[0].batches
    assert sum(calls) == 32, f"batches sent to the dead backend: {calls}"
    assert max(calls) > 1, "the requests were never batched: the test proves nothing"


def test_a_non_finite_request_is_refused_alone_from_the_batch_it_was_queued_in(
    tiny_registry: Path, digits: np.ndarray, references: dict[str, np.ndarray]
) -> None:
    """NaN and infinities are checked once per batch (service.signature.FiniteCheck): only their senders get 400."""
    variant = "student-int8-x86"
    rows = [digits[i].copy() for i in range(32)]
    for i in range(0, 32, 4):
        rows[i].ravel()[7] = np.nan if i % 8 else np.inf

    async def post_binary(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            calls = []
            for row in rows:
                raw = row.astype("<f4").tobytes()
                header = orjson.dumps({"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                                   "parameters": {"binary_data_size": len(raw)}}]})  # fmt: skip
                calls.append(client.post(
                    f"/v2/models/mnist-{variant}/infer", content=header + raw,
                    headers={"inference-header-content-length": str(len(header))},
                ))  # fmt: skip
            return await asyncio.gather(*calls)

    settings = make_settings(tiny_registry, batching={"max_batch_size": 32, "max_queue_delay_ms": 50})
    with run_service(settings) as running:
        responses = asyncio.run(post_binary(running.url))
        requests, batched_rows = batch_count_and_rows(running.metrics, variant)
    refused = [i for i, r in enumerate(responses) if r.status_code == 400]
    assert refused == list(range(0, 32, 4))
    assert all("NaN or infinite values are not accepted" in responses[i].json()["error"] for i in refused)
    kept = [i for i in range(32) if i % 4]
    assert [responses[i].status_code for i in kept] == [200] * len(kept)
    served = np.stack([np.asarray(responses[i].json()["outputs"][0]["data"], np.float32) for i in kept])
    assert_close(served, references[f"mnist-{variant}"][kept])
    assert requests == len(kept)
    assert batched_rows / requests > 4, "the finite requests were not batched with the refused ones"
