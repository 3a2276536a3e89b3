"""Metrics of a saved TorchScript artifact on the test split: quality, size and single-thread speed.

Everything is measured on ``model.pt`` as the service will load it, not on the in-memory module, so the
card describes the artifact actually published.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.data import Split
from models.quantize import use_engine
from models.train import accuracy_and_nll


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_torchscript(module: Any, images: np.ndarray, batch_size: int = 250) -> torch.Tensor:
    with torch.inference_mode():
        parts = [
            module(torch.from_numpy(images[i : i + batch_size])) for i in range(0, len(images), batch_size)
        ]
    return torch.cat(parts)


def _latency_p50(module: Any, x: torch.Tensor, iterations: int) -> float:
    timings = []
    with torch.inference_mode():
        for _ in range(max(3, iterations // 5)):
            module(x)
        for _ in range(iterations):
            start = time.perf_counter()
            module(x)
            timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def evaluate_artifact(
    path: Path,
    test: Split,
    *,
    teacher_predictions: torch.Tensor | None,
    parameters: int,
    engine: str | None = None,
    fast: bool = False,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Return the card metrics and the test-split predictions (argmax) of the artifact at ``path``."""
    iterations = 20 if fast else 200
    with use_engine(engine), single_thread():
        module = torch.jit.load(str(path))
        logits = run_torchscript(module, test.images)
        one = torch.from_numpy(test.images[:1])
        batch = torch.from_numpy(test.images[:32])
        latency = _latency_p50(module, one, iterations)
        throughput = 32 / _latency_p50(module, batch, max(10, iterations // 4))
    accuracy, nll = accuracy_and_nll(logits, test.labels)
    predictions = logits.argmax(1)
    agreement = (
        1.0 if teacher_predictions is None else float((predictions == teacher_predictions).float().mean())
    )
    metrics = {
        "accuracy": accuracy,
        "nll": nll,
        "agreement_with_teacher": agreement,
        "parameters": parameters,
        "bytes": path.stat().st_size,
        "latency_p50_batch1_seconds": latency,
        "throughput_batch32_per_second": throughput,
    }
    return metrics, predictions
