"""What docs/monitoring.md documents about scaling: one service process per pod, more pods for more load.

Metrics live in the process that served the request (no multiprocess mode), so this holds only while every
pod runs exactly one serving process, the autoscaler adds pods, and Prometheus scrapes every pod.
"""

from __future__ import annotations

import pytest

from tests.deploy.conftest import RENDERINGS, Manifest
from tests.deploy.test_manifests import containers, named


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_one_serving_process_per_pod_scaled_by_replicas(
    renderings: dict[str, list[Manifest]], rendering: str
) -> None:
    manifests = renderings[rendering]
    deployment = named(manifests, "Deployment", "slimserve")
    (service,) = [c for c in containers(deployment["spec"]["template"]) if c["name"] == "slimserve"]
    command = [*service.get("command", []), *service.get("args", [])]
    assert not any("worker" in part or "gunicorn" in part for part in command), command
    assert all("WORKERS" not in env["name"] and env["name"] != "PROMETHEUS_MULTIPROC_DIR"
               for env in service.get("env", []))  # fmt: skip
    hpa = named(manifests, "HorizontalPodAutoscaler", "slimserve")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "slimserve",
    }
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] >= 2
    monitor = named(manifests, "ServiceMonitor", "slimserve")
    assert [endpoint.get("path", "/metrics") for endpoint in monitor["spec"]["endpoints"]] == ["/metrics"]
