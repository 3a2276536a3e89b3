"""Render the kustomize overlays once per session with the kubectl from the dev dependencies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
BIN = Path(sys.executable).parent
OVERLAYS = ("cpu", "gpu-triton")
COMPONENTS = ("inflight-hpa", "registry-volume", "redis-experiments")
# every rendering the docs offer: each overlay alone, and each overlay with every optional component
RENDERINGS = (*OVERLAYS, *(f"{overlay}+components" for overlay in OVERLAYS))

Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def render(name: str, scratch: Path) -> list[Manifest]:
    overlay, _, with_components = name.partition("+")
    if not with_components:
        return kustomize(K8S / "overlays" / overlay)
    # kustomize refuses absolute paths to bases: refer to the repository relative to a scratch kustomization
    folder = scratch / name
    folder.mkdir()
    relative = Path(os.path.relpath(K8S, folder))
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [str(relative / "overlays" / overlay)],
                "components": [str(relative / "components" / component) for component in COMPONENTS],
            }
        )
    )
    return kustomize(folder)


@pytest.fixture(scope="session")
def renderings(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Manifest]]:
    scratch = tmp_path_factory.mktemp("kustomize")
    return {name: render(name, scratch) for name in RENDERINGS}
