"""Every way a real Triton fails the service, under traffic: no 500 to anyone, every routed call answered.

The Triton here runs in explicit model-control mode (as the gpu-triton overlay runs it), so a model can be
unloaded while Triton stays up. The family is routed 100 % to the Triton variant, whose fallback is the
in-process int8 student; one more caller calls the Triton variant directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
import yaml

from models.export_triton import export_triton
from models.triton_local import TritonServer, free_port
from service.config import Settings
from tests.harness import RunningService, make_settings, run_service
from tests.triton.conftest import triton_install
from tests.triton.traffic import Answer, body, check_never_500, drive

TRITON_VARIANT = "teacher-fp32-onnx"
TRITON_MODEL = f"mnist-{TRITON_VARIANT}"
FALLBACK = "student-int8-x86"
ROWS = np.zeros((1, 1, 28, 28), dtype=np.float32)


def start_triton(
    repository: Path, models: list[str], log: Path, http_port: int, grpc_port: int
) -> TritonServer:
    server = TritonServer(install=triton_install(), repository=repository, models=models, http_port=http_port,
                          grpc_port=grpc_port, log_path=log, model_control="explicit")  # fmt: skip
    server.start()
    return server


@pytest.fixture(scope="module")
def repository(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("explicit") / "repository"
    return out, export_triton(tiny_registry, out, [TRITON_VARIANT], gpu=False, python_backend=True)


@pytest.fixture(scope="module")
def explicit_triton(repository: tuple[Path, list[str]]) -> Iterator[TritonServer]:
    path, models = repository
    server = start_triton(path, models, path.parent / "triton.log", free_port(), free_port())
    try:
        yield server
    finally:
        server.stop()


def tiered(registry: Path, tmp_path: Path, url: str, **backend: object) -> Settings:
    """The family routed 100 % to the Triton variant, falling back to the in-process int8 student."""
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": [{
        "name": "tiered", "family": "mnist", "variants": [{"name": TRITON_VARIANT, "weight": 100}]}]}))  # fmt: skip
    settings = {"kind": "triton", "url": url, "fallback": FALLBACK, "health_interval_s": 0.2,
                "reset_after_s": 1.0, "failure_threshold": 2, **backend}  # fmt: skip
    return make_settings(
        registry, backends={TRITON_VARIANT: settings}, routing={"experiments_file": experiments}
    )


def readiness(client: httpx.Client) -> tuple[int, int, int, str]:
    """(pod, family, Triton variant) readiness statuses and the variant's state in the index."""
    index = {entry["name"]: entry for entry in client.get("/v2/models").json()["models"]}
    return (client.get("/v2/health/ready").status_code, client.get("/v2/models/mnist/ready").status_code,
            client.get(f"/v2/models/{TRITON_MODEL}/ready").status_code, index[TRITON_MODEL]["state"])  # fmt: skip


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not true within {timeout_s} s"
        time.sleep(0.1)


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def sample(running: RunningService, name: str, **labels: str) -> float:
    return running.metrics.get_sample_value(name, labels) or 0.0


def test_model_unloaded_under_load_falls_back_at_once_then_returns(
    tiny_registry: Path, tmp_path: Path, explicit_triton: TritonServer, caplog: pytest.LogCaptureFixture
) -> None:
    control = triton_http.InferenceServerClient(explicit_triton.http_url)
    settings = tiered(tiny_registry, tmp_path, explicit_triton.grpc_url)
    # tritonclient.http runs on gevent, whose hub belongs to one thread: every control call goes to the same one
    control_thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-control")
    with control_thread, run_service(settings) as running, running.client() as client:
        assert readiness(client) == (200, 200, 200, "READY")

        async def scenario() -> tuple[list[Answer], float, float, tuple[int, int, int, str]]:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            traffic = asyncio.create_task(drive(running.url, stop, ROWS, direct=TRITON_MODEL))
            await asyncio.sleep(1.0)
            await loop.run_in_executor(control_thread, control.unload_model, TRITON_MODEL)
            unloaded = time.monotonic()
            await asyncio.sleep(1.0)
            while_unloaded = await asyncio.to_thread(readiness, client)
            await loop.run_in_executor(control_thread, control.load_model, TRITON_MODEL)
            reloaded = time.monotonic()
            await asyncio.sleep(3.0)  # health interval + breaker reset, then answers from Triton again
            stop.set()
            return await traffic, unloaded, reloaded, while_unloaded

        caplog.set_level(logging.INFO, logger="service")
        answers, unloaded, reloaded, while_unloaded = asyncio.run(scenario())
        check_never_500(answers)
        assert while_unloaded == (200, 200, 503, "UNAVAILABLE")
        routed_then = {
            (a.variant, a.fallback) for a in answers if a.routed and unloaded + 0.3 < a.at < reloaded
        }
        assert routed_then == {(FALLBACK, True)}, routed_then
        direct_then = [a for a in answers if not a.routed and unloaded + 0.3 < a.at < reloaded]
        assert direct_then and all(a.status == 503 for a in direct_then), direct_then[:3]
        assert all("no fallback applies to direct calls" in a.error for a in direct_then), direct_then[0]
        back = {(a.variant, a.fallback) for a in answers if a.at > reloaded + 2.5}
        assert back == {(TRITON_VARIANT, False)}, back
        assert not errors_logged(caplog)
        variant = {"model": "mnist", "variant": TRITON_VARIANT, "version": "1", "backend": "triton"}
        assert sample(running, "slimserve_breaker_opens_total", **variant) >= 1
        assert sample(running, "slimserve_breaker_state", **variant, state="closed") == 1
        refused = sample(running, "slimserve_requests_total", **variant, protocol="http",
                         status="backend_unavailable")  # fmt: skip
        assert refused == sum(a.status == 503 for a in answers)
        assert sample(running, "slimserve_fallbacks_total", model="mnist", variant=TRITON_VARIANT,
                      fallback=FALLBACK) == sum(a.fallback for a in answers)  # fmt: skip


