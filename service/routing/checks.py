"""What an experiment must satisfy against the registry before it routes: every variant it names exists,
and a cascade without a threshold finds one on its first stage's card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from contract.card import ModelCard
from contract.layout import ArtifactError, latest, variants_on_disk
from service.errors import InvalidInput
from service.routing.experiments import Experiment

CardOf = Callable[[str], ModelCard | None]  # model name -> its newest card, None when unreadable


def check_variants_exist(experiment: Experiment, known: set[str]) -> None:
    named = {stage for v in experiment.variants for stage in experiment.stages(v.name)}
    named.add(experiment.reference)
    if experiment.shadow:
        named.add(experiment.shadow.variant)
    if experiment.cascade:
        named |= {experiment.cascade.first, experiment.cascade.then}
    missing = sorted(named - known)
    if missing:
        fields = _fields_naming(experiment, set(missing))
        raise InvalidInput(
            f"experiment '{experiment.name}': {fields}: family '{experiment.family}' has no variant "
            f"{', '.join(missing)} (it has {', '.join(sorted(known)) or 'none'})"
        )


def _fields_naming(experiment: Experiment, missing: set[str]) -> str:
    fields = [f"variants.{i}.name" for i, v in enumerate(experiment.variants) if v.name in missing]
    if experiment.cascade:
        fields += [f"cascade.{f}" for f in ("first", "then") if getattr(experiment.cascade, f) in missing]
    if experiment.shadow and experiment.shadow.variant in missing:
        fields.append("shadow.variant")
    if experiment.reference in missing:
        fields.append("reference")
    return ", ".join(fields) or "variants"


def with_cascade_threshold(experiment: Experiment, card_of: CardOf) -> Experiment:
    """The experiment, its cascade's threshold filled in from the first stage's card when not given."""
    cascade = experiment.cascade
    if cascade is None or cascade.threshold is not None:
        return experiment
    name = f"{experiment.family}-{cascade.first}"
    card = card_of(name)
    choice = card.cascade if card is not None else None
    if choice is None or choice.then != cascade.then:
        raise InvalidInput(
            f"experiment '{experiment.name}': cascade.threshold: not given, and the card of '{name}' records "
            f"none for a cascade to '{cascade.then}' (rebuild the registry, or set the threshold)"
        )
    return experiment.model_copy(
        update={"cascade": cascade.model_copy(update={"threshold": choice.threshold})}
    )


def registry_checks(registry: Path) -> Callable[[Experiment], Experiment]:
    """Check an experiment against the registry on disk; the experiment to serve (threshold resolved)."""

    def card_of(name: str) -> ModelCard | None:
        try:
            return latest(registry, name).card
        except ArtifactError:
            return None

    def check(experiment: Experiment) -> Experiment:
        check_variants_exist(experiment, variants_on_disk(registry, experiment.family))
        return with_cascade_threshold(experiment, card_of)

    return check
