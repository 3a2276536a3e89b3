"""Acceptance 1 and 2 for k8s/: every rendered object validated against its schema, then what schemas can't say.

Kubernetes kinds: kubernetes-validate (bundled OpenAPI schemas, strict: unknown fields are errors) for
KUBERNETES_VERSION. CRD kinds: ServiceMonitor against the pydantic models that cloudcoil generates from the
Prometheus operator's published CRD schemas (patterns, enums, types), made strict by a round trip that must
give back every field (a field the schema does not know is dropped and so fails). PrometheusRule: the same, on
k8s/monitoring rendered (its own kustomization, applied beside the overlays, into their namespace); any other
CRD kind fails the test until it gets a validator here.
"""

from __future__ import annotations

import copy
import importlib
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config import BackendSettings, Settings
from service.routing.experiments import ExperimentsFileError, load_experiments
from tests.deploy.conftest import OVERLAYS, RENDERINGS, ROOT, Manifest, kustomize

KUBERNETES_VERSION = "1.37.0"
CRD_VALIDATORS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "ServiceMonitor",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "PrometheusRule",
}
# Objects the manifests reference but do not contain, each created as docs/deploy.md says.
EXTERNAL_SECRETS = {"slimserve-admin": {"admin-token"}}
EXTERNAL_CLAIMS = {"slimserve-registry"}
WORKLOADS = ("Deployment", "StatefulSet")
# The fp32 ONNX variants Triton serves; the int8 variants stay in-process on CPU.
TRITON_MODELS = {"mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx"}


@pytest.fixture(params=RENDERINGS)
def manifests(request: pytest.FixtureRequest, renderings: dict[str, list[Manifest]]) -> list[Manifest]:
    return renderings[request.param]


