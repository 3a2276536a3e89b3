"""The service in front of a real Triton: forwarding over gRPC and HTTP, timeouts, breaker and fallback.

Runs last in this folder (``zz`` is not needed: pytest runs files in name order and the kill/restart test
restarts the session's Triton before it returns).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from tests.harness import RunningService, make_settings, run_service
from tests.service.conftest import assert_close, reference_logits
from tests.triton.conftest import TritonServer

BODY_ROWS = 4


def body(rows: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "INPUT__0", "shape": list(rows.shape), "datatype": "FP32",
                        "data": rows.ravel().tolist()}]}  # fmt: skip


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
            assert "unavailable and has no fallback" in answer.json()["error"]
        assert client.post("/v2/models/mnist-student-int8-x86/infer", json=body(rows)).status_code == 200


def test_a_triton_slower_than_the_call_timeout_gives_504(
    tiny_registry: Path,
    triton_server: TritonServer,
    digits_and_references: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    rows, _ = digits_and_references
    backends = {"teacher-fp32-onnx": {"kind": "triton", "url": triton_server.grpc_url, "timeout_s": 0.000001}}
    with run_service(make_settings(tiny_registry, backends=backends)) as running, running.client() as client:
        answer = client.post("/v2/models/mnist-teacher-fp32-onnx/infer", json=body(rows))
        assert answer.status_code == 504, answer.text
        assert "Triton did not answer within" in answer.json()["error"]
        assert client.get("/v2/models/mnist-teacher-fp32-onnx/ready").status_code == 200, (
            "a timeout is not an outage"
        )


async def load(url: str, stop: asyncio.Event, rows: np.ndarray) -> list[tuple[float, int, str]]:
    """(time, status, variant or error) of requests to the family until ``stop``."""
    outcomes: list[tuple[float, int, str]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def user() -> None:
            while not stop.is_set():
                response = await client.post("/v2/models/mnist/infer", json=body(rows[:1]))
                marker = response.headers.get("slimserve-variant", response.text)
                if response.headers.get("slimserve-fallback") == "true":
                    marker += "+fallback"
                outcomes.append((time.monotonic(), response.status_code, marker))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(user() for _ in range(4)))
    return outcomes


def test_triton_killed_under_load_falls_back_then_recovers(
    tiny_registry: Path,
    triton_server: TritonServer,
    tmp_path: Path,
    digits_and_references: tuple[np.ndarray, dict[str, np.ndarray]],
) -> None:
    rows, _ = digits_and_references
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": [{
        "name": "tiered", "family": "mnist", "variants": [{"name": "teacher-fp32-onnx", "weight": 100}]}]}))  # fmt: skip
    backends = {"teacher-fp32-onnx": {"kind": "triton", "url": triton_server.grpc_url, "fallback": "student-int8-x86",
                                 "health_interval_s": 0.2, "reset_after_s": 1.0, "failure_threshold": 2}}  # fmt: skip
    settings = make_settings(tiny_registry, backends=backends, routing={"experiments_file": experiments})
    with run_service(settings) as running:

        async def scenario() -> tuple[list[tuple[float, int, str]], tuple[float, float], tuple[float, float]]:
            stop = asyncio.Event()
            users = asyncio.create_task(load(running.url, stop, rows))
            await asyncio.sleep(1.0)
            killing = time.monotonic()
            await asyncio.to_thread(triton_server.kill)
            killed = (
                time.monotonic()
            )  # Triton is gone from here on; answers around the kill may go either way
            await asyncio.sleep(3.0)
            restarting = time.monotonic()  # the service may see Triton back before restart() returns
            await asyncio.to_thread(triton_server.restart)
            restarted = time.monotonic()
            await asyncio.sleep(4.0)
            stop.set()
            return await users, (killing, killed), (restarting, restarted)

        outcomes, kill, restart = asyncio.run(scenario())
        check_fallback(running, outcomes, kill, restart)


def check_fallback(
    running: RunningService,
    outcomes: list[tuple[float, int, str]],
    kill: tuple[float, float],
    restart: tuple[float, float],
) -> None:
    """Routed answers: the teacher before the kill, the fallback while Triton is down, the teacher again."""
    (killing, killed), (restarting, restarted) = kill, restart
    before = {marker for at, _, marker in outcomes if at < killing}
    assert before == {"teacher-fp32-onnx"}, before
    failed = [(at - killed, marker) for at, status, marker in outcomes if status != 200]
    assert not failed, f"requests failed after the kill: {failed[:5]}"
    down = [(round(at - killed, 3), marker) for at, _, marker in outcomes if killed + 0.5 < at < restarting]
    assert down and {marker for _, marker in down} == {"student-int8-x86+fallback"}, [
        answer for answer in down if not answer[1].endswith("+fallback")
    ]
    back = [marker for at, _, marker in outcomes if at > restarted + 2.5]  # health interval + breaker reset
    assert back and set(back) == {"teacher-fp32-onnx"}, set(back)
    counted = running.metrics.get_sample_value(
        "slimserve_fallbacks_total",
        {"model": "mnist", "variant": "teacher-fp32-onnx", "fallback": "student-int8-x86"},
    )
    assert counted == sum(marker.endswith("+fallback") for _, _, marker in outcomes)
