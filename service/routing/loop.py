"""The experiment loop: assign a variant, remember the prediction, mirror to the shadow, join the label.

What must agree across replicas (predictions awaiting labels, tallies, the experiments' configuration)
lives behind ``ExperimentStores``: in this process by default, in Redis for a fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from contract.card import ModelCard
from service.cascade import Escalation
from service.config import Settings
from service.errors import InvalidInput, ModelNotFound
from service.metrics import ServiceMetrics
from service.routing.bodies import ExperimentChange, FeedbackItem, RolloutAction
from service.routing.cascade_counts import CascadeCounts
from service.routing.experiments import Experiment, ExperimentsFile, WeightedVariant
from service.routing.feedback import Prediction
from service.routing.report import experiment_report
from service.routing.rollout_control import RolloutController
from service.routing.router import Assignment, Router
from service.routing.shadow import Comparison, RunShadow, ShadowJob, ShadowRunner
from service.routing.stores import ExperimentStores
from service.routing.tally import ExperimentTallies

log = logging.getLogger(__name__)


class ExperimentLoop:
    def __init__(
        self,
        settings: Settings,
        experiments: ExperimentsFile,
        metrics: ServiceMetrics,
        run_shadow: RunShadow,
        check: Callable[[Experiment], Experiment],
        stores: ExperimentStores,
        class_count: Callable[[], int] = lambda: 0,
        default_variant: Callable[[str], str] | None = None,
    ) -> None:
        self.router = Router(settings, experiments, default_variant=default_variant)
        self._class_count = class_count
        self._seed = experiments
        self._metrics = metrics
        self._check = check
        self.state = stores.state
        self._cascades = CascadeCounts(stores.state, metrics)
        self._config = stores.config
        self.shadow = ShadowRunner(settings.routing.shadow_queue_size, run_shadow, self._shadow_done)
        self.rollouts = RolloutController(
            settings.routing, stores.ledger, self.router, self._set_weights, self._tallies, metrics
        )
        for experiment in experiments.experiments:  # a 0 series from the start, so alerts can see "no drops"
            metrics.shadow_dropped.labels(experiment.name, experiment.family)

    async def start(self) -> None:
        """Adopt the stored configuration (admin changes made before this start), then follow changes."""
        self.adopt((await self._config.load(self._seed)).experiments)
        await self.state.start()
        await self._config.start(self.adopt)
        self.shadow.start()
        await self.rollouts.start()

    async def stop(self) -> None:
        await self.rollouts.stop()
        await self.shadow.stop()
        await self._config.stop()
        await self.state.stop()

    def adopt(self, experiments: list[Experiment]) -> None:
        """Route by configuration changed elsewhere; an experiment naming variants this replica lacks is skipped."""
        for experiment in experiments:
            if self.router.experiment(experiment.name) == experiment:
                continue
            try:
                experiment = self._check(experiment)
            except InvalidInput as exc:
                log.error("not adopting a stored change: %s", exc.message)
                continue
            self.router.replace(experiment)
            log.info("experiment %s now routes by %s", experiment.name, experiment.variants)

    # the request path
    def route(self, family: str, headers: Mapping[str, str]) -> Assignment:
        assignment = self.router.route(family, headers)
        if assignment.experiment is not None:
            self._metrics.assignments.labels(
                assignment.experiment.name, family, assignment.arm, assignment.how
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
        escalation: Escalation | None = None,
    ) -> None:
        """Remember what a successful request predicted; mirror it to the shadow when it was chosen for that."""
        experiment = assignment.experiment if assignment else None
        classes = tuple(logits.argmax(axis=1).tolist())
        name = experiment.name if experiment else None
        # what answered counts (a fallback's answer is the fallback's), except a cascade's, which is the arm's
        arm = assignment.arm if assignment is not None and assignment.cascade is not None else card.variant
        prediction = Prediction(name, card.family, arm, classes, time.time())
        if experiment is not None and assignment is not None:
            self.state.count(experiment.name, arm, {"requests": 1, "rows": len(classes)}, latency_s=seconds)
            if escalation is not None:
                prediction.stages = (escalation.first, escalation.then)
                prediction.escalated_rows = escalation.rows
                self._cascades.answered(experiment.name, card.family, arm, escalation, seconds)
            if assignment.shadow:
                shadow_variant = assignment.shadow.removeprefix(f"{card.family}-")
                job = ShadowJob(
                    experiment.name,
                    arm,
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

    def count_error(self, assignment: Assignment) -> None:
        """A routed request that failed: a rollout's error-rate gate reads these."""
        if assignment.experiment is not None:
            self.state.count(assignment.experiment.name, assignment.arm, {"errors": 1})

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
        if prediction.stages is not None and prediction.experiment is not None:
            self._cascades.labelled(prediction, labels)
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
        report = experiment_report(experiment, await self._tallies(name))
        if experiment.rollout is not None:
            report["rollout"] = {**report["rollout"], **await self.rollouts.describe(name)}
        return report

    async def _tallies(self, name: str) -> ExperimentTallies:
        await self.state.settle()
        return await self.state.tallies(name)

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
        for field in ("cascade", "rollout"):
            if field in change.model_fields_set:
                value = getattr(change, field)
                updated[field] = value.model_dump() if value else None
        try:
            experiment = Experiment.model_validate(updated)
        except ValueError as exc:
            raise InvalidInput(f"experiment '{name}': {exc}") from None
        await self._save(self._check(experiment))
        log.info("experiment %s changed: %s", name, change.model_dump(exclude_unset=True))
        return await self.report(name)

    async def rollout_action(self, name: str, action: RolloutAction) -> dict[str, Any]:
        await self.rollouts.act(name, action.action, action.reason)
        log.info(
            "experiment %s rollout: admin %s (%s)", name, action.action, action.reason or "no reason given"
        )
        return await self.report(name)

    async def _save(self, experiment: Experiment) -> None:
        await self._config.save(experiment)  # first: if the store is away, nothing changes anywhere
        self.router.replace(experiment)

    async def _set_weights(self, name: str, weights: dict[str, int]) -> None:
        """A rollout's step: the candidate's and the control's weights, the rest as they are."""
        current = self.router.experiment(name)
        if current is None or all(current.weight_of(v) == w for v, w in weights.items()):
            return
        variants = [
            WeightedVariant(name=v.name, weight=weights.get(v.name, v.weight)) for v in current.variants
        ]
        await self._save(current.model_copy(update={"variants": variants}))
        log.info("experiment %s routes by %s", name, variants)
