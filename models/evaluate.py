"""Metrics of a version on the test split, measured through the runner the service serves it with.

Quality (accuracy, NLL, agreement with the teacher), size (the artifact's bytes) and single-thread speed
(batch-1 latency p50, batch-32 throughput) all describe the published files, not the in-memory network.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from contract.layout import ModelVersion
from contract.runners import RunnerOptions, open_runner
from models.data import Split
from models.train import accuracy_and_nll


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def logits_of(
    run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int = 250
) -> np.ndarray:
    return np.concatenate([run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _latency_p50(run: Callable[[np.ndarray], Any], x: np.ndarray, iterations: int) -> float:
    for _ in range(max(3, iterations // 5)):
        run(x)
    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        run(x)
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def output_of(version: ModelVersion) -> Callable[[np.ndarray], np.ndarray]:
    """The version's first output as a function of a batch, through the runner the service serves it with
    (one intra-op thread)."""
    runner = open_runner(version, RunnerOptions(threads=1))
    output = version.card.signature.outputs[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return runner(batch)[output]

    return run


def artifact_bytes(version: ModelVersion) -> int:
    return sum((version.directory / name).stat().st_size for name in version.card.format.files)


def speed(run: Callable[[np.ndarray], Any], rows: np.ndarray, *, fast: bool = False) -> dict[str, float]:
    """Batch-1 latency p50 and batch-32 throughput of ``run`` on ``rows`` (repeated up to 32 when fewer)."""
    iterations = 20 if fast else 200
    batch = np.resize(rows, (32, *rows.shape[1:])) if len(rows) < 32 else rows[:32]
    return {
        "latency_p50_batch1_seconds": _latency_p50(run, rows[:1], iterations),
        "throughput_batch32_per_second": 32 / _latency_p50(run, batch, max(10, iterations // 4)),
    }


def evaluate_version(
    version: ModelVersion,
    test: Split,
    *,
    teacher_predictions: np.ndarray | None,
    parameters: int,
    fast: bool = False,
) -> tuple[dict[str, Any], np.ndarray]:
    """The card's metrics and the test-split logits of ``version`` (one intra-op thread)."""
    with single_thread():
        run = output_of(version)
        logits = logits_of(run, test.images)
        timings = speed(run, test.images, fast=fast)
    accuracy, nll = accuracy_and_nll(torch.from_numpy(logits), test.labels)
    predictions = logits.argmax(1)
    agreement = 1.0 if teacher_predictions is None else float((predictions == teacher_predictions).mean())
    metrics = {
        "accuracy": accuracy,
        "nll": nll,
        "agreement_with_teacher": agreement,
        "parameters": parameters,
        "bytes": artifact_bytes(version),
        **timings,
    }
    return metrics, logits
