"""In-process backend for every artifact format: TorchScript, ONNX Runtime and OpenVINO.

The format-specific work (verify checksums, open the file, run a batch) is ``contract.runners``, the same code
the pipeline measured the card's metrics with; this class adds what serving needs around it: loading and
warm-up off the event loop, inference on the shared thread pool, and the ``backend`` label naming the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

import numpy as np

from contract.layout import ModelVersion
from contract.runners import Runner, RunnerOptions, open_runner, runtime_of

log = logging.getLogger(__name__)


class InProcessBackend:
    def __init__(
        self, version: ModelVersion, executor: Executor, options: RunnerOptions, warmup_iterations: int = 3
    ) -> None:
        self._version = version
        self._executor = executor
        self._options = options
        self._warmup_iterations = warmup_iterations
        self._runner: Runner | None = None
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
            runner(warm)
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
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._infer_blocking, batch)

    def _infer_blocking(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        runner = self._runner
        if runner is None:
            raise RuntimeError(f"{self._version.card.name} is not loaded")
        return runner(batch)

    async def unload(self) -> None:
        self._runner = None
