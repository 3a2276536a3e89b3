"""The backend interface: as small as httpx's transport, so a fault-injecting twin is a few lines."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Backend(Protocol):
    """Runs one variant. ``infer`` takes a whole batch (rows on axis 0) and returns the batch's outputs."""

    kind: str  # metric label: "torch", "triton", ...

    async def load(self) -> None: ...

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    async def unload(self) -> None: ...

    @property
    def ready(self) -> bool: ...
