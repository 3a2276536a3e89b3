"""Prometheus metrics, owned by one object with an injected CollectorRegistry (no global state)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.metrics.loop_series import (
    CounterValue,
    GaugeValue,
    HistogramValue,
    LoopCounter,
    LoopGauge,
    LoopHistogram,
)

# 100 µs to 10 s, roughly 2.5x apart: resolves both an int8 student and a slow fallback.
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
KL_BUCKETS = (0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
VARIANT_LABELS = ("model", "variant", "version", "backend")
REQUEST_LABELS = (*VARIANT_LABELS, "protocol")
EXPERIMENT_LABELS = ("experiment", "model", "variant")
SHADOW_LABELS = (*EXPERIMENT_LABELS, "shadow")


@dataclass(frozen=True, slots=True)
class RequestSeries:
    """The series one successful request updates, bound to its labels once instead of on every request."""

    ok: CounterValue
    duration: HistogramValue
    in_flight: GaugeValue
    queue_duration: HistogramValue
    batch_size: HistogramValue
    compute_duration: HistogramValue


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._series: dict[tuple[str, ...], RequestSeries] = {}
        # the request path's series: updated on the event loop alone (loop_series says why)
        self.requests = LoopCounter(
            "slimserve_requests", "Inference requests by outcome.", (*REQUEST_LABELS, "status"), registry
        )
        self.request_duration = LoopHistogram(
            "slimserve_request_duration_seconds",
            "Time from a decoded request to its outputs, queueing included.",
            REQUEST_LABELS,
            registry,
            LATENCY_BUCKETS,
        )
        self.queue_duration = LoopHistogram(
            "slimserve_queue_duration_seconds",
            "Time a request waited for its batch to start.",
            VARIANT_LABELS,
            registry,
            LATENCY_BUCKETS,
        )
        self.batch_size = LoopHistogram(
            "slimserve_batch_size_rows",
            "Rows in the batch a request was served in.",
            VARIANT_LABELS,
            registry,
            BATCH_BUCKETS,
        )
        self.compute_duration = LoopHistogram(
            "slimserve_compute_duration_seconds",
            "Time the backend took for the batch a request was served in.",
            VARIANT_LABELS,
            registry,
            LATENCY_BUCKETS,
        )
        self.fallbacks = Counter(
            "slimserve_fallbacks",
            "Routed requests answered by a fallback variant because the routed one's backend was down.",
            ("model", "variant", "fallback"),
            registry=registry,
        )
        self.in_flight = LoopGauge(
            "slimserve_requests_in_flight",
            "Requests being served right now (the custom-metric signal for autoscaling).",
            REQUEST_LABELS,
            registry,
        )
        # experiments: what each variant costs and what it loses, on live traffic
        self.assignments = Counter(
            "slimserve_experiment_assignments",
            "Requests to a family assigned to a variant, by how (weighted, sticky, pinned).",
            (*EXPERIMENT_LABELS, "how"),
            registry=registry,
        )
        self.labelled = Counter(
            "slimserve_labelled_predictions",
            "Predicted rows joined with a ground-truth label (experiment is empty for direct calls).",
            EXPERIMENT_LABELS,
            registry=registry,
        )
        self.labelled_correct = Counter(
            "slimserve_labelled_predictions_correct",
            "Labelled rows the variant predicted correctly.",
            EXPERIMENT_LABELS,
            registry=registry,
        )
        self.shadow_comparisons = Counter(
            "slimserve_shadow_comparisons",
            "Rows answered by the variant and, as a shadow copy, by the shadow variant.",
            SHADOW_LABELS,
            registry=registry,
        )
        self.shadow_agreements = Counter(
            "slimserve_shadow_agreements",
            "Compared rows whose top-1 class was the same on both.",
            SHADOW_LABELS,
            registry=registry,
        )
        self.shadow_kl = Histogram(
            "slimserve_shadow_kl_divergence_nats",
            "KL(shadow ‖ variant) of the output distributions, per compared row.",
            SHADOW_LABELS,
            buckets=KL_BUCKETS,
            registry=registry,
        )
        self.shadow_dropped = Counter(
            "slimserve_shadow_dropped",
            "Shadow copies dropped because the shadow queue was full.",
            ("experiment", "model"),
            registry=registry,
        )
        # cascades: how often the first stage was unsure, what each stage costs and gets right
        self.cascade_requests = Counter(
            "slimserve_cascade_requests",
            "Requests routed to a cascade arm; escalated: the second stage answered some of their rows.",
            (*EXPERIMENT_LABELS, "stage", "escalated"),
            registry=registry,
        )
        self.cascade_rows = Counter(
            "slimserve_cascade_rows",
            "Rows answered by a cascade arm, by the stage that answered them.",
            (*EXPERIMENT_LABELS, "stage"),
            registry=registry,
        )
        self.cascade_duration = Histogram(
            "slimserve_cascade_request_duration_seconds",
            "Time to answer a cascade arm's request, escalated ones (both stages) apart from the others.",
            ("experiment", "model", "variant", "escalated"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.cascade_labelled = Counter(
            "slimserve_cascade_labelled_predictions",
            "Labelled rows of a cascade arm, by the stage that answered them.",
            (*EXPERIMENT_LABELS, "stage"),
            registry=registry,
        )
        self.cascade_labelled_correct = Counter(
            "slimserve_cascade_labelled_predictions_correct",
            "Labelled rows of a cascade arm the answering stage got right.",
            (*EXPERIMENT_LABELS, "stage"),
            registry=registry,
        )
        self.cascade_escalations_failed = Counter(
            "slimserve_cascade_escalations_failed",
            "Escalated requests the second stage could not answer in time: the first stage's answer stood.",
            ("model", "variant"),
            registry=registry,
        )
        # rollouts: where each candidate stands, and every step it took
        self.rollout_percent = Gauge(
            "slimserve_rollout_candidate_percent",
            "The rollout candidate's share of the experiment's traffic, in percent.",
            ("experiment", "model", "candidate"),
            registry=registry,
        )
        self.rollout_transitions = Counter(
            "slimserve_rollout_transitions",
            "Rollout transitions made by this replica: advance, complete, rollback, pause, resume, restart.",
            ("experiment", "model", "kind"),
            registry=registry,
        )

        self.experiment_state_lost = Counter(
            "slimserve_experiment_state_lost",
            "Updates to the shared experiment state (Redis) that could not be recorded: predictions "
            "awaiting labels, tally counts, shadow answers.",
            ("kind",),
            registry=registry,
        )
        self.experiment_state_up = Gauge(
            "slimserve_experiment_state_up",
            "1 while the experiment state store answers (always 1 in-process).",
            registry=registry,
        )
        self.experiment_state_up.set(1)

    def series(self, model: str, variant: str, version: str, backend: str, protocol: str) -> RequestSeries:
        """The request series of one variant and protocol; label sets are few, so binding them is cached."""
        key = (model, variant, version, backend, protocol)
        series = self._series.get(key)
        if series is None:
            variant_key = key[:4]
            series = RequestSeries(
                self.requests.labels(*key, "ok"),
                self.request_duration.labels(*key),
                self.in_flight.labels(*key),
                self.queue_duration.labels(*variant_key),
                self.batch_size.labels(*variant_key),
                self.compute_duration.labels(*variant_key),
            )
            self._series[key] = series
        return series
