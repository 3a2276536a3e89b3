"""The in-process experiment state and configuration: right for one process, the default.

Predictions and tallies live in this process's memory (a restart starts them at zero); admin changes are
written back to the experiments file, so a restart of this process keeps them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from service.routing.experiments import Experiment, ExperimentsFile, save_experiments
from service.routing.feedback import Prediction, PredictionStore
from service.routing.state import OnLateLabels, Taken
from service.routing.tally import ExperimentTallies, latency_bucket


class InProcessState:
    write_behind_s = 0.0

    def __init__(self, capacity: int, ttl_s: float, early_labels_capacity: int) -> None:
        self._predictions = PredictionStore(capacity, ttl_s)
        self._tallies: dict[str, ExperimentTallies] = {}
        # labels that arrived while their request's shadow copy was still queued or running
        self._early_labels: dict[str, list[int]] = {}
        self._early_capacity = early_labels_capacity

    def remember(self, request_id: str, prediction: Prediction) -> None:
        self._predictions.put(request_id, prediction)

    def _of(self, experiment: str) -> ExperimentTallies:
        return self._tallies.setdefault(experiment, ExperimentTallies())

    def count(
        self, experiment: str, variant: str, counts: dict[str, int], latency_s: float | None = None
    ) -> None:
        tally = self._of(experiment).of(variant)
        tally.add(counts)
        if latency_s is not None:
            tally.latency[latency_bucket(latency_s)] += 1

    def count_shadow_dropped(self, experiment: str) -> None:
        self._of(experiment).shadow_dropped += 1

    def answer_shadow(self, request_id: str, classes: tuple[int, ...], on_late_labels: OnLateLabels) -> None:
        prediction = self._predictions.get(request_id)
        if prediction is not None:
            prediction.shadow_classes = classes
        elif (labels := self._early_labels.pop(request_id, None)) is not None:
            on_late_labels(labels)

    async def take(self, request_id: str, labels: list[int]) -> Taken:
        waiting = self._predictions.get(request_id)
        if waiting is not None and len(labels) != len(waiting.classes):
            return Taken(f"needs {len(waiting.classes)} labels, got {len(labels)}")
        status, prediction = self._predictions.take(request_id)
        if prediction is not None and prediction.shadow_pending:  # the shadow's answer will want this label
            self._early_labels[request_id] = labels
            while len(self._early_labels) > self._early_capacity:
                self._early_labels.pop(next(iter(self._early_labels)))
        return Taken(status, prediction)

    async def settle(self) -> None:
        return None

    async def tallies(self, experiment: str) -> ExperimentTallies:
        return self._of(experiment)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class FileConfig:
    """Admin changes go back to the experiments file (when there is one); nothing else changes it."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._experiments: list[Experiment] = []

    async def load(self, seed: ExperimentsFile) -> ExperimentsFile:
        self._experiments = list(seed.experiments)
        return seed

    async def save(self, experiment: Experiment) -> None:
        self._experiments = [experiment if e.name == experiment.name else e for e in self._experiments]
        if self._path is not None:
            save_experiments(self._path, ExperimentsFile(experiments=self._experiments))

    async def start(self, apply: Callable[[list[Experiment]], None]) -> None:
        return None

    async def stop(self) -> None:
        return None


def ledger_path(experiments_file: Path | None) -> Path | None:
    """Rollout state beside the experiments file (``experiments.yaml`` -> ``experiments.rollouts.json``)."""
    return experiments_file.with_name(f"{experiments_file.stem}.rollouts.json") if experiments_file else None


class FileLedger:
    """Rollout state in this process, written through to a JSON file so a restart resumes the same step;
    one process is the only decider, so the lease is always held."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._states: dict[str, str] = {}
        if path is not None and path.is_file():
            self._states = {name: json.dumps(state) for name, state in json.loads(path.read_text()).items()}

    async def read(self, experiment: str) -> str | None:
        return self._states.get(experiment)

    async def write(self, experiment: str, state: str, replaces: int) -> bool:
        stored = self._states.get(experiment)
        if (json.loads(stored)["revision"] if stored else 0) != replaces:
            return False
        self._states[experiment] = state
        if self._path is not None:
            self._save(self._path)
        return True

    def _save(self, path: Path) -> None:
        text = json.dumps({name: json.loads(state) for name, state in self._states.items()}, indent=1)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)

    async def hold_lease(self, holder: str, ttl_s: float) -> bool:
        return True

    async def release_lease(self, holder: str) -> None:
        return None
