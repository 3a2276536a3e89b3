"""The experiment loop: assign a variant, remember the prediction, mirror to the shadow, join the label.

It keeps the tallies behind ``GET /v1/experiments`` and applies admin changes atomically, writing them
back to the experiments file so a restart keeps them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contract.card import ModelCard
from service.config import Settings
from service.errors import InvalidInput, ModelNotFound
from service.metrics import ServiceMetrics
from service.routing.experiments import Experiment, ExperimentsFile, Shadow, WeightedVariant, save_experiments
from service.routing.feedback import Prediction, PredictionStore
from service.routing.router import Assignment, Router
from service.routing.shadow import Comparison, RunShadow, ShadowJob, ShadowRunner
from service.routing.stats import verdict, wilson_interval
from service.routing.tally import Tallies

log = logging.getLogger(__name__)


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    label: int | list[int]


class ExperimentChange(BaseModel):
    """Body of PUT /v1/experiments/{name}: only the fields given change; ``"shadow": null`` removes it."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, int] | None = Field(None, description="variant -> weight, summing to 100")
    shadow: Shadow | None = None
    margin: float | None = Field(None, ge=0, lt=1)


class ExperimentLoop:
    def __init__(
        self,
        settings: Settings,
        experiments: ExperimentsFile,
        metrics: ServiceMetrics,
        run_shadow: RunShadow,
        known_variants: Callable[[str], set[str]],
    ) -> None:
        self.router = Router(settings, experiments)
        self._path = settings.routing.experiments_file
        self._metrics = metrics
        self._known_variants = known_variants
        self.predictions = PredictionStore(
            settings.routing.feedback_capacity, settings.routing.feedback_ttl_s
        )
        self.tallies = Tallies()
        self.shadow = ShadowRunner(settings.routing.shadow_queue_size, run_shadow, self._shadow_done)
        self._shadow_queue_size = settings.routing.shadow_queue_size
        # labels that arrived while their request's shadow copy was still queued or running
        self._labelled_before_shadow: dict[str, tuple[Prediction, list[int]]] = {}
        for experiment in experiments.experiments:  # a 0 series from the start, so alerts can see "no drops"
            metrics.shadow_dropped.labels(experiment.name, experiment.family)

    # the request path
    def route(self, family: str, headers: Mapping[str, str]) -> Assignment:
        assignment = self.router.route(family, headers)
        if assignment.experiment is not None:
            variant = assignment.model.removeprefix(f"{family}-")
            self._metrics.assignments.labels(
                assignment.experiment.name, family, variant, assignment.how
            ).inc()
        return assignment

    def record(
        self,
        assignment: Assignment | None,
        card: ModelCard,
        request_id: str,
        batch: np.ndarray,
        logits: np.ndarray,
        seconds: float,
    ) -> None:
        """Remember what a successful request predicted; mirror it to the shadow when it was chosen for that."""
        experiment = assignment.experiment if assignment else None
        classes = tuple(logits.argmax(axis=1).tolist())
        name = experiment.name if experiment else None
        prediction = Prediction(name, card.family, card.variant, classes, time.monotonic())
        self.predictions.put(request_id, prediction)
        if experiment is None or assignment is None:
            return
        tally = self.tallies.of(experiment.name, card.variant)
        tally.requests += 1
        tally.latencies.append(seconds)
        if assignment.shadow:
            shadow_variant = assignment.shadow.removeprefix(f"{card.family}-")
            job = ShadowJob(
                experiment.name, card.variant, shadow_variant, assignment.shadow, request_id, batch, logits
            )
            if self.shadow.offer(job):
                prediction.shadow_variant = shadow_variant
            else:
                self.tallies.shadow_dropped[experiment.name] = (
                    self.tallies.shadow_dropped.get(experiment.name, 0) + 1
                )
                self._metrics.shadow_dropped.labels(experiment.name, card.family).inc()

    def _shadow_done(self, job: ShadowJob, comparison: Comparison) -> None:
        experiment = self.router.experiment(job.experiment)
        prediction = self.predictions.get(job.request_id)
        family = prediction.model if prediction else (experiment.family if experiment else "")
        labels = (job.experiment, family, job.primary, job.shadow)
        self._metrics.shadow_comparisons.labels(*labels).inc(comparison.rows)
        self._metrics.shadow_agreements.labels(*labels).inc(comparison.agreed)
        histogram = self._metrics.shadow_kl.labels(*labels)
        for value in comparison.kl_divergences:
            histogram.observe(float(value))
        if experiment is not None and job.shadow == experiment.reference:
            tally = self.tallies.of(job.experiment, job.primary)
            tally.compared += comparison.rows
            tally.agreed += comparison.agreed
        if prediction is not None:
            prediction.shadow_classes = comparison.shadow_classes
        elif (labelled := self._labelled_before_shadow.pop(job.request_id, None)) is not None:
            self._count_labelled(labelled[0], job.shadow, comparison.shadow_classes, labelled[1])

    # feedback
    def feedback(self, items: list[FeedbackItem]) -> list[dict[str, Any]]:
        return [self._join(item) for item in items]

    def _join(self, item: FeedbackItem) -> dict[str, Any]:
        labels = [item.label] if isinstance(item.label, int) else item.label
        waiting = self.predictions.get(item.id)
        if waiting is not None and len(labels) != len(waiting.classes):
            return {"id": item.id, "status": f"needs {len(waiting.classes)} labels, got {len(labels)}"}
        status, prediction = self.predictions.take(item.id)
        if prediction is None:
            return {"id": item.id, "status": status}
        answers = {prediction.variant: prediction.classes}
        if prediction.shadow_variant is not None and prediction.shadow_classes is not None:
            answers[prediction.shadow_variant] = prediction.shadow_classes
        for variant, classes in answers.items():
            self._count_labelled(prediction, variant, classes, labels)
        if prediction.shadow_pending:  # the label came before the shadow's answer: it waits for it
            self._labelled_before_shadow[item.id] = (prediction, labels)
            while len(self._labelled_before_shadow) > self._shadow_queue_size:
                self._labelled_before_shadow.pop(next(iter(self._labelled_before_shadow)))
        return {"id": item.id, "status": "accepted", "variant": prediction.variant,
                "correct": labels == list(prediction.classes)}  # fmt: skip

    def _count_labelled(
        self, prediction: Prediction, variant: str, classes: tuple[int, ...], labels: list[int]
    ) -> None:
        experiment = prediction.experiment or ""
        correct = sum(int(label == predicted) for label, predicted in zip(labels, classes, strict=True))
        self._metrics.labelled.labels(experiment, prediction.model, variant).inc(len(labels))
        self._metrics.labelled_correct.labels(experiment, prediction.model, variant).inc(correct)
        if prediction.experiment:
            tally = self.tallies.of(prediction.experiment, variant)
            tally.labelled += len(labels)
            tally.correct += correct

    # reports and changes
    def report(self, name: str) -> dict[str, Any]:
        experiment = self.router.experiment(name)
        if experiment is None:
            raise ModelNotFound(f"unknown experiment '{name[:64]}'")
        names = [v.name for v in experiment.variants]
        extra = [experiment.reference, *([experiment.shadow.variant] if experiment.shadow else [])]
        names += [n for n in [*extra, *self.tallies.variants(name)] if n not in names]
        total = sum(self.tallies.of(name, n).requests for n in names)
        reference = self.tallies.of(name, experiment.reference)
        variants = []
        for variant in dict.fromkeys(names):
            tally = self.tallies.of(name, variant)
            accuracy = tally.correct / tally.labelled if tally.labelled else None
            low, high = wilson_interval(tally.correct, tally.labelled)
            row: dict[str, Any] = {
                "variant": variant,
                "weight": experiment.weight_of(variant),
                "requests": tally.requests,
                "traffic_share": tally.requests / total if total else None,
                "labelled": tally.labelled,
                "online_accuracy": accuracy,
                "accuracy_ci95": [low, high] if tally.labelled else None,
                "compared_with_reference": tally.compared,
                "agreement_with_reference": tally.agreed / tally.compared if tally.compared else None,
                "latency_seconds": tally.latency_quantiles(),
            }
            if variant != experiment.reference:
                result = verdict(tally.correct, tally.labelled, reference.correct, reference.labelled,
                                 experiment.margin, experiment.min_samples)  # fmt: skip
                row["non_inferiority"] = {"p_value": result.p_value, "verdict": result.verdict}
            variants.append(row)
        return {
            **experiment.model_dump(mode="json", exclude={"variants"}),
            "requests": total,
            "shadow_dropped": self.tallies.shadow_dropped.get(name, 0),
            "variants": variants,
        }

    def reports(self) -> list[dict[str, Any]]:
        return [self.report(experiment.name) for experiment in self.router.experiments()]

    def update(self, name: str, change: ExperimentChange) -> dict[str, Any]:
        current = self.router.experiment(name)
        if current is None:
            raise ModelNotFound(f"unknown experiment '{name[:64]}'")
        updated = current.model_dump()
        if change.weights is not None:
            updated["variants"] = [
                WeightedVariant(name=v, weight=w).model_dump() for v, w in change.weights.items()
            ]
        if "shadow" in change.model_fields_set:
            updated["shadow"] = change.shadow.model_dump() if change.shadow else None
        if change.margin is not None:
            updated["margin"] = change.margin
        try:
            experiment = Experiment.model_validate(updated)
        except ValueError as exc:
            raise InvalidInput(f"experiment '{name}': {exc}") from None
        check_variants_exist(experiment, self._known_variants(experiment.family))
        self.router.replace(experiment)
        if self._path is not None:
            save_experiments(self._path, ExperimentsFile(experiments=self.router.experiments()))
        log.info("experiment %s changed: %s", name, change.model_dump(exclude_unset=True))
        return self.report(name)


def check_variants_exist(experiment: Experiment, known: set[str]) -> None:
    named = {v.name for v in experiment.variants} | {experiment.reference}
    if experiment.shadow:
        named.add(experiment.shadow.variant)
    missing = sorted(named - known)
    if missing:
        raise InvalidInput(
            f"experiment '{experiment.name}': family '{experiment.family}' has no variant {', '.join(missing)}"
            f" (it has {', '.join(sorted(known)) or 'none'})"
        )
