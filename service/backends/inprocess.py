"""In-process backend for every artifact format: TorchScript, ONNX Runtime and OpenVINO.

A batch runs on the shared inference threads, unless it is expected to take less time than the hand-off to
a thread and back (``runtime.inline_below_ms``): on one core, a lone one-digit request to the int8 student
(about 70 µs of compute) answered 40–80 µs sooner at the median run on the event loop than sent to a thread.

The format-specific work (verify checksums, open the file, run a batch) is ``contract.runners``, the same code
the pipeline measured the card's metrics with; this class adds what serving needs around it: loading and
warm-up off the event loop, inference on the shared thread pool, and the ``backend`` label naming the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor

import numpy as np

from contract.layout import ModelVersion
from contract.runners import Runner, RunnerOptions, open_runner, runtime_of

log = logging.getLogger(__name__)


class RowCost:
    """What a row costs this variant, as a moving average of wall time over recent small batches.

    Wall time, not CPU time: measured on a thread that shares its core with the event loop it includes
    the waits, so under load the estimate grows and batches go back to the threads, where they overlap
    with the loop's own work. Unknown (never measured) is expensive.
    """

    SMALL = 4  # rows: larger batches cost less per row and would make the estimate optimistic
    WEIGHT = 0.1

    def __init__(self) -> None:
        self._per_row_s: float | None = None

    def observe(self, rows: int, seconds: float) -> None:
        if rows <= self.SMALL:
            per_row = seconds / rows
            last = self._per_row_s
            self._per_row_s = per_row if last is None else last + self.WEIGHT * (per_row - last)

    def expected(self, rows: int) -> float:
        return float("inf") if self._per_row_s is None else self._per_row_s * rows


class InProcessBackend:
    def __init__(
        self,
        version: ModelVersion,
        executor: Executor,
        options: RunnerOptions,
        warmup_iterations: int = 3,
        inline_below_s: float = 0.0,
    ) -> None:
        self._version = version
        self._executor = executor
        self._options = options
        self._warmup_iterations = warmup_iterations
        self._runner: Runner | None = None
        self._inline_below_s = inline_below_s
        self._row_cost = RowCost()
        self.kind = runtime_of(version.card.format)

    @property
    def ready(self) -> bool:
        return self._runner is not None

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_blocking)

    def _load_blocking(self) -> None:
        card = self._version.card
        runner = open_runner(self._version, self._options)
        warm = np.zeros(self._version.example_shape(rows=1), dtype=np.float32)
        for _ in range(self._warmup_iterations):
            self._timed(runner, warm)
        self._runner = runner
        log.info(
            "loaded %s version %d (%s %s on %s)",
            card.name,
            card.version,
            card.format,
            card.precision,
            self.kind,
        )

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._row_cost.expected(batch.shape[0]) < self._inline_below_s:
            return self._infer_blocking(batch)
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._infer_blocking, batch)

    def _infer_blocking(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        runner = self._runner
        if runner is None:
            raise RuntimeError(f"{self._version.card.name} is not loaded")
        return self._timed(runner, batch)

    def _timed(self, runner: Runner, batch: np.ndarray) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = runner(batch)
        self._row_cost.observe(batch.shape[0], time.perf_counter() - started)
        return outputs

    async def unload(self) -> None:
        self._runner = None
