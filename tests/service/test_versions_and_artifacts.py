"""Version addressing and artifact verification on the real server, over copies of the tiny registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.harness import make_settings, run_service

BODY = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}


@pytest.fixture
def two_versions(tiny_registry: Path, tmp_path: Path) -> Path:
    """The tiny registry with version 2 of the teacher published beside version 1."""
    registry = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry)
    model = registry / "mnist-teacher-fp32"
    shutil.copytree(model / "1", model / "2")
    card = json.loads((model / "2" / "card.json").read_text())
    (model / "2" / "card.json").write_text(json.dumps({**card, "version": 2}))
    return registry


def test_all_versions_addressable_latest_by_default(two_versions: Path) -> None:
    settings = make_settings(two_versions, registry={"version_policy": "all"})
    with run_service(settings) as running, running.client() as client:
        assert client.get("/v2/models/mnist-teacher-fp32").json()["versions"] == ["1", "2"]
        for version in ("1", "2"):
            response = client.post(f"/v2/models/mnist-teacher-fp32/versions/{version}/infer", json=BODY)
            assert response.status_code == 200
            assert response.headers["slimserve-version"] == version
            assert response.json()["model_version"] == version
        latest = client.post("/v2/models/mnist-teacher-fp32/infer", json=BODY)
        assert latest.headers["slimserve-version"] == "2"
        assert client.get("/v2/models/mnist-teacher-fp32/versions/1/ready").status_code == 200
        missing = client.post("/v2/models/mnist-teacher-fp32/versions/3/infer", json=BODY)
        assert missing.status_code == 404
        assert "no loaded version 3 (loaded: 1, 2)" in missing.json()["error"]


def test_latest_policy_loads_only_the_newest(two_versions: Path) -> None:
    with run_service(make_settings(two_versions)) as running, running.client() as client:
        assert client.get("/v2/models/mnist-teacher-fp32").json()["versions"] == ["2"]
        old = client.post("/v2/models/mnist-teacher-fp32/versions/1/infer", json=BODY)
        assert old.status_code == 404
        assert "no loaded version 1 (loaded: 2)" in old.json()["error"]


def test_corrupted_artifact_makes_only_that_variant_unavailable(tiny_registry: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry)
    with (registry / "mnist-student-fp32" / "1" / "model.pt").open("r+b") as artifact:
        artifact.seek(100)
        artifact.write(b"tampered")
    (registry / "mnist-teacher-fp32" / "1" / "card.json").write_text("{not json")
    with run_service(make_settings(registry)) as running, running.client() as client:
        index = {entry["name"]: entry for entry in client.get("/v2/models").json()["models"]}
        assert index["mnist-student-fp32"]["state"] == "UNAVAILABLE"
        assert "sha256 mismatch" in index["mnist-student-fp32"]["reason"]
        assert "model.pt" in index["mnist-student-fp32"]["reason"]
        assert index["mnist-teacher-fp32"]["state"] == "UNAVAILABLE"
        assert "not a valid model card" in index["mnist-teacher-fp32"]["reason"]
        unavailable = client.post("/v2/models/mnist-student-fp32/infer", json=BODY)
        assert unavailable.status_code == 503
        assert client.post("/v2/models/mnist-student-int8-x86/infer", json=BODY).status_code == 200
        assert client.post("/v2/models/mnist-teacher-fp32/infer", json=BODY).status_code == 404


def test_strict_readiness_reports_not_ready_with_a_broken_variant(
    tiny_registry: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry)
    (registry / "mnist-student-fp32" / "1" / "model.pt").unlink()
    strict = make_settings(registry, registry={"strict_readiness": True})
    with run_service(strict, wait_ready=False) as running, running.client() as client:
        for _ in range(100):
            states = {e["name"]: e["state"] for e in client.get("/v2/models").json()["models"]}
            if "LOADING" not in states.values():
                break
        assert states["mnist-student-fp32"] == "UNAVAILABLE"
        assert client.get("/v2/health/ready").status_code == 503
        assert client.post("/v2/models/mnist-student-int8-x86/infer", json=BODY).status_code == 200
