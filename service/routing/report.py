"""An experiment's report: per variant traffic, online accuracy with its interval, agreement, latency, verdict."""

from __future__ import annotations

from typing import Any

from service.routing.experiments import Experiment
from service.routing.stats import verdict, wilson_interval
from service.routing.tally import STAGE_SEPARATOR, ExperimentTallies


def experiment_report(experiment: Experiment, tallies: ExperimentTallies) -> dict[str, Any]:
    names = [v.name for v in experiment.variants]
    extra = [experiment.reference, *([experiment.shadow.variant] if experiment.shadow else [])]
    arms = [n for n in sorted(tallies.variants) if STAGE_SEPARATOR not in n]  # stages go in their arm's row
    names += [n for n in [*extra, *arms] if n not in names]
    total = sum(tallies.of(n).requests for n in names)
    reference = tallies.of(experiment.reference)
    variants = []
    for variant in dict.fromkeys(names):
        tally = tallies.of(variant)
        accuracy = tally.accuracy
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
        if experiment.cascade is not None and variant == experiment.cascade.name:
            row["cascade"] = cascade_section(experiment, tallies)
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


def cascade_section(experiment: Experiment, tallies: ExperimentTallies) -> dict[str, Any]:
    """The cascade arm's stages: how often the second answered (requests with any row escalated, and rows),
    each stage's rows, accuracy on its labelled rows, and latency (the second's: escalated requests', both
    stages included)."""
    assert experiment.cascade is not None
    cascade = experiment.cascade
    arm = tallies.of(cascade.name)
    stages = {
        stage: tallies.of(f"{cascade.name}{STAGE_SEPARATOR}{stage}")
        for stage in (cascade.first, cascade.then)
    }
    escalated = stages[cascade.then].requests
    return {
        **cascade.model_dump(mode="json", exclude={"name"}),
        "escalated": escalated,
        "escalation_rate": escalated / arm.requests if arm.requests else None,
        "escalated_rows": stages[cascade.then].rows,
        "row_escalation_rate": stages[cascade.then].rows / arm.rows if arm.rows else None,
        "stages": [
            {"variant": stage, "escalated": stage == cascade.then, "requests": tally.requests,
             "rows": tally.rows, "labelled": tally.labelled, "online_accuracy": tally.accuracy,
             "latency_seconds": tally.latency_quantiles()}
            for stage, tally in stages.items()
        ],
    }  # fmt: skip
