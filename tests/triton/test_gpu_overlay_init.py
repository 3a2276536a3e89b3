"""The gpu-triton overlay's init container, run as the pod runs it, then its repository served by Triton.

The command is read from the overlay (not copied here), and runs with a read-only root filesystem, the
registry mounted read-only where the image has it, and an empty tmpfs mounted at the volume's mount point,
as user 10001: the conditions where renaming a staged sibling over the mount point failed (EROFS, EBUSY).
This needs root for the mount namespace (CI runs as root); without root the test fails, it never skips.

The export is for GPUs (onnxruntime_onnx, KIND_GPU), which the local Triton cannot load; so the repository is
then rewritten for its python backend (configs and ``model.py`` only: the ONNX files and cards are the ones
the init container wrote, checked against their checksums) and served.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from contract import layout
from contract.publish import verify_files
from contract.triton_config import load_config
from models.export_triton import PYTHON_BACKEND_MODEL, adapt_config
from models.triton_local import TritonServer, free_port
from tests.service.conftest import assert_close, reference_logits
from tests.triton.conftest import triton_install

ROOT = Path(__file__).resolve().parents[2]
DEPLOYMENT = ROOT / "k8s" / "overlays" / "gpu-triton" / "triton-deployment.yaml"
READ_ONLY_ROOT = Path(__file__).with_name("read_only_root.sh")
FP32 = ["mnist-student-fp32-onnx", "mnist-teacher-fp32-onnx"]


def init_container() -> tuple[list[str], str, str]:
    """The export init container's command, its registry path and the volume it writes to."""
    spec = yaml.safe_load(DEPLOYMENT.read_text())["spec"]["template"]["spec"]
    container = next(c for c in spec["initContainers"] if c["name"] == "export-model-repository")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    command = container["command"]
    registry = command[command.index("--registry") + 1]
    out = command[command.index("--out") + 1]
    assert out in {mount["mountPath"] for mount in container["volumeMounts"]}, "it writes to its volume"
    return command, registry, out


def run_in_read_only_root(command: list[str], registry: Path, registry_mount: str, volume: str, copy_to: Path,
                          scratch: Path) -> subprocess.CompletedProcess[str]:  # fmt: skip
    new_root = scratch / "root"
    new_root.mkdir()
    env = {**os.environ, "EXTRA_READ_ONLY": os.path.realpath(sys.base_prefix)}  # what the venv links to
    args = [str(new_root), str(registry), registry_mount, volume, str(copy_to), str(ROOT), "--", *command]
    return subprocess.run(["unshare", "--mount", "sh", str(READ_ONLY_ROOT), *args], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def for_the_python_backend(repository: Path) -> None:
    """Rewrite an exported repository's configs for the local Triton, which only has the python backend."""
    for model in repository.iterdir():
        card = layout.latest(repository, model.name).card
        config = adapt_config(load_config(model, card), card, gpu=False, python_backend=True)
        (model / layout.CONFIG_FILE).write_text(text_format.MessageToString(config))
        for version in (entry for entry in model.iterdir() if entry.is_dir()):
            shutil.copyfile(PYTHON_BACKEND_MODEL, version / "model.py")


def test_the_init_container_exports_into_its_mounted_volume_under_a_read_only_root(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    if os.geteuid() != 0:
        pytest.fail(
            "needs root for a private mount namespace (unshare --mount); CI runs as root", pytrace=False
        )
    command, registry_mount, volume = init_container()
    registry = shutil.copytree(tiny_registry, tmp_path / "registry")
    for directory in (registry, *(p for p in registry.rglob("*") if p.is_dir())):
        directory.chmod(
            0o755
        )  # readable by the container's user, as the image's registry is (pytest's: 0700)
    exported = tmp_path / "exported"
    exported.mkdir()
    result = run_in_read_only_root(command, registry, registry_mount, volume, exported, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(line.split("\t")[0] for line in result.stdout.splitlines()) == FP32
    assert sorted(entry.name for entry in exported.iterdir()) == FP32, "only the models, no staging left"
    for name in FP32:
        version = layout.latest(exported, name)
        config = load_config(exported / name, version.card)
        assert config.platform == "onnxruntime_onnx"
        assert [group.kind for group in config.instance_group] == [
            model_config_pb2.ModelInstanceGroup.KIND_GPU
        ]
        verify_files(version)  # the ONNX file and card are what the registry's card says

    for_the_python_backend(exported)
    rows = np.ascontiguousarray(mnist_test_digits[0][:4], dtype=np.float32)
    triton = TritonServer(install=triton_install(), repository=exported, models=FP32, http_port=free_port(),
                          grpc_port=free_port(), log_path=tmp_path / "triton.log")  # fmt: skip
    triton.start()
    try:
        with triton_grpc.InferenceServerClient(triton.grpc_url) as client:
            for name in FP32:
                tensor = triton_grpc.InferInput("INPUT__0", list(rows.shape), "FP32")
                tensor.set_data_from_numpy(rows)
                served = client.infer(name, [tensor]).as_numpy("OUTPUT__0")
                assert served is not None
                assert_close(served, reference_logits(tiny_registry / name / "1", rows))
    finally:
        triton.stop()
