"""An experiment's report: per variant traffic, online accuracy with its interval, agreement, latency, verdict."""

from __future__ import annotations

from typing import Any

from service.routing.experiments import Experiment
from service.routing.stats import verdict, wilson_interval
from service.routing.tally import ExperimentTallies


def experiment_report(experiment: Experiment, tallies: ExperimentTallies) -> dict[str, Any]:
    names = [v.name for v in experiment.variants]
    extra = [experiment.reference, *([experiment.shadow.variant] if experiment.shadow else [])]
    names += [n for n in [*extra, *sorted(tallies.variants)] if n not in names]
    total = sum(tallies.of(n).requests for n in names)
    reference = tallies.of(experiment.reference)
    variants = []
    for variant in dict.fromkeys(names):
        tally = tallies.of(variant)
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
            "kl_divergence_mean_nats": tally.kl_micronats / 1e6 / tally.compared if tally.compared else None,
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
        "shadow_dropped": tallies.shadow_dropped,
        "variants": variants,
    }
