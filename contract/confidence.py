"""How sure a classifier is of a row: its top softmax probability. The pipeline picks a cascade's threshold
on it and the service escalates on it, so both must compute it the same way: here, once."""

from __future__ import annotations

import numpy as np


def top_probability(logits: np.ndarray) -> np.ndarray:
    """The largest softmax probability of each row of ``logits`` (rows x classes), in float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    result: np.ndarray = exp.max(axis=1) / exp.sum(axis=1)
    return result
