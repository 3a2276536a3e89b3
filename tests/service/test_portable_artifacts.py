"""Broken ONNX and OpenVINO artifacts on the real server: each makes only its own variant unavailable, with a
reason in the repository index and the log, and a reload that fails keeps the old version serving."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest

from contract import layout
from contract.publish import publish
from tests.harness import ADMIN, make_settings, run_service

BODY = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}]}


def _rewrite_card(version_dir: Path, **changes: object) -> None:
    card = json.loads((version_dir / "card.json").read_text())
    (version_dir / "card.json").write_text(json.dumps({**card, **changes}))


def _vouch_for(version_dir: Path, filename: str, content: bytes) -> None:
    """Replace a file and record its new checksum, so only the runtime can tell that it is not a model."""
    (version_dir / filename).write_bytes(content)
    card = json.loads((version_dir / "card.json").read_text())
    card["files"][filename] = hashlib.sha256(content).hexdigest()
    (version_dir / "card.json").write_text(json.dumps(card))


@pytest.fixture
def broken_registry(tiny_registry: Path, tmp_path: Path) -> Path:
    registry = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry)
    _vouch_for(registry / "mnist-student-int8-onnx" / "1", "model.onnx", b"not a protobuf at all")
    with (registry / "mnist-student-int8-openvino" / "1" / "model.bin").open("r+b") as weights:
        weights.truncate(1000)
    (registry / "mnist-student-fp32-onnx" / "1" / "model.onnx").unlink()
    _rewrite_card(registry / "mnist-teacher-fp32-onnx" / "1", format="safetensors")
    return registry


def test_each_broken_portable_artifact_makes_only_its_variant_unavailable(
    broken_registry: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(broken_registry, registry={"strict_readiness": False})
    with caplog.at_level(logging.ERROR), run_service(settings) as running, running.client() as client:
        index = {entry["name"]: entry for entry in client.post("/v2/repository/index", headers=ADMIN).json()}
        expected = {
            "mnist-student-int8-onnx": "ONNX Runtime cannot load model.onnx",
            "mnist-student-int8-openvino": "model.bin: sha256 mismatch",
            "mnist-student-fp32-onnx": "model.onnx: missing",
            "mnist-teacher-fp32-onnx": "not a valid model card",
        }
        for name, reason in expected.items():
            assert index[name]["state"] == "UNAVAILABLE", name
            assert reason in index[name]["reason"], index[name]
            assert any(
                name in record.getMessage() and reason in record.getMessage() for record in caplog.records
            )
        for name in ("mnist-student-int8-x86", "mnist-teacher-fp32"):
            assert index[name]["state"] == "READY"
            assert client.post(f"/v2/models/{name}/infer", json=BODY).status_code == 200
        assert client.post("/v2/models/mnist-student-int8-onnx/infer", json=BODY).status_code == 503


def test_a_reload_onto_a_broken_portable_version_keeps_the_old_one_serving(
    tiny_registry: Path, tmp_path: Path
) -> None:
    registry = tmp_path / "registry"
    shutil.copytree(tiny_registry, registry)
    name = "mnist-student-int8-openvino"
    with run_service(make_settings(registry)) as running, running.client() as client:
        assert client.post(f"/v2/models/{name}/infer", json=BODY).headers["slimserve-version"] == "1"
        current = layout.latest(registry, name)
        garbage = tmp_path / "model.xml"
        garbage.write_text("<net name='broken'>")
        card = current.card.model_dump(mode="json")
        publish(registry, card, {"model.xml": garbage, "model.bin": current.directory / "model.bin"})
        refused = client.post(f"/v2/repository/models/{name}/load", headers=ADMIN)
        assert refused.status_code == 400
        assert "version 2" in refused.json()["error"] and "OpenVINO cannot load" in refused.json()["error"]
        served = client.post(f"/v2/models/{name}/infer", json=BODY)
        assert served.status_code == 200 and served.headers["slimserve-version"] == "1"
