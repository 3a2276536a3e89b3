"""A confidence cascade's second stage: when the first stage is unsure of any row of a request, the whole
request is answered by the second (so the response, the metrics and a label's join name one variant).

The first stage's answer stands when the second cannot give one in time (not ready, overloaded, down, out
of time): it is a valid answer, only a less certain one; such requests count as not escalated and are
counted in ``slimserve_cascade_escalations_failed_total``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from contract.confidence import top_probability
from service.batching.batcher import BatchResult
from service.errors import BackendUnavailable, ModelNotReady, Overloaded
from service.metrics import ServiceMetrics
from service.registry.store import ModelStore, ServedVariant
from service.routing.router import Assignment

log = logging.getLogger(__name__)

RunOn = Callable[[ServedVariant], Awaitable[BatchResult]]


class CascadeStep:
    def __init__(self, store: ModelStore, metrics: ServiceMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def answer(
        self, assignment: Assignment | None, served: ServedVariant, result: BatchResult, run_on: RunOn
    ) -> tuple[ServedVariant, BatchResult, bool | None]:
        """Who answers and with what; escalated is None when the assignment is no cascade."""
        cascade = assignment.cascade if assignment is not None else None
        if cascade is None or cascade.threshold is None:
            return served, result, None
        card = served.model.card
        logits = result.outputs[card.signature.outputs[0].name]
        if not (top_probability(logits) < cascade.threshold).any():
            return served, result, False
        then = f"{card.family}-{cascade.then}"
        try:
            second = self._store.find(then, None)
            return second, await run_on(second), True
        except (BackendUnavailable, ModelNotReady, Overloaded, TimeoutError) as exc:
            log.warning("cascade %s: %s could not answer an escalated request, %s did: %s",
                        cascade.name, then, card.name, exc)  # fmt: skip
            self._metrics.cascade_escalations_failed.labels(card.family, cascade.name).inc()
            return served, result, False
