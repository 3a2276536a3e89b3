"""Per-variant metrics read from the model store at scrape time: nothing to keep in sync."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from service.backends.base import RemoteBackend
from service.backends.breaker import BreakerState
from service.metrics import VARIANT_LABELS
from service.registry.store import ModelStore
from service.routing.loop import ExperimentLoop


class VariantCollector(Collector):
    def __init__(self, store: ModelStore, experiments: ExperimentLoop) -> None:
        self._store = store
        self._experiments = experiments

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily(
            "slimserve_variant", "What a variant is: precision, quantization engine, backend, torch version.",
            labels=VARIANT_LABELS,
        )  # fmt: skip
        families = {
            "ready": GaugeMetricFamily("slimserve_variant_ready", "1 when the variant serves traffic.",
                                       labels=VARIANT_LABELS),
            "bytes": GaugeMetricFamily("slimserve_variant_model_bytes", "Serialized size of the model file.",
                                       labels=VARIANT_LABELS),
            "parameters": GaugeMetricFamily("slimserve_variant_parameters", "Parameters of the network.",
                                            labels=VARIANT_LABELS),
            "accuracy": GaugeMetricFamily("slimserve_variant_offline_accuracy_ratio",
                                          "Test-split accuracy recorded in the model card.", labels=VARIANT_LABELS),
            "load": GaugeMetricFamily("slimserve_variant_load_duration_seconds",
                                      "Time to verify, load and warm the variant.", labels=VARIANT_LABELS),
            "queue": GaugeMetricFamily("slimserve_queue_depth", "Requests waiting for a batch.",
                                       labels=VARIANT_LABELS),
        }  # fmt: skip
        breaker_state = GaugeMetricFamily(
            "slimserve_breaker_state",
            "Circuit breaker of a remote (Triton) variant: 1 for the state it is in, 0 for the others.",
            labels=[*VARIANT_LABELS, "state"],
        )
        breaker_opens = CounterMetricFamily(
            "slimserve_breaker_opens",
            "Times the circuit breaker of a remote (Triton) variant opened.",
            labels=VARIANT_LABELS,
        )
        for served in self._store.all():
            card = served.model.card
            labels = [card.family, card.variant, str(card.version), served.backend.kind]
            if isinstance(served.backend, RemoteBackend):
                breaker = served.backend.breaker
                for state in BreakerState:
                    breaker_state.add_metric([*labels, state], 1.0 if breaker.state is state else 0.0)
                breaker_opens.add_metric(labels, breaker.opened_count)
            quantization = card.quantization
            info.add_metric(labels, {
                "precision": card.precision,
                "format": str(card.format),
                "quantization_engine": quantization.engine if quantization else "",
                "torch_version": card.torch_version,
            })  # fmt: skip
            families["ready"].add_metric(labels, 1.0 if served.serving else 0.0)
            families["queue"].add_metric(labels, served.batcher.queue_depth)
            families["load"].add_metric(labels, served.load_seconds)
            for key, card_key in (("bytes", "bytes"), ("parameters", "parameters"), ("accuracy", "accuracy")):
                value = card.metrics.get(card_key)
                if isinstance(value, int | float):
                    families[key].add_metric(labels, float(value))
        yield info
        yield from families.values()
        yield breaker_state
        yield breaker_opens
        margins = GaugeMetricFamily(
            "slimserve_experiment_margin_ratio",
            "Non-inferiority margin of an experiment against its reference variant.",
            labels=["experiment", "model", "reference"],
        )
        for experiment in self._experiments.router.experiments():
            margins.add_metric([experiment.name, experiment.family, experiment.reference], experiment.margin)
        yield margins
