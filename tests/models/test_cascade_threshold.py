"""The cascade threshold: cheapest escalation within the margin, picked on validation, recorded on the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from contract.confidence import top_probability
from contract.layout import latest
from models.cascade import pick_threshold


def logits_for(classes: list[int], confidence: list[float], count: int = 10) -> np.ndarray:
    """Rows whose top class is ``classes[i]`` with softmax probability ``confidence[i]``."""
    rows = np.zeros((len(classes), count))
    for row, (cls, p) in enumerate(zip(classes, confidence, strict=True)):
        rest = (1 - p) / (count - 1)
        rows[row] = np.log(rest)
        rows[row, cls] = np.log(p)
    return rows


def test_the_cheapest_escalation_within_the_margin_is_picked() -> None:
    labels = np.array([0, 1, 2, 3])
    # the first stage is wrong on its two least confident rows; the second is always right
    first = logits_for([0, 1, 9, 9], [0.99, 0.95, 0.5, 0.6])
    then = logits_for([0, 1, 2, 3], [0.9] * 4)
    choice = pick_threshold(first, then, labels, margin=0.0)
    assert choice.expected_escalation == 0.5 and choice.expected_accuracy == 1.0
    assert np.isclose(choice.threshold, 0.95)
    assert (top_probability(first) < choice.threshold).sum() == 2
    # a margin of one row in four needs one escalation only
    loose = pick_threshold(first, then, labels, margin=0.25)
    assert loose.expected_escalation == 0.25 and np.isclose(loose.threshold, 0.6)
    assert 0 < loose.threshold < 1


def test_a_first_stage_as_good_as_the_second_escalates_nothing() -> None:
    labels = np.array([0, 1])
    first = logits_for([0, 1], [0.7, 0.8])
    choice = pick_threshold(first, first, labels)
    assert choice.expected_escalation == 0 and choice.expected_accuracy == 1.0


def test_mismatched_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="same"):
        pick_threshold(np.zeros((2, 10)), np.zeros((3, 10)), np.zeros(2, dtype=int))


def test_the_pipeline_records_the_threshold_on_the_students_cards(tiny_registry: Path) -> None:
    card = latest(tiny_registry, "mnist-student-int8-x86").card
    assert card.cascade is not None
    assert card.cascade.then == "teacher-fp32" and card.cascade.computed_on == "validation"
    assert 0 < card.cascade.threshold < 1 and 0 <= card.cascade.expected_escalation <= 1
    assert latest(tiny_registry, "mnist-teacher-fp32").card.cascade is None


def test_cards_without_a_cascade_still_load(tiny_registry: Path, tmp_path: Path) -> None:
    folder = latest(tiny_registry, "mnist-student-fp32").directory
    data = json.loads((folder / "card.json").read_text())
    data.pop("cascade", None)
    from contract.card import ModelCard

    assert ModelCard.model_validate(data).cascade is None
