"""Which variant answers a call to a family: the family's experiment, or its default variant.

With a sticky key, ``sha256(salt, key)`` picks a bucket in [0, 100): the same key gets the same variant on
every replica and after restarts, as long as the weights stay. Without one, a weighted random draw.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.config import Settings
from service.errors import InvalidInput
from service.routing.experiments import Cascade, Experiment, ExperimentsFile


@dataclass(frozen=True, slots=True)
class Assignment:
    model: str  # the variant's model name, "<family>-<variant>"
    experiment: Experiment | None
    how: str  # "default" | "pinned" | "sticky" | "weighted"
    shadow: str | None = None  # model name of the shadow variant, when this request is mirrored
    cascade: Cascade | None = None  # set when the arm is a cascade: ``model`` is its first stage

    @property
    def arm(self) -> str:
        """The experiment's name for what was chosen: a variant, or a cascade."""
        if self.cascade is not None:
            return self.cascade.name
        family = self.experiment.family if self.experiment else ""
        return self.model.removeprefix(f"{family}-")


def sticky_bucket(salt: str, key: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def pick(experiment: Experiment, point: float) -> str:
    """The variant whose share of [0, 100) contains ``point``, in the order the file lists them."""
    upper = 0
    for variant in experiment.variants:
        upper += variant.weight
        if point < upper:
            return variant.name
    return experiment.variants[-1].name


class Router:
    def __init__(
        self,
        settings: Settings,
        experiments: ExperimentsFile,
        rng: random.Random | None = None,
        default_variant: Callable[[str], str] | None = None,
    ) -> None:
        self._by_family = {experiment.family: experiment for experiment in experiments.experiments}
        self._rng = rng or random.Random()
        self._default_variant = default_variant or settings.default_variant_for

    def default_model(self, family: str) -> str:
        return f"{family}-{self._default_variant(family)}"

    def experiments(self) -> list[Experiment]:
        return list(self._by_family.values())

    def experiment(self, name: str) -> Experiment | None:
        return next((e for e in self._by_family.values() if e.name == name), None)

    def replace(self, experiment: Experiment) -> None:
        """Swap one experiment atomically: requests see the old one or the new one."""
        self._by_family = {**self._by_family, experiment.family: experiment}

    def route(self, family: str, headers: Mapping[str, str]) -> Assignment:
        experiment = self._by_family.get(family)
        if experiment is None:
            return Assignment(self.default_model(family), None, "default")
        variant, how = self._choose(experiment, headers)
        shadow = None
        mirrored = experiment.shadow and experiment.shadow.variant != variant
        if mirrored and experiment.shadow and self._rng.random() * 100 < experiment.shadow.percent:
            shadow = f"{family}-{experiment.shadow.variant}"
        cascade = experiment.cascade if experiment.cascade and variant == experiment.cascade.name else None
        model = f"{family}-{cascade.first if cascade else variant}"
        return Assignment(model, experiment, how, shadow, cascade)

    def _choose(self, experiment: Experiment, headers: Mapping[str, str]) -> tuple[str, str]:
        if experiment.pin_header and (pinned := headers.get(experiment.pin_header.lower())):
            allowed = {v.name for v in experiment.variants} | {experiment.reference}
            if pinned not in allowed:
                raise InvalidInput(
                    f"header '{experiment.pin_header}': '{pinned[:64]}' is not a variant of experiment "
                    f"'{experiment.name}' (one of {', '.join(sorted(allowed))})"
                )
            return pinned, "pinned"
        if experiment.sticky_key and (key := headers.get(experiment.sticky_key.lower())):
            return pick(experiment, sticky_bucket(experiment.hash_salt, key)), "sticky"
        return pick(experiment, self._rng.random() * 100), "weighted"
