"""Fault-injecting backend wrappers: composition around the real backend, nothing patched."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from service.backends.base import Backend
from service.errors import BackendUnavailable


class FaultyBackend:
    """Delegates to a real backend, optionally slower, blocked at load, failing on poisoned rows, or down
    (every call raises BackendUnavailable, as a remote backend that cannot answer does)."""

    def __init__(
        self,
        inner: Backend,
        *,
        infer_delay_s: float = 0.0,
        load_gate: threading.Event | None = None,
        poisoned: Callable[[np.ndarray], bool] | None = None,
        down: threading.Event | None = None,
    ) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.infer_delay_s = infer_delay_s
        self.load_gate = load_gate
        self.poisoned = poisoned
        self.down = down
        self.batches: list[int] = []

    @property
    def ready(self) -> bool:
        return self.inner.ready

    async def load(self) -> None:
        if self.load_gate is not None:
            await asyncio.to_thread(self.load_gate.wait)  # the test thread opens the gate
        await self.inner.load()

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(int(batch.shape[0]))
        if self.infer_delay_s:
            await asyncio.sleep(self.infer_delay_s)
        if self.down is not None and self.down.is_set():
            raise BackendUnavailable("injected fault: the backend cannot answer")
        if self.poisoned is not None and any(self.poisoned(row) for row in batch):
            raise RuntimeError("injected fault: poisoned row in batch")
        return await self.inner.infer(batch)

    async def unload(self) -> None:
        await self.inner.unload()
