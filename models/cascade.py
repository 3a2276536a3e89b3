"""Pick a confidence cascade's threshold: the first variant answers unless its top softmax probability is
below the threshold, then the second (the teacher) does.

The threshold is the one with the lowest escalation rate whose accuracy stays within ``margin`` of the
second variant's, measured on the validation split (the test split stays for the card's metrics). The
service's load-test report calls the same function when a registry's cards carry no threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.confidence import top_probability
from contract.layout import ModelVersion
from contract.runners import RunnerOptions, open_runner

DEFAULT_MARGIN = 0.001  # half the 0.2 pt the cascade may lose on the test split: the pick is on validation
LARGEST_BELOW_ONE = float(np.nextafter(1.0, 0.0))


@dataclass(frozen=True)
class CascadeChoice:
    threshold: float
    expected_escalation: float
    expected_accuracy: float
    then_accuracy: float
    margin: float

    def card_fields(self, then: str, split: str) -> dict[str, object]:
        """The card's ``cascade`` entry (``contract.card.CascadeChoice``)."""
        return {"then": then, "threshold": self.threshold, "expected_escalation": self.expected_escalation,
                "expected_accuracy": self.expected_accuracy, "margin": self.margin, "computed_on": split}  # fmt: skip


def pick_threshold(
    first_logits: np.ndarray, then_logits: np.ndarray, labels: np.ndarray, margin: float = DEFAULT_MARGIN
) -> CascadeChoice:
    """The lowest-escalation threshold whose cascade accuracy is at least the second's minus ``margin``.

    Escalating the k least confident rows is the only family of choices a threshold can make, so every k
    at a change of confidence is tried, cheapest first.
    """
    if not len(labels) or len(first_logits) != len(labels) or len(then_logits) != len(labels):
        raise ValueError("first_logits, then_logits and labels must have the same, non-zero, number of rows")
    confidence = top_probability(first_logits)
    order = np.argsort(confidence, kind="stable")
    ordered = confidence[order]
    first_right = (first_logits.argmax(axis=1) == labels)[order]
    then_right = (then_logits.argmax(axis=1) == labels)[order]
    rows = len(labels)
    then_accuracy = float(then_right.mean())
    # correct answers when the k least confident rows are escalated, for k = 0..rows
    correct = np.concatenate([[0], np.cumsum(then_right)]) + np.concatenate(
        [np.cumsum(first_right[::-1])[::-1], [0]]
    )
    for k in range(rows + 1):
        if 0 < k < rows and ordered[k] == ordered[k - 1]:
            continue  # no threshold separates tied confidences
        if correct[k] / rows >= then_accuracy - margin - 1e-12:
            threshold = float(ordered[k]) if k < rows else LARGEST_BELOW_ONE
            threshold = min(max(threshold, 1e-9), LARGEST_BELOW_ONE)
            return CascadeChoice(threshold, k / rows, float(correct[k] / rows), then_accuracy, margin)
    raise AssertionError("escalating every row reaches the second variant's accuracy")  # pragma: no cover


def artifact_logits(version: ModelVersion, images: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """What the artifact itself answers (int8 included), as the service would run it."""
    runner = open_runner(version, RunnerOptions(threads=1))
    output = version.card.signature.outputs[0].name
    return np.concatenate(
        [runner(images[i : i + batch_size])[output] for i in range(0, len(images), batch_size)]
    )


def cascade_choices(
    versions: dict[str, ModelVersion], then: str, images: np.ndarray, labels: np.ndarray, split: str,
    margin: float = DEFAULT_MARGIN,
) -> dict[str, dict[str, object]]:  # fmt: skip
    """Each variant's card entry for a cascade to ``then`` (none for ``then`` itself, nor without it)."""
    if then not in versions:
        return {}
    then_logits = artifact_logits(versions[then], images)
    return {
        variant: pick_threshold(artifact_logits(version, images), then_logits, labels, margin).card_fields(
            then, split
        )
        for variant, version in versions.items()
        if variant != then
    }
