from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from models import registry
from models.quantize import EngineError

NAME = "mnist-student-fp32"


def _card(**overrides: Any) -> dict[str, Any]:
    return {"family": "mnist", "variant": "student-fp32", "name": NAME, "max_batch_size": 64, **overrides}


def _model_file(tmp_path: Path, content: bytes = b"weights") -> Path:
    path = tmp_path / "source-model.pt"
    path.write_bytes(content)
    return path


def test_publish_numbers_versions_and_records_checksums(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    source = _model_file(tmp_path)
    assert registry.publish(root, _card(), {"model.pt": source}) == 1
    assert registry.publish(root, _card(), {"model.pt": source}) == 2
    card = registry.verify(root / NAME / "2")
    assert card["version"] == 2
    assert card["files"] == {"model.pt": registry.sha256_file(source)}
    assert registry.list_models(root) == {NAME: [1, 2]}
    config = (root / NAME / "config.pbtxt").read_text()
    assert f'name: "{NAME}"' in config and "max_batch_size: 64" in config
    assert [p.name for p in (root / NAME).iterdir() if p.name.startswith(".")] == []


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    registry.publish(root, _card(), {"model.pt": _model_file(tmp_path)})
    (root / NAME / "1" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(registry.ChecksumMismatch, match=r"1/model\.pt: sha256 mismatch"):
        registry.verify(root / NAME / "1")
    with pytest.raises(registry.ChecksumMismatch, match=r"model\.pt"):
        registry.load_torchscript(root / NAME / "1")


def test_loader_refuses_an_unsupported_engine(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    card = _card(quantization={"engine": "tpu-int8", "method": "static", "calibration_samples": 1})
    registry.publish(root, card, {"model.pt": _model_file(tmp_path)})
    with pytest.raises(EngineError, match="tpu-int8"):
        registry.load_torchscript(root / NAME / "1")


def test_version_lookup_errors(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    registry.publish(root, _card(), {"model.pt": _model_file(tmp_path)})
    assert registry.version_dir(root, NAME) == root / NAME / "1"
    with pytest.raises(registry.RegistryError, match="no version 7"):
        registry.version_dir(root, NAME, 7)
    with pytest.raises(registry.RegistryError, match="no such model"):
        registry.version_dir(root, "mnist-nope")


CRASHING_PUBLISHER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from models import registry

    def crash(*args, **kwargs):
        os._exit(3)  # killed after model.pt and card.json are written, before the rename

    registry.os.rename = crash
    registry.publish(Path(sys.argv[1]), {"name": "mnist-student-fp32", "max_batch_size": 64},
                     {"model.pt": Path(sys.argv[2])})
    """
)


def test_a_publish_killed_midway_leaves_no_visible_version(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    source = _model_file(tmp_path)
    done = subprocess.run([sys.executable, "-c", CRASHING_PUBLISHER, str(root), str(source)], check=False)
    assert done.returncode == 3
    leftovers = [p for p in (root / NAME).iterdir() if p.name.startswith(".tmp-")]
    assert len(leftovers) == 1 and (leftovers[0] / "model.pt").exists()
    assert registry.list_models(root) == {}
    assert registry.publish(root, _card(), {"model.pt": source}) == 1


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
        results.append(registry.publish(root, _card(), {"model.pt": source}))

    threads = [threading.Thread(target=publisher, args=(s,)) for s in sources]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 9))
    for version in results:
        card = registry.verify(root / NAME / str(version))
        assert card["version"] == version


PUBLISHER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from models import registry
    for _ in range(3):
        print(registry.publish(Path(sys.argv[1]), {"name": "mnist-student-fp32", "max_batch_size": 64},
                               {"model.pt": Path(sys.argv[2])}))
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
        registry.verify(root / NAME / str(version))
