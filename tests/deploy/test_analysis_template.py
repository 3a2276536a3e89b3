"""k8s/rollouts: the Argo Rollouts AnalysisTemplate, validated against a checked-in strict subset of its CRD
schema (no Argo schema package is available offline), and its queries read series the service exports."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from prometheus_client import CollectorRegistry

from service.metrics import ServiceMetrics
from tests.deploy.conftest import ROOT, Manifest, kustomize

SCHEMA = json.loads((Path(__file__).parent / "schemas" / "argo-analysistemplate.schema.json").read_text())
SERIES = re.compile(r"\b(slimserve_[a-z0-9_]+)")


def rendered() -> Manifest:
    manifests = kustomize(ROOT / "k8s" / "rollouts")  # as `kubectl apply -k k8s/rollouts` applies it
    assert [(m["kind"], m["metadata"]["namespace"]) for m in manifests] == [("AnalysisTemplate", "slimserve")]
    return manifests[0]


def exported_series() -> set[str]:
    """Every sample name the service's metrics can produce (counters' _total, histograms' _bucket...)."""
    registry = CollectorRegistry()
    ServiceMetrics(registry)
    names = set()
    for family in registry.collect():
        kinds = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
        names |= {family.name + suffix for suffix in kinds.get(family.type, ("",))}
    return names


def test_the_analysis_template_is_valid_for_its_schema() -> None:
    template = rendered()
    jsonschema.validate(template, SCHEMA)
    for path, value in (
        (("spec", "metrics", 0, "intervall"), "1m"),
        (("spec", "metrics", 0, "interval"), "soon"),
    ):
        broken = copy.deepcopy(template)
        broken[path[0]][path[1]][path[2]][path[3]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCHEMA)


def test_the_queries_read_series_the_service_exports() -> None:
    template = rendered()
    exported = exported_series()
    queries = [metric["provider"]["prometheus"]["query"] for metric in template["spec"]["metrics"]]
    assert {m["name"] for m in template["spec"]["metrics"]} == {
        "error-rate",
        "p99-latency",
        "accuracy-vs-stable",
    }
    for query in queries:
        used = set(SERIES.findall(query))
        assert used and used <= exported, f"{used - exported} are not series slimserve exports"
        assert "{{args.canary-hash}}" in query
