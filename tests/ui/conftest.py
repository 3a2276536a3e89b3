"""Services for the trade-off page: one whose family runs an A/B experiment with shadow traffic, one without."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.harness import RunningService, make_settings, run_service

EXPERIMENT = "mnist-ui"
WEIGHTS = {"teacher-fp32": 20, "student-fp32": 30, "student-int8-x86": 50}


@pytest.fixture(scope="module")
def ab_service(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningService]:
    experiments = tmp_path_factory.mktemp("ui") / "experiments.yaml"
    experiment = {"name": EXPERIMENT, "family": "mnist",
                  "variants": [{"name": name, "weight": weight} for name, weight in WEIGHTS.items()],
                  "sticky_key": "x-user-id", "shadow": {"variant": "teacher-fp32", "percent": 100},
                  "margin": 0.05, "min_samples": 10}  # fmt: skip
    experiments.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    with run_service(make_settings(tiny_registry, routing={"experiments_file": experiments})) as running:
        yield running


@pytest.fixture(scope="module")
def plain_service(tiny_registry: Path) -> Iterator[RunningService]:
    """No experiment: calls to the family go to its default variant (what `make serve` runs)."""
    with run_service(make_settings(tiny_registry)) as running:
        yield running
