"""What served a request, as one value (``InferOutcome``) and the one function that names it to clients:
HTTP headers and gRPC trailing metadata carry the same pairs, so the two transports cannot drift."""

from __future__ import annotations

from dataclasses import dataclass

from service.cascade import Escalation
from service.protocol import InferResponse
from service.registry.store import ServedVariant
from service.routing.router import Assignment


@dataclass(slots=True)  # not frozen: one per request (see service.protocol)
class InferOutcome:
    response: InferResponse
    served: ServedVariant
    assignment: Assignment | None  # set when a family name was routed to a variant
    fallback: bool = False  # answered by the fallback of a variant whose backend was down
    escalation: Escalation | None = None  # a cascade arm: the rows its second stage answered


def cascade_parameters(outcome: InferOutcome) -> dict[str, str | bool | list[int]]:
    """Response parameters of a cascade's answer, beside ``variant`` (the stage that answered every row, or
    the first when some rows were escalated: ``escalated_rows`` lists them)."""
    cascade = outcome.assignment.cascade if outcome.assignment else None
    escalation = outcome.escalation
    if cascade is None or escalation is None:
        return {}
    return {
        "cascade": cascade.name,
        "escalated": escalation.escalated,
        "escalated_rows": list(escalation.rows),
    }


def served_metadata(outcome: InferOutcome) -> dict[str, str]:
    """``slimserve-*`` headers (HTTP) and trailing metadata (gRPC): variant, version, fallback, experiment,
    cascade and whether it escalated, request id."""
    card = outcome.served.model.card
    metadata = {
        "slimserve-model": card.name,
        "slimserve-variant": card.variant,
        "slimserve-version": str(card.version),
        "slimserve-fallback": "true" if outcome.fallback else "false",
        "slimserve-request-id": outcome.response.id or "",
    }
    if outcome.assignment and outcome.assignment.experiment:
        metadata["slimserve-experiment"] = outcome.assignment.experiment.name
    if outcome.assignment and outcome.assignment.cascade and outcome.escalation:
        metadata["slimserve-cascade"] = outcome.assignment.cascade.name
        metadata["slimserve-escalated"] = "true" if outcome.escalation.escalated else "false"
        metadata["slimserve-escalated-rows"] = str(len(outcome.escalation.rows))
    return metadata