def test_triton_down_at_start_serves_through_the_fallback_until_it_comes_up(
    tiny_registry: Path,
    tmp_path: Path,
    repository: tuple[Path, list[str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    http_port, grpc_port = free_port(), free_port()
    url = f"127.0.0.1:{grpc_port}"  # nothing listens there yet
    caplog.set_level(logging.INFO, logger="service")
    with run_service(tiered(tiny_registry, tmp_path, url)) as running, running.client() as client:
        startup = [r.getMessage() for r in caplog.records if r.name == "service.runtime"]
        assert any(
            line.startswith(f"variant {TRITON_MODEL}:1 UNAVAILABLE (Triton at {url}") for line in startup
        )
        assert "server ready: yes" in startup
        assert readiness(client) == (200, 200, 503, "UNAVAILABLE")
        routed = client.post("/v2/models/mnist/infer", json=body(ROWS))
        assert routed.status_code == 200
        assert (routed.headers["slimserve-variant"], routed.headers["slimserve-fallback"]) == (
            FALLBACK,
            "true",
        )
        direct = client.post(f"/v2/models/{TRITON_MODEL}/infer", json=body(ROWS))
        assert direct.status_code == 503 and direct.headers["retry-after"] == "1"
        assert "cannot be reached" in direct.json()["error"]
        assert "no fallback applies to direct calls" in direct.json()["error"]
        path, models = repository
        triton = start_triton(path, models, tmp_path / "triton.log", http_port, grpc_port)
        try:
            wait_for(lambda: readiness(client) == (200, 200, 200, "READY"))
            routed = client.post("/v2/models/mnist/infer", json=body(ROWS))
            assert (routed.headers["slimserve-variant"], routed.headers["slimserve-fallback"]) == (
                TRITON_VARIANT, "false")  # fmt: skip
        finally:
            triton.stop()
    assert not errors_logged(caplog)


@pytest.mark.parametrize(
    ("backend", "says"),
    [
        # found missing by the health check at start, or by a call: either way the message names it
        ({"model_name": "mnist-never-exported"}, ("'mnist-never-exported'",)),
        ({"timeout_s": 0.000001}, ("did not answer within 1e-06 s", "is unavailable (circuit open)")),
    ],
    ids=["model-missing", "deadline"],
)
def test_model_missing_or_too_slow_is_a_fallback_answer_or_a_503(
    tiny_registry: Path,
    tmp_path: Path,
    explicit_triton: TritonServer,
    backend: dict[str, object],
    says: tuple[str, ...],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = tiered(tiny_registry, tmp_path, explicit_triton.grpc_url, **backend)
    caplog.set_level(logging.INFO, logger="service")
    with run_service(settings) as running:

        async def scenario() -> list[Answer]:
            stop = asyncio.Event()
            traffic = asyncio.create_task(drive(running.url, stop, ROWS, direct=TRITON_MODEL))
            await asyncio.sleep(2.0)
            stop.set()
            return await traffic

        answers = asyncio.run(scenario())
        check_never_500(answers)
        assert {(a.variant, a.fallback) for a in answers if a.routed} == {(FALLBACK, True)}
        direct = [a for a in answers if not a.routed]
        assert direct and {a.status for a in direct} == {503}
        assert all(any(phrase in a.error for phrase in says) for a in direct), direct[:3]
    assert not errors_logged(caplog)


def test_triton_killed_under_load_falls_back_then_recovers(
    tiny_registry: Path, tmp_path: Path, explicit_triton: TritonServer
) -> None:
    settings = tiered(tiny_registry, tmp_path, explicit_triton.grpc_url)
    with run_service(settings) as running:

        async def scenario() -> tuple[list[Answer], float, float, float, float]:
            stop = asyncio.Event()
            traffic = asyncio.create_task(drive(running.url, stop, ROWS, direct=TRITON_MODEL))
            await asyncio.sleep(1.0)
            killing = time.monotonic()
            await asyncio.to_thread(explicit_triton.kill)
            killed = time.monotonic()
            await asyncio.sleep(2.0)
            restarting = time.monotonic()  # the service may see Triton back before restart() returns
            await asyncio.to_thread(explicit_triton.restart)
            restarted = time.monotonic()
            await asyncio.sleep(3.0)
            stop.set()
            return await traffic, killing, killed, restarting, restarted

        answers, killing, killed, restarting, restarted = asyncio.run(scenario())
        check_never_500(answers)
        before = {(a.variant, a.fallback) for a in answers if a.routed and a.at < killing}
        assert before == {(TRITON_VARIANT, False)}, before
        down = {(a.variant, a.fallback) for a in answers if a.routed and killed + 0.5 < a.at < restarting}
        assert down == {(FALLBACK, True)}, down
        back = {(a.variant, a.fallback) for a in answers if a.routed and a.at > restarted + 2.5}
        assert back == {(TRITON_VARIANT, False)}, back
