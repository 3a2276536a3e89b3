"""The experiment loop: assign a variant, remember the prediction, mirror to the shadow, join the label.

What must agree across replicas (predictions awaiting labels, tallies, the experiments' configuration)
lives behind ``ExperimentStores``: in this process by default, in Redis for a fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contract.card import ModelCard
from service.config import Settings
from service.errors import InvalidInput, ModelNotFound
from service.metrics import ServiceMetrics
from service.routing.experiments import Experiment, ExperimentsFile, Shadow, WeightedVariant
from service.routing.feedback import Prediction
from service.routing.report import experiment_report
from service.routing.router import Assignment, Router
from service.routing.shadow import Comparison, RunShadow, ShadowJob, ShadowRunner
from service.routing.stores import ExperimentStores

log = logging.getLogger(__name__)


ClassIndex = Annotated[int, Field(ge=0)]


class FeedbackItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=256)
    label: ClassIndex | list[ClassIndex] = Field(
        description="The true class of each row the request carried."
    )


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
        stores: ExperimentStores,
        class_count: Callable[[], int] = lambda: 0,
        default_variant: Callable[[str], str] | None = None,
    ) -> None:
        self.router = Router(settings, experiments, default_variant=default_variant)
        self._class_count = class_count
        self._seed = experiments
        self._metrics = metrics
        self._known_variants = known_variants
        self.state = stores.state
        self._config = stores.config
        self.shadow = ShadowRunner(settings.routing.shadow_queue_size, run_shadow, self._shadow_done)
        for experiment in experiments.experiments:  # a 0 series from the start, so alerts can see "no drops"
            metrics.shadow_dropped.labels(experiment.name, experiment.family)

    async def start(self) -> None:
        """Adopt the stored configuration (admin changes made before this start), then follow changes."""
        self.adopt((await self._config.load(self._seed)).experiments)
        await self.state.start()
        await self._config.start(self.adopt)
        self.shadow.start()

    async def stop(self) -> None:
        await self.shadow.stop()
        await self._config.stop()
        await self.state.stop()

    def adopt(self, experiments: list[Experiment]) -> None:
        """Route by configuration changed elsewhere; an experiment naming variants this replica lacks is skipped."""
        for experiment in experiments:
            if self.router.experiment(experiment.name) == experiment:
                continue
            try:
                check_variants_exist(experiment, self._known_variants(experiment.family))
            except InvalidInput as exc:
                log.error("not adopting a stored change: %s", exc.message)
                continue
            self.router.replace(experiment)
            log.info("experiment %s now routes by %s", experiment.name, experiment.variants)

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
        prediction = Prediction(name, card.family, card.variant, classes, time.time())
        if experiment is not None and assignment is not None:
            self.state.count(experiment.name, card.variant, {"requests": 1}, latency_s=seconds)
            if assignment.shadow:
                shadow_variant = assignment.shadow.removeprefix(f"{card.family}-")
                job = ShadowJob(
                    experiment.name,
                    card.variant,
                    shadow_variant,
                    assignment.shadow,
                    request_id,
                    batch,
                    logits,
                )
                if self.shadow.offer(job):
                    prediction.shadow_variant = shadow_variant
                else:
                    self.state.count_shadow_dropped(experiment.name)
                    self._metrics.shadow_dropped.labels(experiment.name, card.family).inc()
        self.state.remember(request_id, prediction)

    def _shadow_done(self, job: ShadowJob, comparison: Comparison) -> None:
        experiment = self.router.experiment(job.experiment)
        family = job.model.removesuffix(f"-{job.shadow}")
        labels = (job.experiment, family, job.primary, job.shadow)
        self._metrics.shadow_comparisons.labels(*labels).inc(comparison.rows)
        self._metrics.shadow_agreements.labels(*labels).inc(comparison.agreed)
        histogram = self._metrics.shadow_kl.labels(*labels)
        for value in comparison.kl_divergences:
            histogram.observe(float(value))
        if experiment is not None and job.shadow == experiment.reference:
            kl_micronats = round(float(comparison.kl_divergences.sum()) * 1e6)
            counts = {"compared": comparison.rows, "agreed": comparison.agreed, "kl_micronats": kl_micronats}
            self.state.count(job.experiment, job.primary, counts)
        classes = comparison.shadow_classes

        def count_late_labels(labels: list[int]) -> None:
            self._count_labelled(job.experiment, family, job.shadow, classes, labels)

        self.state.answer_shadow(job.request_id, classes, count_late_labels)

    # feedback
    async def feedback(self, items: list[FeedbackItem]) -> list[dict[str, Any]]:
        self._check_classes(items)
        await self.state.settle()  # this replica's predictions are stored before a label looks for them
        results = [await self._join(item) for item in items]
        missed = [index for index, result in enumerate(results) if result["status"] == "unknown id"]
        if (
            missed and self.state.write_behind_s
        ):  # another replica's may still be on their way: look once more
            await asyncio.sleep(self.state.write_behind_s)
            for index in missed:
                results[index] = await self._join(items[index])
        await self.state.settle()  # the counts are visible to every replica before the answer is
        return results

    def _check_classes(self, items: list[FeedbackItem]) -> None:
        """Refuse the whole body before anything is joined if a label is no class any served model has."""
        classes = self._class_count()
        for item in items:
            for label in [item.label] if isinstance(item.label, int) else item.label:
                if classes and label >= classes:
                    raise InvalidInput(
                        f"label: {label} (id '{item.id[:64]}') is not a class index: the served models have "
                        f"{classes} classes (0-{classes - 1})"
                    )

    async def _join(self, item: FeedbackItem) -> dict[str, Any]:
        labels = [item.label] if isinstance(item.label, int) else item.label
        taken = await self.state.take(item.id, labels)
        prediction = taken.prediction
        if prediction is None:
            return {"id": item.id, "status": taken.status}
        answers = {prediction.variant: prediction.classes}
        if prediction.shadow_variant is not None and prediction.shadow_classes is not None:
            answers[prediction.shadow_variant] = prediction.shadow_classes
        for variant, classes in answers.items():
            self._count_labelled(prediction.experiment, prediction.model, variant, classes, labels)
        return {"id": item.id, "status": "accepted", "variant": prediction.variant,
                "correct": labels == list(prediction.classes)}  # fmt: skip

    def _count_labelled(
        self, experiment: str | None, family: str, variant: str, classes: tuple[int, ...], labels: list[int]
    ) -> None:
        correct = sum(int(label == predicted) for label, predicted in zip(labels, classes, strict=True))
        self._metrics.labelled.labels(experiment or "", family, variant).inc(len(labels))
        self._metrics.labelled_correct.labels(experiment or "", family, variant).inc(correct)
        if experiment:
            self.state.count(experiment, variant, {"labelled": len(labels), "correct": correct})

    # reports and changes
    async def report(self, name: str) -> dict[str, Any]:
        experiment = self.router.experiment(name)
        if experiment is None:
            raise ModelNotFound(f"unknown experiment '{name[:64]}'")
        await self.state.settle()
        tallies = await self.state.tallies(name)
        return experiment_report(experiment, tallies)

    async def reports(self) -> list[dict[str, Any]]:
        return [await self.report(experiment.name) for experiment in self.router.experiments()]

    async def update(self, name: str, change: ExperimentChange) -> dict[str, Any]:
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
        await self._config.save(experiment)  # first: if the store is away, nothing changes anywhere
        self.router.replace(experiment)
        log.info("experiment %s changed: %s", name, change.model_dump(exclude_unset=True))
        return await self.report(name)


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