def of_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def named(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [m for m in of_kind(manifests, kind) if m["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def pod_templates(manifests: list[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for workload in manifests:
        if workload["kind"] in WORKLOADS:
            yield workload["metadata"]["name"], workload["spec"]["template"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Service's plain label map, or a LabelSelector (only matchLabels are used in k8s/: checked)."""
    if "matchLabels" in selector or "matchExpressions" in selector:
        assert set(selector) == {"matchLabels"}, f"only matchLabels selectors are checked here: {selector}"
        selector = selector["matchLabels"]
    assert selector, "an empty selector selects everything"
    return all(labels.get(key) == value for key, value in selector.items())


def selected_pods(manifests: list[Manifest], selector: dict[str, Any]) -> list[dict[str, Any]]:
    return [pod for _, pod in pod_templates(manifests) if selects(selector, pod["metadata"]["labels"])]


def container_ports(pod: dict[str, Any]) -> dict[str | int, int]:
    """Every port of the pod's serving containers, by name and by number."""
    ports: dict[str | int, int] = {}
    for container in pod["spec"]["containers"]:
        for port in container.get("ports", []):
            ports[port["containerPort"]] = port["containerPort"]
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def config_maps(manifests: list[Manifest]) -> dict[str, dict[str, str]]:
    return {m["metadata"]["name"]: m.get("data", {}) for m in of_kind(manifests, "ConfigMap")}


def container_env(manifests: list[Manifest], workload: str, container: str) -> dict[str, str]:
    """The environment a container gets from its envFrom ConfigMaps and literal env values."""
    pod = named(manifests, "Deployment", workload)["spec"]["template"]
    (spec,) = [c for c in pod["spec"]["containers"] if c["name"] == container]
    maps = config_maps(manifests)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({item["name"]: item["value"] for item in spec.get("env", []) if "value" in item})
    return env


# ---- acceptance 1: schemas ---------------------------------------------------------------------------------


def validate_crd(manifest: Manifest) -> None:
    model_name = CRD_VALIDATORS[(manifest["apiVersion"], manifest["kind"])]
    # imported by name: mypy need not read the 60k generated lines; the models are what is validated against
    model = getattr(importlib.import_module("cloudcoil.models.prometheus_operator.v1"), model_name)
    parsed = model.model_validate(manifest)
    assert parsed.model_dump(by_alias=True, exclude_unset=True, mode="json") == manifest, (
        f"{manifest['kind']}/{manifest['metadata']['name']} has fields its CRD schema does not know"
    )


def validate(manifest: Manifest) -> None:
    if "." in manifest["apiVersion"].split("/")[0] and not manifest["apiVersion"].startswith(
        ("apps/", "policy/", "autoscaling/", "networking.k8s.io/")
    ):
        validate_crd(manifest)
    else:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_every_object_is_valid_for_its_schema(manifests: list[Manifest]) -> None:
    assert manifests
    for manifest in manifests:
        validate(manifest)


def test_the_alert_rules_are_valid_for_the_prometheus_rule_schema() -> None:
    rendered = kustomize(ROOT / "k8s" / "monitoring")  # as `kubectl apply -k k8s/monitoring` applies it
    assert [(m["kind"], m["metadata"]["namespace"]) for m in rendered] == [("PrometheusRule", "slimserve")]
    (rule,) = rendered
    validate(rule)
    broken = copy.deepcopy(rule)
    broken["spec"]["groups"][0]["rules"][0]["recordd"] = broken["spec"]["groups"][0]["rules"][0].pop("record")
    with pytest.raises((AssertionError, ValueError)):
        validate(broken)


def test_validation_is_strict() -> None:
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    validate(deployment)
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    monitor: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "endpoints": [{"port": "metrics", "interval": "15s"}]},
    }
    validate(monitor)
    for typo in ({"port": "metrics", "intervall": "15s"}, {"port": "metrics", "interval": "fifteen"}):
        broken = copy.deepcopy(monitor)
        broken["spec"]["endpoints"] = [typo]
        with pytest.raises((AssertionError, ValueError)):
            validate(broken)


# ---- acceptance 2: what schemas can't check ----------------------------------------------------------------


def test_selectors_match_pod_labels(manifests: list[Manifest]) -> None:
    for workload in of_kind(manifests, "Deployment"):
        selector = workload["spec"]["selector"]
        assert selects(selector, workload["spec"]["template"]["metadata"]["labels"]), workload["metadata"][
            "name"
        ]
    for kind, path in (
        ("Service", ("spec", "selector")),
        ("PodDisruptionBudget", ("spec", "selector")),
        ("NetworkPolicy", ("spec", "podSelector")),
    ):
        for manifest in of_kind(manifests, kind):
            selector = manifest[path[0]][path[1]]
            pods = selected_pods(manifests, selector)
            assert len(pods) == 1, f"{kind}/{manifest['metadata']['name']} selects {len(pods)} workloads"
    for hpa in of_kind(manifests, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        named(manifests, target["kind"], target["name"])


def test_service_ports_and_probes_exist_on_a_container(manifests: list[Manifest]) -> None:
    for service in of_kind(manifests, "Service"):
        (pod,) = selected_pods(manifests, service["spec"]["selector"])
        ports = container_ports(pod)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"Service/{service['metadata']['name']} {port}"
    for name, pod in pod_templates(manifests):
        ports = container_ports(pod)
        for container in pod["spec"]["containers"]:
            probes = [
                container[p] for p in ("startupProbe", "livenessProbe", "readinessProbe") if p in container
            ]
            assert len(probes) == 3, f"{name}/{container['name']}: startup, liveness and readiness probes"
            for probe in probes:
                (handler,) = {"httpGet", "grpc", "tcpSocket"} & set(probe)
                assert probe[handler]["port"] in ports, f"{name}/{container['name']} {handler} {probe}"
    for policy in of_kind(manifests, "NetworkPolicy"):
        (pod,) = selected_pods(manifests, policy["spec"]["podSelector"])
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                assert port["port"] in container_ports(pod), (
                    f"NetworkPolicy/{policy['metadata']['name']} {port}"
                )


def test_service_monitors_scrape_a_service_port(manifests: list[Manifest]) -> None:
    monitors = of_kind(manifests, "ServiceMonitor")
    assert monitors
    for monitor in monitors:
        services = [
            s
            for s in of_kind(manifests, "Service")
            if selects(monitor["spec"]["selector"], s["metadata"].get("labels", {}))
        ]
        assert len(services) == 1, (
            f"ServiceMonitor/{monitor['metadata']['name']} selects {len(services)} Services"
        )
        names = {port["name"] for port in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in names


def test_every_config_and_secret_reference_exists(manifests: list[Manifest]) -> None:
    maps = config_maps(manifests)
    secrets = {
        **EXTERNAL_SECRETS,
        **{s["metadata"]["name"]: set(s.get("data", {})) for s in of_kind(manifests, "Secret")},
    }
    claim_templates = {
        (workload["metadata"]["name"], claim["metadata"]["name"])
        for workload in of_kind(manifests, "StatefulSet")
        for claim in workload["spec"].get("volumeClaimTemplates", [])
    }
    for name, pod in pod_templates(manifests):
        volumes = {volume["name"]: volume for volume in pod["spec"].get("volumes", [])}
        volumes |= {
            claim: {"persistentVolumeClaimTemplate": claim}
            for owner, claim in claim_templates
            if owner == name
        }
        for volume in volumes.values():
            if "configMap" in volume:
                keys = maps[volume["configMap"]["name"]]
                assert {item["key"] for item in volume["configMap"].get("items", [])} <= set(keys), (
                    name,
                    volume,
                )
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets, (name, volume)
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in EXTERNAL_CLAIMS, (name, volume)
        for container in containers(pod):
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in volumes, (name, container["name"], mount)
            for source in container.get("envFrom", []):
                assert source["configMapRef"]["name"] in maps, (name, container["name"], source)
            for variable in container.get("env", []):
                reference = variable.get("valueFrom", {})
                if "configMapKeyRef" in reference:
                    ref = reference["configMapKeyRef"]
                    assert ref["key"] in maps[ref["name"]], (name, variable)
                if "secretKeyRef" in reference:
                    ref = reference["secretKeyRef"]
                    assert ref["key"] in secrets[ref["name"]], (name, variable)


def test_external_secrets_are_created_as_the_docs_say() -> None:
    commands = [
        line
        for line in (ROOT / "docs" / "deploy.md").read_text().splitlines()
        if line.startswith("kubectl") and " create secret generic " in line
    ]
    created: dict[str, set[str]] = {}
    for command in commands:
        words = shlex.split(command)
        name = words[words.index("generic") + 1]
        keys = {
            w.split("=", 1)[1].split("=")[0]
            for w in words
            if w.startswith(("--from-literal=", "--from-file="))
        }
        created[name] = keys
    assert created == EXTERNAL_SECRETS


def test_experiments_seed_is_copied_from_the_mounted_configmap(manifests: list[Manifest]) -> None:
    pod = named(manifests, "Deployment", "slimserve")["spec"]["template"]
    (seed,) = [c for c in pod["spec"]["initContainers"] if c["name"] == "seed-experiments"]
    source, target = seed["command"][-2:]
    mounts = {m["mountPath"]: m["name"] for m in seed["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    seed_volume = volumes[mounts[os.path.dirname(source)]]
    assert os.path.basename(source) in {item["path"] for item in seed_volume["configMap"]["items"]}
    assert "emptyDir" in volumes[mounts[os.path.dirname(target)]]
    env = container_env(manifests, "slimserve", "slimserve")
    assert env["SLIMSERVE_ROUTING__EXPERIMENTS_FILE"] == target
    (server,) = pod["spec"]["containers"]
    assert {m["mountPath"]: m["name"] for m in server["volumeMounts"]}[os.path.dirname(target)] == mounts[
        os.path.dirname(target)
    ]


def test_settings_are_fields_the_service_reads(
    manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = container_env(manifests, "slimserve", "slimserve")
    sections = Settings.model_fields
    for key in env:
        if not key.startswith("SLIMSERVE_"):
            continue
        section, field = key.removeprefix("SLIMSERVE_").lower().split("__", 1)
        assert section in sections, key
        if section == "backends":  # per variant: SLIMSERVE_BACKENDS__<VARIANT>__<FIELD>
            assert field.split("__")[-1] in BackendSettings.model_fields, key
            continue
        annotation = sections[section].annotation
        assert annotation is not None and field in annotation.model_fields, key
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)
    assert settings.server.host == "0.0.0.0"


def test_experiments_file_is_accepted_by_the_service_parser(
    manifests: list[Manifest], tmp_path: Path, tiny_registry: Path
) -> None:
    text = config_maps(manifests)[
        next(name for name in config_maps(manifests) if name.startswith("slimserve-experiments"))
    ]["experiments.yaml"]
    path = tmp_path / "experiments.yaml"
    path.write_text(text)
    parsed = load_experiments(path)
    assert parsed.experiments, "the shipped file runs an experiment"
    served = registry_model_names(tiny_registry)
    for experiment in parsed.experiments:
        for variant in [
            *(v.name for v in experiment.variants),
            *([experiment.shadow.variant] if experiment.shadow else []),
        ]:
            assert f"{experiment.family}-{variant}" in served
    with pytest.raises(ExperimentsFileError):
        path.write_text(text.replace("weight: 70", "weight: 71"))
        load_experiments(path)


def registry_model_names(registry: Path) -> set[str]:
    """The model names a registry built by the pipeline holds (each with its Triton config)."""
    return {path.name for path in registry.iterdir() if (path / "config.pbtxt").is_file()}


def test_triton_serves_the_fp32_variants_the_service_points_at(
    renderings: dict[str, list[Manifest]], tiny_registry: Path
) -> None:
    manifests = renderings["gpu-triton"]
    pod = named(manifests, "Deployment", "triton")["spec"]["template"]
    (triton,) = pod["spec"]["containers"]
    loaded = {arg.split("=", 1)[1] for arg in triton["args"] if arg.startswith("--load-model=")}
    assert loaded == TRITON_MODELS
    assert loaded <= registry_model_names(tiny_registry)
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["spec"]["nodeSelector"] and pod["spec"]["tolerations"]
    repository = next(a.split("=", 1)[1] for a in triton["args"] if a.startswith("--model-repository="))
    (export,) = pod["spec"]["initContainers"]
    out = export["command"][export["command"].index("--out") + 1]
    assert out == repository
    assert {m["mountPath"]: m["name"] for m in export["volumeMounts"]}[out] == {
        m["mountPath"]: m["name"] for m in triton["volumeMounts"]
    }[repository]

    env = container_env(manifests, "slimserve", "slimserve")
    service = named(manifests, "Service", "triton")
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    pointed = set()
    for key, value in env.items():
        match = re.fullmatch(r"SLIMSERVE_BACKENDS__([A-Z0-9_]+)__KIND", key)
        if match and value == "triton":
            variant = match.group(1).lower().replace("_", "-")
            pointed.add(f"mnist-{variant}")
            assert (
                env[f"SLIMSERVE_BACKENDS__{match.group(1)}__URL"]
                == f"{service['metadata']['name']}:{grpc_port}"
            )
    assert pointed == loaded

    configured: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if key.startswith("SLIMSERVE_BACKENDS__"):
            variant, field = key.removeprefix("SLIMSERVE_BACKENDS__").lower().rsplit("__", 1)
            configured.setdefault(variant, {})[field] = value
    settings = Settings(_env_file=None, backends=configured)
    backends = {name: settings.backend_for(name, name.removeprefix("mnist-")) for name in loaded}
    for name, backend in backends.items():  # routed calls must be answered while Triton is down
        fallback = f"mnist-{backend.fallback}"
        assert backend.fallback and fallback in registry_model_names(tiny_registry), name
        assert fallback not in loaded, f"{name}: its fallback {fallback} runs in-process, not on Triton"


def test_cpu_overlay_keeps_every_variant_in_process(renderings: dict[str, list[Manifest]]) -> None:
    manifests = renderings["cpu"]
    assert not [d for d in of_kind(manifests, "Deployment") if d["metadata"]["name"] != "slimserve"]
    assert not [
        k for k in container_env(manifests, "slimserve", "slimserve") if k.startswith("SLIMSERVE_BACKENDS__")
    ]


def test_pods_run_locked_down(manifests: list[Manifest]) -> None:
    for name, pod in pod_templates(manifests):
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True, name
        writable = {v["name"] for v in pod["spec"].get("volumes", []) if "emptyDir" in v}
        for container in containers(pod):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert "requests" in container["resources"] and "limits" in container["resources"]
            if container["name"] == "seed-experiments":
                continue  # a bare `cp`: writes its target only
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert [m["name"] for m in tmp if m["name"] in writable], (
                f"{name}/{container['name']}: writable /tmp"
            )
        single = [w for w in manifests if w["kind"] in WORKLOADS and w["metadata"]["name"] == name
                  and w["spec"].get("replicas") == 1]  # fmt: skip
        assert single or pod["spec"].get("topologySpreadConstraints"), f"{name}: replicas spread"


def test_redis_experiments_component_is_reachable_by_slimserve_only(
    renderings: dict[str, list[Manifest]],
) -> None:
    for overlay in OVERLAYS:
        manifests = renderings[f"{overlay}+components"]
        redis = named(manifests, "StatefulSet", "slimserve-redis")["spec"]["template"]
        (container,) = redis["spec"]["containers"]
        assert container["args"][container["args"].index("--appendonly") + 1] == "yes", "persistence is on"
        assert container["resources"]["limits"]["memory"]
        service = named(manifests, "Service", "slimserve-redis")
        url = container_env(manifests, "slimserve", "slimserve")["SLIMSERVE_ROUTING__REDIS_URL"]
        assert url == f"redis://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/0"
        server_labels = named(manifests, "Deployment", "slimserve")["spec"]["template"]["metadata"]["labels"]
        policy = named(manifests, "NetworkPolicy", "slimserve-redis")["spec"]
        (rule,) = policy["ingress"]
        assert [selects(peer["podSelector"], server_labels) for peer in rule["from"]] == [True]
        assert policy["egress"] == [] and "Egress" in policy["policyTypes"]
        egress = named(manifests, "NetworkPolicy", "slimserve")["spec"]["egress"]
        assert any(
            selects(peer["podSelector"], redis["metadata"]["labels"])
            for rule in egress
            for peer in rule.get("to", [])
            if "namespaceSelector" not in peer
        ), "slimserve may reach Redis"
    assert not of_kind(renderings["cpu"], "StatefulSet"), "Redis only with the component"


def test_the_objects_docs_deploy_md_shows_are_valid() -> None:
    """The registry claim and the pod that fills it, as the docs give them, with the access mode they advise."""
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = [
        block for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL) if "apiVersion:" in block
    ]
    documents = [document for block in blocks for document in yaml.safe_load_all(block) if document]
    assert {d["kind"] for d in documents} == {"PersistentVolumeClaim", "Pod"}
    for document in documents:
        validate(document)
    claim = next(d for d in documents if d["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["name"] in EXTERNAL_CLAIMS
    assert "ReadWriteOnce" not in claim["spec"]["accessModes"], "many pods on many nodes mount it"
