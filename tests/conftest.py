"""Session fixtures shared by the model and service tests: one tiny registry, a few real test digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.artifacts import variants
from models.data import load_builtin
from models.evaluate import single_thread
from models.pipeline import build
from models.spec import builtin_spec

MNIST_VARIANTS = variants(builtin_spec("mnist").recipe())  # what the default mnist build publishes


@pytest.fixture(scope="session")
def tiny_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every mnist variant at version 1, trained for one epoch on 600 digits (seconds, not minutes)."""
    path = tmp_path_factory.mktemp("tiny-registry")
    with single_thread():
        build("mnist", path, epochs=1, limit=600, progress=False)
    return path


@pytest.fixture(scope="session")
def mnist_test_digits() -> tuple[np.ndarray, np.ndarray]:
    """100 real digits from the test split: raw 0-255 float32 [100,1,28,28] and int64 labels."""
    test = load_builtin().test
    return test.images[:100].copy(), test.labels[:100].copy()
