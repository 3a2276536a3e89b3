"""A confidence cascade's second stage: the rows of a request the first stage is unsure of (top softmax
probability below the threshold) are answered by the second; the others keep the first's answer. A request
of one row is answered by one stage; a batch may mix them, and the response lists the escalated rows.

The first stage's answer stands when the second cannot give one in time (not ready, overloaded, down, out
of time): it is a valid answer, only a less certain one; such requests count as not escalated and are
counted in ``slimserve_cascade_escalations_failed_total``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable

import numpy as np

from contract.confidence import top_probability
from service.batching.batcher import BatchResult
from service.errors import BackendUnavailable, ModelNotReady, Overloaded
from service.metrics import ServiceMetrics
from service.registry.store import ModelStore, ServedVariant
from service.routing.router import Assignment

log = logging.getLogger(__name__)

RunOn = Callable[[ServedVariant, np.ndarray], Awaitable[BatchResult]]


@dataclasses.dataclass(frozen=True, slots=True)
class Escalation:
    """Which rows of a cascade arm's request the second stage answered."""

    rows: tuple[int, ...]
    total: int
    first: str  # variant names
    then: str

    @property
    def escalated(self) -> bool:
        return bool(self.rows)


class CascadeStep:
    def __init__(self, store: ModelStore, metrics: ServiceMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def answer(
        self, assignment: Assignment | None, served: ServedVariant, batch: np.ndarray, result: BatchResult,
        run_on: RunOn,
    ) -> tuple[ServedVariant, BatchResult, Escalation | None]:  # fmt: skip
        """Who answers and with what; the escalation is None when the assignment is no cascade. ``served``
        becomes the second stage only when it answered every row."""
        cascade = assignment.cascade if assignment is not None else None
        if cascade is None or cascade.threshold is None:
            return served, result, None
        card = served.model.card
        unsure = top_probability(result.outputs[card.signature.outputs[0].name]) < cascade.threshold
        kept = Escalation((), len(unsure), cascade.first, cascade.then)
        if not unsure.any():
            return served, result, kept
        then = f"{card.family}-{cascade.then}"
        try:
            second = self._store.find(then, None)
            answer = await run_on(second, batch[unsure] if not unsure.all() else batch)
        except (BackendUnavailable, ModelNotReady, Overloaded, TimeoutError) as exc:
            log.warning("cascade %s: %s could not answer an escalated request, %s did: %s",
                        cascade.name, then, card.name, exc)  # fmt: skip
            self._metrics.cascade_escalations_failed.labels(card.family, cascade.name).inc()
            return served, result, kept
        escalation = dataclasses.replace(kept, rows=tuple(int(i) for i in np.flatnonzero(unsure)))
        if unsure.all():
            return second, answer, escalation
        merged = {
            name: _merged(values, answer.outputs[name], unsure) for name, values in result.outputs.items()
        }
        return served, dataclasses.replace(result, outputs=merged), escalation


def _merged(first: np.ndarray, then: np.ndarray, unsure: np.ndarray) -> np.ndarray:
    rows = first.copy()
    rows[unsure] = then
    return rows
