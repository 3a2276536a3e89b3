from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from contract import layout
from contract.engines import EngineError
from contract.layout import ArtifactError, ChecksumMismatch, ModelVersion
from contract.publish import publish, sha256_of, verify_files
from contract.runners import open_runner

NAME = "mnist-student-fp32"
SIGNATURE = {
    "inputs": [{"name": "INPUT__0", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
    "outputs": [{"name": "OUTPUT__0", "datatype": "FP32", "shape": [-1, 10]}],
}


def _card(**overrides: Any) -> dict[str, Any]:
    return {
        "family": "mnist", "variant": "student-fp32", "name": NAME, "precision": "fp32", "max_batch_size": 64,
        "signature": SIGNATURE, **overrides,
    }  # fmt: skip


def _publish(root: Path, source: Path, **overrides: Any) -> int:
    return publish(root, _card(**overrides), {"model.pt": source}).card.version


def _verify(directory: Path) -> layout.ModelCard:
    version = ModelVersion(directory, layout.read_card(directory))
    verify_files(version)
    return version.card


def _model_file(tmp_path: Path, content: bytes = b"weights") -> Path:
    path = tmp_path / "source-model.pt"
    path.write_bytes(content)
    return path


def test_publish_numbers_versions_and_records_checksums(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    source = _model_file(tmp_path)
    assert _publish(root, source) == 1
    assert _publish(root, source) == 2
    card = _verify(root / NAME / "2")
    assert card.version == 2
    assert card.files == {"model.pt": sha256_of(source)}
    assert layout.list_models(root) == {NAME: [1, 2]}
    config = (root / NAME / "config.pbtxt").read_text()
    assert f'name: "{NAME}"' in config and "max_batch_size: 64" in config
    assert 'platform: "pytorch_libtorch"' in config and "dims: 1\n  dims: 28\n  dims: 28" in config
    assert [p.name for p in (root / NAME).iterdir() if p.name.startswith(".")] == []


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    _publish(root, _model_file(tmp_path))
    (root / NAME / "1" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(ChecksumMismatch, match=r"1/model\.pt: sha256 mismatch"):
        _verify(root / NAME / "1")
    with pytest.raises(ChecksumMismatch, match=r"model\.pt"):
        open_runner(layout.latest(root, NAME))


def test_loader_refuses_an_unsupported_engine(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    quantization = {"engine": "tpu-int8", "method": "static", "calibration_samples": 1}
    _publish(root, _model_file(tmp_path), quantization=quantization, precision="int8")
    with pytest.raises(EngineError, match="tpu-int8"):
        open_runner(layout.latest(root, NAME))


def test_version_lookup_errors(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    _publish(root, _model_file(tmp_path))
    assert layout.version_dir(root, NAME) == root / NAME / "1"
    with pytest.raises(ArtifactError, match="no version 7"):
        layout.version_dir(root, NAME, 7)
    with pytest.raises(ArtifactError, match="no such model"):
        layout.version_dir(root, "mnist-nope")
    with pytest.raises(ArtifactError, match="leading zeros"):
        layout.parse_version("01")


def test_publish_refuses_an_invalid_card_or_missing_artifact_files(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with pytest.raises(ArtifactError, match="format"):
        _publish(root, _model_file(tmp_path), format="safetensors")
    with pytest.raises(ArtifactError, match=r"model\.bin"):
        publish(root, _card(format="openvino"), {"model.xml": _model_file(tmp_path)})
    assert not (root / NAME).exists() or layout.list_models(root) == {}


CRASHING_PUBLISHER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from contract import publish
    from tests.contract.test_publish import _card

    def crash(*args, **kwargs):
        os._exit(3)  # killed after model.pt and card.json are written, before the rename

    publish.os.rename = crash
    publish.publish(Path(sys.argv[1]), _card(), {"model.pt": Path(sys.argv[2])})
    """
)


def test_a_publish_killed_midway_leaves_no_visible_version(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    source = _model_file(tmp_path)
    done = subprocess.run([sys.executable, "-c", CRASHING_PUBLISHER, str(root), str(source)], check=False)
    assert done.returncode == 3
    leftovers = [p for p in (root / NAME).iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "model.pt").exists()
    assert layout.list_models(root) == {}
    assert _publish(root, source) == 1


def test_concurrent_thread_publishers_get_distinct_complete_versions(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    sources = []
    for i in range(8):
        (tmp_path / str(i)).mkdir()
        sources.append(_model_file(tmp_path / str(i), f"weights {i}".encode()))
    results: list[int] = []
    barrier = threading.Barrier(len(sources))

    def publisher(source: Path) -> None:
        barrier.wait()
        results.append(_publish(root, source))

    threads = [threading.Thread(target=publisher, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))
    for version in results:
        assert _verify(root / NAME / str(version)).version == version


PUBLISHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from contract.publish import publish
    from tests.contract.test_publish import _card
    for _ in range(3):
        print(publish(Path(sys.argv[1]), _card(), {"model.pt": Path(sys.argv[2])}).card.version)
    """
)


def test_concurrent_process_publishers_get_distinct_complete_versions(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    source = _model_file(tmp_path)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, str(root), str(source)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    versions = [int(line) for p in processes for line in p.communicate()[0].split()]
    assert all(p.returncode == 0 for p in processes)
    assert sorted(versions) == list(range(1, 13))
    for version in versions:
        assert json.loads((root / NAME / str(version) / "card.json").read_text())["version"] == version
        _verify(root / NAME / str(version))
