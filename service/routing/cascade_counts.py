"""A cascade arm's per-stage counts: requests and rows by the stage that answered them, latency of escalated
and other requests, and accuracy per stage from feedback, row by row (in the experiment's tallies, as
``<arm>/<stage>``, and in Prometheus)."""

from __future__ import annotations

from service.cascade import Escalation
from service.metrics import ServiceMetrics
from service.routing.feedback import Prediction
from service.routing.state import ExperimentState
from service.routing.tally import STAGE_SEPARATOR


class CascadeCounts:
    def __init__(self, state: ExperimentState, metrics: ServiceMetrics) -> None:
        self._state = state
        self._metrics = metrics

    def answered(
        self, experiment: str, family: str, arm: str, escalation: Escalation, seconds: float
    ) -> None:
        """A request counts for the second stage when any of its rows was escalated (its latency is both
        stages'); rows count for the stage that answered them."""
        escalated = len(escalation.rows)
        stage = escalation.then if escalated else escalation.first
        rows = {escalation.first: escalation.total - escalated, escalation.then: escalated}
        self._state.count(experiment, f"{arm}{STAGE_SEPARATOR}{stage}", {"requests": 1}, latency_s=seconds)
        for name, count in rows.items():
            if count:
                self._state.count(experiment, f"{arm}{STAGE_SEPARATOR}{name}", {"rows": count})
                self._metrics.cascade_rows.labels(experiment, family, arm, name).inc(count)
        flag = "true" if escalated else "false"
        self._metrics.cascade_requests.labels(experiment, family, arm, stage, flag).inc()
        self._metrics.cascade_duration.labels(experiment, family, arm, flag).observe(seconds)

    def labelled(self, prediction: Prediction, labels: list[int]) -> None:
        """Per-stage accuracy: each labelled row counts for the stage that answered it."""
        assert prediction.stages is not None and prediction.experiment is not None
        first, then = prediction.stages
        escalated = set(prediction.escalated_rows)
        by_stage: dict[str, list[int]] = {first: [0, 0], then: [0, 0]}  # stage -> [labelled, correct]
        for row, (label, predicted) in enumerate(zip(labels, prediction.classes, strict=True)):
            counts = by_stage[then if row in escalated else first]
            counts[0] += 1
            counts[1] += int(label == predicted)
        for stage, (labelled, correct) in by_stage.items():
            if not labelled:
                continue
            series = (prediction.experiment, prediction.model, prediction.variant, stage)
            self._metrics.cascade_labelled.labels(*series).inc(labelled)
            self._metrics.cascade_labelled_correct.labels(*series).inc(correct)
            tally = f"{prediction.variant}{STAGE_SEPARATOR}{stage}"
            self._state.count(prediction.experiment, tally, {"labelled": labelled, "correct": correct})
