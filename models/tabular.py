"""Tabular data shipped inside scikit-learn, for the built-in ``wdbc`` family: nothing is downloaded."""

from __future__ import annotations

import numpy as np


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """The Wisconsin Diagnostic Breast Cancer set: 569 rows of 30 measurements; 0 malignant, 1 benign."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    return np.asarray(bunch.data, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)
