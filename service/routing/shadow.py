"""Shadow traffic: a copy of a routed request runs on another variant after the primary has answered.

Copies go through a bounded queue worked by one task: when it is full the copy is dropped and counted,
so shadowing never blocks or slows the primary path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShadowJob:
    experiment: str
    primary: str  # variant names within the family
    shadow: str
    model: str  # the shadow's model name, "<family>-<variant>"
    request_id: str
    batch: np.ndarray
    primary_logits: np.ndarray


@dataclass(frozen=True, slots=True)
class Comparison:
    rows: int
    agreed: int
    kl_divergences: np.ndarray  # KL(shadow ‖ primary) per row, in nats
    shadow_classes: tuple[int, ...]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


def compare(primary_logits: np.ndarray, shadow_logits: np.ndarray) -> Comparison:
    primary = _log_softmax(primary_logits.astype(np.float64))
    shadow = _log_softmax(shadow_logits.astype(np.float64))
    kl = (np.exp(shadow) * (shadow - primary)).sum(axis=1)
    shadow_classes = shadow.argmax(axis=1)
    agreed = int((primary.argmax(axis=1) == shadow_classes).sum())
    return Comparison(len(kl), agreed, np.maximum(kl, 0.0), tuple(int(c) for c in shadow_classes))


RunShadow = Callable[[str, np.ndarray], Awaitable[np.ndarray]]
OnResult = Callable[[ShadowJob, Comparison], None]


class ShadowRunner:
    def __init__(self, queue_size: int, run: RunShadow, on_result: OnResult) -> None:
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(maxsize=queue_size)
        self._run = run
        self._on_result = on_result
        self._worker: asyncio.Task[None] | None = None
        self.failed = 0

    def offer(self, job: ShadowJob) -> bool:
        """Queue a copy without waiting; False when the queue is full and the copy was dropped."""
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            return False
        return True

    def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="shadow")

    async def stop(self) -> None:
        await cancel_and_wait(self._worker)

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                logits = await self._run(job.model, job.batch)
                self._on_result(job, compare(job.primary_logits, logits))
            except Exception as exc:  # a failing shadow must never affect anything else
                self.failed += 1
                log.warning("shadow copy of %s on %s failed: %s", job.request_id, job.model, exc)
