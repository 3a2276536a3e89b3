"""In-process TorchScript backend for fp32 and int8 variants.

Inference runs on a shared thread pool, off the event loop. ``torch.backends.quantized.engine`` is
process-global, so every int8 load and inference happens under one lock with its own engine selected:
an x86 and a qnnpack variant can then live in one process and each runs with the kernels it was
quantized for. fp32 variants never take the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import torch

from service.registry.artifacts import ModelVersion, verify_files

log = logging.getLogger(__name__)


class QuantizedEngineGuard:
    """Serialises work that depends on the process-global quantized engine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def engine(self, engine: str | None) -> Iterator[None]:
        if engine is None:
            yield
            return
        with self._lock:
            torch.backends.quantized.engine = engine
            yield


def check_engine_supported(name: str, engine: str | None) -> None:
    if engine is not None and engine not in torch.backends.quantized.supported_engines:
        supported = ", ".join(torch.backends.quantized.supported_engines)
        raise RuntimeError(
            f"{name}: quantized engine '{engine}' is not supported here (supported: {supported})"
        )


def load_for_inference(path: Path, *, optimize: bool) -> torch.jit.ScriptModule:
    """Load TorchScript for CPU inference; ``optimize`` (fp32 only) fuses and folds it for oneDNN.

    The fused graph is specific to this CPU build, which is why it is made here and never published:
    the registry keeps the portable TorchScript that Triton's libtorch backend loads.
    """
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    if optimize:  # conv+ReLU fusion in oneDNN layouts: the teacher's batch 32 runs ~2x faster per row
        module = torch.jit.optimize_for_inference(module)
    return module


class TorchScriptBackend:
    kind = "torch"

    def __init__(
        self,
        version: ModelVersion,
        executor: Executor,
        guard: QuantizedEngineGuard,
        warmup_iterations: int = 3,
        optimize_fp32: bool = True,
    ) -> None:
        self._version = version
        self._executor = executor
        self._guard = guard
        self._warmup_iterations = warmup_iterations
        self._optimize_fp32 = optimize_fp32
        self._engine = version.card.quantization.engine if version.card.quantization else None
        self._output_name = version.card.signature.outputs[0].name
        self._module: torch.jit.ScriptModule | None = None

    @property
    def ready(self) -> bool:
        return self._module is not None

    async def load(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load_blocking)

    def _load_blocking(self) -> None:
        card = self._version.card
        check_engine_supported(card.name, self._engine)
        verify_files(self._version)
        with self._guard.engine(self._engine):
            path = Path(self._version.directory) / "model.pt"
            module = load_for_inference(path, optimize=self._engine is None and self._optimize_fp32)
            warm = torch.zeros(self._version.example_shape(rows=1), dtype=torch.float32)
            with torch.inference_mode():
                for _ in range(self._warmup_iterations):
                    module(warm)
        self._module = module
        log.info("loaded %s version %d (%s)", card.name, card.version, card.precision)

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._infer_blocking, batch)

    def _infer_blocking(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        module = self._module
        if module is None:
            raise RuntimeError(f"{self._version.card.name} is not loaded")
        if not batch.flags.writeable:  # torch.from_numpy refuses to share read-only (binary) buffers
            batch = batch.copy()
        with self._guard.engine(self._engine), torch.inference_mode():
            logits = module(torch.from_numpy(batch))
        return {self._output_name: logits.numpy()}

    async def unload(self) -> None:
        self._module = None


def configure_torch(threads: int) -> None:
    """Intra-op threads per inference; inter-op parallelism comes from the service's own thread pool."""
    torch.set_num_threads(threads)
