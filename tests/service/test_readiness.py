"""The readiness table of the README, row by row, as a client observes it.

Pod: ``/v2/health/ready``; family: ``/v2/models/mnist/ready``; a variant: ``/v2/models/<name>/ready``.
The Triton rows point a variant at a port where nothing listens (a real tritonclient, a real refusal); the
rows with a real Triton that goes away under load are in ``tests/triton/test_failure_modes.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from contract.layout import ModelVersion
from service.backends.base import Backend
from tests.harness import ADMIN, make_settings, run_service
from tests.service.faults import FaultyBackend

TEACHER = "mnist-teacher-fp32"
DEFAULT = "mnist-student-int8-x86"  # the variant a bare family call goes to


@pytest.fixture
def closed_port() -> Iterator[str]:
    """An address where nothing listens: a Triton that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: connections are refused


def statuses(client: httpx.Client, *variants: str) -> tuple[int, ...]:
    paths = ["/v2/health/ready", "/v2/models/mnist/ready", *(f"/v2/models/{v}/ready" for v in variants)]
    return tuple(client.get(path).status_code for path in paths)


def state_of(client: httpx.Client, name: str) -> tuple[str, str]:
    entry = next(e for e in client.get("/v2/models").json()["models"] if e["name"] == name)
    return entry["state"], entry["reason"]


def routed_to_teacher(tmp_path: Path) -> dict[str, Path]:
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": [{
        "name": "all-teacher", "family": "mnist", "variants": [{"name": "teacher-fp32", "weight": 100}]}]}))  # fmt: skip
    return {"experiments_file": experiments}


def test_a_variant_still_loading_keeps_the_pod_out_but_not_a_family_that_answers(tiny_registry: Path) -> None:
    gate = threading.Event()

    def gated(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, load_gate=gate) if model.card.name == TEACHER else backend

    settings = make_settings(tiny_registry)
    with (
        run_service(settings, backend_wrapper=gated, wait_ready=False) as running,
        running.client() as client,
    ):
        deadline = time.monotonic() + 60
        while state_of(client, DEFAULT)[0] != "READY":  # loaded before the teacher (name order)
            assert time.monotonic() < deadline, "the default variant never loaded"
            time.sleep(0.05)
        assert statuses(client, TEACHER, DEFAULT) == (503, 200, 503, 200)
        assert state_of(client, TEACHER)[0] == "LOADING"
        assert "variants are still loading" in client.get("/v2/health/ready").json()["error"]
        gate.set()
        running.wait_loaded()
        assert statuses(client, TEACHER, DEFAULT) == (200, 200, 200, 200)
        assert state_of(client, TEACHER) == ("READY", "")


@pytest.mark.parametrize("strict", [False, True])
def test_an_unloaded_variant_no_family_routes_to_keeps_the_pod_ready(
    tiny_registry: Path, strict: bool
) -> None:
    settings = make_settings(tiny_registry, registry={"strict_readiness": strict})
    with run_service(settings) as running, running.client() as client:
        assert client.post(f"/v2/repository/models/{TEACHER}/unload", headers=ADMIN).status_code == 200
        assert statuses(client, TEACHER, DEFAULT) == (200, 200, 503, 200)
        assert state_of(client, TEACHER) == ("UNAVAILABLE", "unloaded")


def test_the_routed_variant_unloaded_without_fallback_takes_the_pod_out(tiny_registry: Path) -> None:
    with run_service(make_settings(tiny_registry)) as running, running.client() as client:
        assert client.post(f"/v2/repository/models/{DEFAULT}/unload", headers=ADMIN).status_code == 200
        assert statuses(client, TEACHER, DEFAULT) == (503, 503, 200, 503)
        assert state_of(client, DEFAULT) == ("UNAVAILABLE", "unloaded")
        error = client.get("/v2/health/ready").json()["error"]
        assert f"family 'mnist' routes to '{DEFAULT}', which cannot answer" in error
        assert "it has no fallback" in error
        assert client.post(f"/v2/repository/models/{DEFAULT}/load", headers=ADMIN).status_code == 200
        assert statuses(client, TEACHER, DEFAULT) == (200, 200, 200, 200)


def test_routed_triton_down_with_a_fallback_pod_and_family_stay_ready(
    tiny_registry: Path, tmp_path: Path, closed_port: str
) -> None:
    backends = {"teacher-fp32": {"kind": "triton", "url": closed_port, "fallback": "student-int8-x86"}}
    settings = make_settings(tiny_registry, backends=backends, routing=routed_to_teacher(tmp_path))
    with run_service(settings) as running, running.client() as client:
        assert statuses(client, TEACHER) == (200, 200, 503)
        state, reason = state_of(client, TEACHER)
        assert state == "UNAVAILABLE" and f"Triton at {closed_port} (grpc) cannot be reached" in reason


def test_routed_triton_down_without_fallback_is_not_ready(
    tiny_registry: Path, tmp_path: Path, closed_port: str
) -> None:
    backends = {"teacher-fp32": {"kind": "triton", "url": closed_port}}
    settings = make_settings(tiny_registry, backends=backends, routing=routed_to_teacher(tmp_path))
    with run_service(settings, wait_ready=False) as running, running.client() as client:
        running.wait_loaded()
        assert statuses(client, TEACHER) == (503, 503, 503)
        assert state_of(client, TEACHER)[0] == "UNAVAILABLE"


def test_triton_down_for_a_variant_no_family_routes_to_keeps_the_pod_ready(
    tiny_registry: Path, closed_port: str
) -> None:
    backends = {"teacher-fp32": {"kind": "triton", "url": closed_port}}
    with run_service(make_settings(tiny_registry, backends=backends)) as running, running.client() as client:
        assert statuses(client, TEACHER, DEFAULT) == (200, 200, 503, 200)
        assert state_of(client, TEACHER)[0] == "UNAVAILABLE"


def test_strict_readiness_wants_every_loaded_variant_to_answer_by_itself(
    tiny_registry: Path, tmp_path: Path, closed_port: str
) -> None:
    backends = {"teacher-fp32": {"kind": "triton", "url": closed_port, "fallback": "student-int8-x86"}}
    settings = make_settings(tiny_registry, backends=backends, routing=routed_to_teacher(tmp_path),
                             registry={"strict_readiness": True})  # fmt: skip
    with run_service(settings, wait_ready=False) as running, running.client() as client:
        running.wait_loaded()
        assert statuses(client, TEACHER) == (503, 200, 503)
        assert state_of(client, TEACHER)[0] == "UNAVAILABLE"
        assert (
            f"strict readiness: '{TEACHER}' version 1 is UNAVAILABLE"
            in client.get("/v2/health/ready").json()["error"]
        )
