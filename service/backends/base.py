"""The backend interface: as small as httpx's transport, so a fault-injecting twin is a few lines."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from service.backends.breaker import CircuitBreaker


class Backend(Protocol):
    """Runs one variant. ``infer`` takes a whole batch (rows on axis 0) and returns the batch's outputs."""

    kind: str  # metric label: "torch", "triton", ...

    async def load(self) -> None: ...

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    async def unload(self) -> None: ...

    @property
    def ready(self) -> bool: ...


@runtime_checkable
class RemoteBackend(Backend, Protocol):
    """A backend in another process (Triton): guarded by a circuit breaker, and able to say why it is down."""

    breaker: CircuitBreaker
    unavailable_reason: str


def unavailable_reason(backend: Backend) -> str:
    """Why ``backend`` cannot answer now, as precisely as it can tell."""
    if isinstance(backend, RemoteBackend) and backend.unavailable_reason:
        return backend.unavailable_reason
    return "its backend is not ready"
