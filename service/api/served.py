"""What served a request, said the same way on both fronts: HTTP headers and gRPC trailing metadata."""

from __future__ import annotations

from service.dataplane import InferOutcome


def served_by(outcome: InferOutcome) -> list[tuple[str, str]]:
    """The model, variant, version, fallback flag, request id and experiment, as lower-case key/value pairs."""
    card = outcome.served.model.card
    pairs = [
        ("slimserve-model", card.name),
        ("slimserve-variant", card.variant),
        ("slimserve-version", str(card.version)),
        ("slimserve-fallback", "true" if outcome.fallback else "false"),
        ("slimserve-request-id", outcome.response.id or ""),
    ]
    if outcome.assignment and outcome.assignment.experiment:
        pairs.append(("slimserve-experiment", outcome.assignment.experiment.name))
    return pairs
