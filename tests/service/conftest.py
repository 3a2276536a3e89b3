"""Fixtures for service tests: reference outputs computed in-process before any server starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from contract import layout
from contract.runners import open_runner
from tests.harness import RunningService, make_settings, run_service

VARIANTS = [
    "teacher-fp32",
    "student-scratch-fp32",
    "student-fp32",
    "student-int8-x86",
    "student-int8-qnnpack",
    "teacher-fp32-onnx",
    "student-fp32-onnx",
    "student-int8-onnx",
    "student-int8-openvino",
    "student-pruned-fp32",
    "student-pruned-int8-x86",
    "student-pruned-int8-qnnpack",
    "student-pruned-int8-onnx",
    "student-pruned-int8-openvino",
    "student-qat-int8-onnx",
    "student-qat-int8-openvino",
]
MODEL_NAMES = [f"mnist-{variant}" for variant in VARIANTS]


def assert_close(served: np.ndarray, expected: np.ndarray) -> None:
    """Served outputs equal in-process ones; batching may only move the last float bits."""
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)


def reference_logits(version_dir: Path, batch: np.ndarray) -> np.ndarray:
    """Run one version directly with its format's runner, one row at a time (no batching involved)."""
    run = open_runner(layout.ModelVersion(version_dir, layout.read_card(version_dir)))
    return np.concatenate([run(batch[i : i + 1].copy())["OUTPUT__0"] for i in range(len(batch))])


@pytest.fixture(scope="session")
def digits(mnist_test_digits: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    images, _ = mnist_test_digits
    return np.ascontiguousarray(images[:64], dtype=np.float32)


@pytest.fixture(scope="session")
def references(tiny_registry: Path, digits: np.ndarray) -> dict[str, np.ndarray]:
    return {name: reference_logits(tiny_registry / name / "1", digits) for name in MODEL_NAMES}


@pytest.fixture(scope="module")
def service(tiny_registry: Path, references: dict[str, np.ndarray]) -> Iterator[RunningService]:
    with run_service(make_settings(tiny_registry)) as running:
        yield running


@pytest.fixture(scope="module", params=["h2", "grpcio"])
def grpc_service(
    request: pytest.FixtureRequest, tiny_registry: Path, references: dict[str, np.ndarray]
) -> Iterator[RunningService]:
    """The service on each gRPC transport (``server.grpc_transport``): what gRPC clients see holds on both."""
    with run_service(make_settings(tiny_registry, server={"grpc_transport": request.param})) as running:
        yield running
