"""torch's quantized engine, which is process-global: one guard for every load and run of TorchScript int8.

A TorchScript int8 model is re-packed for the engine in effect at ``torch.jit.load`` and runs with the
kernels of the engine in effect at call time, so x86 and qnnpack variants can live in one process only if
each load and call selects its own engine, under one lock. The lock is re-entrant so that a caller holding
the engine (export, then verify the reload) can nest.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

_LOCK = threading.RLock()


class EngineError(Exception):
    """A quantized engine this torch build cannot run."""


def check_engine_supported(engine: str) -> None:
    supported = [name for name in torch.backends.quantized.supported_engines if name != "none"]
    if engine not in supported:
        raise EngineError(
            f"quantization engine {engine!r} is not supported by this torch build (supported: {', '.join(supported)})"
        )


@contextlib.contextmanager
def use_engine(engine: str | None) -> Iterator[None]:
    """Hold the process's quantized engine set to ``engine`` for the block (no-op for None), then restore it."""
    if engine is None:
        yield
        return
    check_engine_supported(engine)
    with _LOCK:
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        try:
            yield
        finally:
            torch.backends.quantized.engine = previous
