"""Promises a model server keeps under reloads, shutdowns, broken artifacts and bad limits."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from contract.layout import ModelVersion
from service.backends.base import Backend
from tests.harness import ADMIN, make_settings, run_service
from tests.service.faults import FaultyBackend

TEACHER = "mnist-teacher-fp32"
BODY = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}


def publish_copy(registry: Path, model: str, source: int, target: int) -> Path:
    """Publish version ``target`` of ``model`` as a copy of ``source`` (what the pipeline's publish does)."""
    folder = registry / model
    shutil.copytree(folder / str(source), folder / f".tmp-{target}")
    card = json.loads((folder / f".tmp-{target}" / "card.json").read_text())
    (folder / f".tmp-{target}" / "card.json").write_text(json.dumps({**card, "version": target}))
    (folder / f".tmp-{target}").rename(folder / str(target))
    return folder / str(target)


@pytest.fixture
def registry(tiny_registry: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "registry"
    shutil.copytree(tiny_registry, copy)
    return copy


async def hammer(
    url: str, model: str, stop: asyncio.Event, concurrency: int = 8
) -> list[tuple[float, httpx.Response]]:
    """Requests in a loop until ``stop``: (time sent, response) for each."""
    responses: list[tuple[float, httpx.Response]] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def loop() -> None:
            while not stop.is_set():
                sent = time.monotonic()
                responses.append((sent, await client.post(f"/v2/models/{model}/infer", json=BODY)))

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    return responses


def test_reload_to_a_new_version_under_load_fails_no_request(registry: Path) -> None:
    with run_service(make_settings(registry)) as running:

        async def scenario() -> tuple[list[tuple[float, httpx.Response]], httpx.Response, float, float]:
            stop = asyncio.Event()
            load = asyncio.create_task(hammer(running.url, TEACHER, stop))
            await asyncio.sleep(0.5)
            published = time.monotonic()
            publish_copy(registry, TEACHER, 1, 2)
            async with httpx.AsyncClient(base_url=running.url, timeout=60, headers=ADMIN) as admin:
                reload = await admin.post(f"/v2/repository/models/{TEACHER}/load")
            reloaded = time.monotonic()
            await asyncio.sleep(0.5)
            stop.set()
            return await load, reload, published, reloaded

        responses, reload, published, reloaded = asyncio.run(scenario())
        assert reload.status_code == 200, reload.text
        assert [r.status_code for _, r in responses if r.status_code != 200] == []
        before = {r.headers["slimserve-version"] for sent, r in responses if sent < published}
        after = {r.headers["slimserve-version"] for sent, r in responses if sent > reloaded}
        assert (before, after) == ({"1"}, {"2"})
        with running.client(headers=ADMIN) as client:
            index = client.post("/v2/repository/index").json()
        assert [(e["version"], e["state"]) for e in index if e["name"] == TEACHER] == [("2", "READY")]


def test_grpc_model_control_and_a_failed_load_keeps_serving(registry: Path) -> None:
    with (
        run_service(make_settings(registry)) as running,
        triton_grpc.InferenceServerClient(running.grpc_url) as client,
    ):
        broken = publish_copy(registry, TEACHER, 1, 2)
        (broken / "model.pt").write_bytes(b"not a model")
        with pytest.raises(InferenceServerException, match="sha256 mismatch") as failed:
            client.load_model(TEACHER, headers=ADMIN)
        assert failed.value.status() == "StatusCode.FAILED_PRECONDITION"
        with running.client() as http:
            still = http.post(f"/v2/models/{TEACHER}/infer", json=BODY)
            assert (still.status_code, still.headers["slimserve-version"]) == (200, "1")
            client.unload_model(TEACHER, headers=ADMIN)
            unloaded = http.post(f"/v2/models/{TEACHER}/infer", json=BODY)
            assert unloaded.status_code == 503 and "not ready" in unloaded.json()["error"]
            shutil.rmtree(broken)
            client.load_model(TEACHER, headers=ADMIN)
            assert http.post(f"/v2/models/{TEACHER}/infer", json=BODY).status_code == 200
            anonymous = http.post(f"/v2/repository/models/{TEACHER}/unload")
            assert anonymous.status_code == 401 and "Bearer" in anonymous.json()["error"]
            missing = http.post("/v2/repository/models/mnist-nope/load", headers=ADMIN)
            assert missing.status_code == 404 and "not in the registry" in missing.json()["error"]


def test_registry_folder_disappearing_does_not_take_the_server_down(registry: Path) -> None:
    with run_service(make_settings(registry)) as running, running.client(headers=ADMIN) as client:
        shutil.rmtree(registry)
        assert client.post(f"/v2/models/{TEACHER}/infer", json=BODY).status_code == 200
        reload = client.post(f"/v2/repository/models/{TEACHER}/load")
        assert reload.status_code == 400
        assert "does not exist" in reload.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post(f"/v2/models/{TEACHER}/infer", json=BODY).status_code == 200


def test_limits_per_model_timeout_and_cors(registry: Path) -> None:
    def slow_teacher(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, infer_delay_s=0.5) if model.card.variant == "teacher-fp32" else backend

    settings = make_settings(
        registry, limits={"max_tensor_elements": 1000, "model_timeouts_s": {TEACHER: 0.1}}
    )
    with run_service(settings, backend_wrapper=slow_teacher) as running, running.client() as client:
        big = {
            "inputs": [
                {"name": "INPUT__0", "shape": [2, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 1568}
            ]
        }
        refused = client.post("/v2/models/mnist-student-fp32/infer", json=big)
        assert refused.status_code == 400
        assert "1568 elements, more than the limit of 1000" in refused.json()["error"]
        assert client.post(f"/v2/models/{TEACHER}/infer", json=BODY).status_code == 504
        assert client.post("/v2/models/mnist-student-fp32/infer", json=BODY).status_code == 200
        preflight = client.options("/v2/models/mnist/infer", headers={
            "origin": "https://evil.example", "access-control-request-method": "POST"})  # fmt: skip
        assert "access-control-allow-origin" not in preflight.headers
    cors = make_settings(registry, server={"cors_origins": ["https://dash.example"]})
    with run_service(cors) as running, running.client() as client:
        answer = client.get("/v2/health/live", headers={"origin": "https://dash.example"})
        assert answer.headers["access-control-allow-origin"] == "https://dash.example"
        # inference is served ahead of FastAPI's router (api/http/front.py), still inside CORS
        inferred = client.post(
            "/v2/models/mnist-student-fp32/infer", json=BODY, headers={"origin": "https://dash.example"}
        )
        assert inferred.status_code == 200
        assert inferred.headers["access-control-allow-origin"] == "https://dash.example"


def test_sigterm_drains_without_losing_an_accepted_request(registry: Path) -> None:
    command = [sys.executable, "-m", "service", "--registry.path", str(registry), "--server.http_port", "0",
               "--server.grpc_port", "0", "--server.drain_delay_s", "1.5", "--server.shutdown_grace_s", "5"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    url = ""
    while not url:
        line = process.stderr.readline()
        assert line, "the service exited before announcing its address"
        if match := re.search(r"listening on (http://\S+) ", line):
            url = match.group(1)
    reader = threading.Thread(target=process.stderr.read, daemon=True)  # keep the pipe drained
    reader.start()
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    outcomes: list[tuple[float, float, int | str]] = []  # (sent, answered, status or error)
    stop = threading.Event()
    big = {"inputs": [{"name": "INPUT__0", "shape": [32, 1, 28, 28], "datatype": "FP32",
                       "data": np.zeros(32 * 784).tolist()}]}  # fmt: skip

    def client() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    status: int | str = http.post(f"/v2/models/{TEACHER}/infer", json=big).status_code
                except httpx.TransportError as exc:
                    status = type(exc).__name__
                outcomes.append((sent, time.monotonic(), status))
                if isinstance(status, str):
                    return  # the server stopped accepting: this client is done

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    terminated = time.monotonic()
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    draining = httpx.get(f"{url}/v2/health/ready")
    assert draining.status_code == 503, "not ready at once after SIGTERM"
    assert "draining" in draining.json()["error"], "says why: draining, not loading"
    assert process.wait(timeout=30) == 0
    reader.join(timeout=10)
    process.stderr.close()
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    before = [status for sent, _, status in outcomes if sent < terminated]
    assert before and set(before) == {200}, "a request sent before SIGTERM was lost"
    assert not [s for _, _, s in outcomes if isinstance(s, int) and s != 200], (
        "no request may fail with a status"
    )
    served_while_draining = [s for sent, _, s in outcomes if terminated + 0.5 < sent < terminated + 1.4]
    assert served_while_draining and set(served_while_draining) == {200}, (
        "kept serving during the drain delay"
    )
