"""A family's trade-off, joined from what the service already knows: one row per variant.

What a variant is and what it cost offline comes from its model card; latency and throughput from its
in-process window (``metrics/window.py``); traffic share, online accuracy, agreement, KL and the verdict from
the experiment report, as ``/v1/experiments/{name}`` returns it (copied, never recomputed). The trade-off page
reads this and nothing else.
"""

from __future__ import annotations

from typing import Any

from service.dataplane import DataPlane
from service.errors import ModelNotFound
from service.registry.store import ServedVariant, State


def families(dataplane: DataPlane) -> list[dict[str, Any]]:
    router = dataplane.experiments.router
    experiments = {e.family: e.name for e in router.experiments()}
    return [
        {
            "family": family,
            "variants": [name.removeprefix(f"{family}-") for name in names],
            "default_variant": router.default_model(family).removeprefix(f"{family}-"),
            "experiment": experiments.get(family),
        }
        for family, names in sorted(dataplane.store.families().items())
    ]


def _current(versions: dict[int, ServedVariant]) -> ServedVariant:
    """The version that answers a call without a version: the newest ready one, else the newest."""
    ready = [served for served in versions.values() if served.state is State.READY]
    return max(ready or versions.values(), key=lambda served: served.version)


def _variant_row(served: ServedVariant, window_s: float, default_model: str) -> dict[str, Any]:
    card = served.model.card
    state, reason = served.status()
    return {
        "variant": card.variant,
        "model": card.name,
        "version": served.version,
        "format": str(card.format),
        "runtime": served.backend.kind,
        "precision": card.precision,
        "quantization_engine": card.quantization.engine if card.quantization else None,
        "bytes": card.metrics.get("bytes"),
        "parameters": card.metrics.get("parameters"),
        "offline_accuracy": card.metrics.get("accuracy"),
        "state": state,
        "reason": reason,
        "ready": served.serving,
        "default": card.name == default_model,
        "live": served.window.summary(window_s).to_json(),
    }


async def family_tradeoff(dataplane: DataPlane, family: str, window_s: float) -> dict[str, Any]:
    store, loop = dataplane.store, dataplane.experiments
    if not store.is_family(family):
        known = ", ".join(sorted(store.families())) or "none yet"
        raise ModelNotFound(f"unknown family '{family[:64]}' (families: {known})")
    default_model = loop.router.default_model(family)
    rows = [
        _variant_row(_current(store.versions_of(name)), window_s, default_model)
        for name in store.families()[family]
    ]
    total = sum(row["live"]["requests"] for row in rows)
    experiment = next((e for e in loop.router.experiments() if e.family == family), None)
    report = await loop.report(experiment.name) if experiment else None
    by_variant = {row["variant"]: row for row in report["variants"]} if report else {}
    for row in rows:
        row["live"]["share"] = row["live"]["requests"] / total if total else None
        row["experiment"] = by_variant.get(row["variant"])
    return {
        "family": family,
        "default_variant": default_model.removeprefix(f"{family}-"),
        "window_s": window_s,
        "experiment": {key: value for key, value in report.items() if key != "variants"} if report else None,
        "variants": rows,
    }
