"""``export_triton`` / ``python -m models export-triton``: valid configs, GPU/CPU placement, output staged in place."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from contract import layout
from contract.layout import ChecksumMismatch
from contract.publish import verify_files
from models.__main__ import main
from models.export_triton import TritonExportError, export_triton

FP32 = ["mnist-student-fp32-onnx", "mnist-teacher-fp32-onnx"]
INT8 = ["mnist-student-int8-onnx", "mnist-student-int8-qnnpack", "mnist-student-int8-x86"]
PLATFORMS = {"onnx": "onnxruntime_onnx", "qnnpack": "pytorch_libtorch", "x86": "pytorch_libtorch"}
KIND_CPU = model_config_pb2.ModelInstanceGroup.KIND_CPU
KIND_GPU = model_config_pb2.ModelInstanceGroup.KIND_GPU


def parse(path: Path) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture
def registry_copy(tiny_registry: Path, tmp_path: Path) -> Path:
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry, root)
    return root


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_default_exports_every_fp32_onnx_variant_for_onnxruntime_on_cpu(
    tiny_registry: Path, tmp_path: Path
) -> None:
    out = tmp_path / "repo"
    assert sorted(export_triton(tiny_registry, out, None, gpu=False)) == FP32
    assert sorted(p.name for p in out.iterdir()) == FP32
    for name in FP32:
        source = parse(tiny_registry / name / "config.pbtxt")
        config = parse(out / name / "config.pbtxt")
        assert config.name == name
        assert config.platform == "onnxruntime_onnx"
        assert config.backend == ""
        assert config.max_batch_size == source.max_batch_size > 0
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching == source.dynamic_batching
        assert list(config.input) == list(source.input)
        assert [i.name for i in config.input] == ["INPUT__0"]
        assert list(config.input[0].dims) == [1, 28, 28]
        assert config.input[0].data_type == model_config_pb2.TYPE_FP32
        assert [o.name for o in config.output] == ["OUTPUT__0"]
        assert list(config.output[0].dims) == [10]
        assert [(g.kind, g.count) for g in config.instance_group] == [(KIND_CPU, 1)]
        assert sorted(p.name for p in (out / name).iterdir()) == ["1", "config.pbtxt"]
        assert sorted(p.name for p in (out / name / "1").iterdir()) == ["card.json", "model.onnx"]
        verify_files(layout.latest(out, name))  # the copied model.onnx is the one the card describes
    assert leftovers(tmp_path) == []


def test_gpu_sets_kind_gpu(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    export_triton(tiny_registry, out, ["student-fp32", "mnist-teacher-fp32-onnx"], gpu=True)
    assert sorted(p.name for p in out.iterdir()) == ["mnist-student-fp32", "mnist-teacher-fp32-onnx"]
    for name, platform in (
        ("mnist-student-fp32", "pytorch_libtorch"),
        ("mnist-teacher-fp32-onnx", "onnxruntime_onnx"),
    ):
        config = parse(out / name / "config.pbtxt")
        assert [g.kind for g in config.instance_group] == [KIND_GPU]
        assert config.platform == platform
        assert config.HasField("dynamic_batching")


def test_int8_is_refused_with_gpu_and_nothing_is_written(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    with pytest.raises(
        TritonExportError, match=r"mnist-student-int8-openvino, mnist-student-int8-x86.*CPU only"
    ):
        export_triton(
            tiny_registry, out, ["student-fp32", "student-int8-x86", "student-int8-openvino"], gpu=True
        )
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_int8_is_exported_on_cpu_without_gpu(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    assert sorted(export_triton(tiny_registry, out, INT8, gpu=False)) == INT8
    for name in INT8:
        config = parse(out / name / "config.pbtxt")
        assert [g.kind for g in config.instance_group] == [KIND_CPU]
        assert config.platform == PLATFORMS[name.rsplit("-", 1)[-1]]


def test_python_backend_writes_model_py_beside_model_onnx(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    with pytest.raises(
        TritonExportError, match="mnist-teacher-fp32: the python-backend stand-in serves ONNX"
    ):
        export_triton(tiny_registry, out, ["teacher-fp32"], gpu=False, python_backend=True)
    export_triton(tiny_registry, out, ["teacher-fp32-onnx"], gpu=False, python_backend=True)
    config = parse(out / "mnist-teacher-fp32-onnx" / "config.pbtxt")
    assert config.backend == "python"
    assert config.platform == ""
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    version = out / "mnist-teacher-fp32-onnx" / "1"
    assert sorted(p.name for p in version.iterdir()) == ["card.json", "model.onnx", "model.py"]
    assert "class TritonPythonModel" in (version / "model.py").read_text()


def test_latest_version_is_exported_under_its_own_number(registry_copy: Path, tmp_path: Path) -> None:
    shutil.copytree(registry_copy / "mnist-student-fp32" / "1", registry_copy / "mnist-student-fp32" / "3")
    card = registry_copy / "mnist-student-fp32" / "3" / "card.json"
    card.write_text(json.dumps({**json.loads(card.read_text()), "version": 3}))
    out = tmp_path / "repo"
    export_triton(registry_copy, out, ["student-fp32"], gpu=False)
    assert sorted(p.name for p in (out / "mnist-student-fp32").iterdir()) == ["3", "config.pbtxt"]


def test_unknown_variant_is_an_error(tiny_registry: Path, tmp_path: Path) -> None:
    with pytest.raises(TritonExportError, match="student-fp64: no such variant"):
        export_triton(tiny_registry, tmp_path / "repo", ["student-fp64"], gpu=False)
    assert not (tmp_path / "repo").exists()


def _corrupt_model(registry: Path) -> None:
    (registry / "mnist-teacher-fp32-onnx" / "1" / "model.onnx").write_bytes(b"not onnx")


def _corrupt_config(registry: Path) -> None:
    config = registry / "mnist-teacher-fp32-onnx" / "config.pbtxt"  # the last one: others are staged by then
    config.write_text(config.read_text() + "no_such_field: 1\n")


@pytest.mark.parametrize(
    ("corrupt", "error", "message"),
    [
        (_corrupt_model, ChecksumMismatch, "mnist-teacher-fp32-onnx/1/model.onnx: sha256 mismatch"),
        (
            _corrupt_config,
            layout.ArtifactError,
            "mnist-teacher-fp32-onnx/config.pbtxt: not a valid Triton model config",
        ),
    ],
)
def test_a_failed_export_leaves_no_partial_output(
    registry_copy: Path, tmp_path: Path, corrupt: Callable[[Path], None], error: type[Exception], message: str
) -> None:
    fresh, existing = tmp_path / "out" / "fresh", tmp_path / "out" / "existing"
    export_triton(registry_copy, existing, ["student-fp32"], gpu=False)
    before = sorted(str(p.relative_to(existing)) for p in existing.rglob("*"))
    corrupt(registry_copy)
    for out in (fresh, existing):
        with pytest.raises(error, match=message):
            export_triton(registry_copy, out, None, gpu=False)
    assert not fresh.exists()
    assert sorted(str(p.relative_to(existing)) for p in existing.rglob("*")) == before  # untouched
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["existing"]  # no temporary left


def test_reexport_replaces_the_repository_whole(tiny_registry: Path, tmp_path: Path) -> None:
    out = tmp_path / "repo"
    export_triton(tiny_registry, out, None, gpu=False)
    export_triton(tiny_registry, out, ["student-int8-x86"], gpu=False)
    assert [p.name for p in out.iterdir()] == ["mnist-student-int8-x86"]
    assert leftovers(tmp_path) == []


def test_cli(tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "repo"
    argv = ["export-triton", "--registry", str(tiny_registry), "--out", str(out)]
    assert main([*argv, "--gpu"]) == 0
    assert sorted(line.split("\t")[0] for line in capsys.readouterr().out.splitlines()) == FP32
    assert parse(out / "mnist-teacher-fp32-onnx" / "config.pbtxt").instance_group[0].kind == KIND_GPU

    assert main([*argv, "--gpu", "--variants", "student-int8-qnnpack"]) == 2
    assert "CPU only" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == FP32  # the earlier export stays

    assert main([*argv, "--variants", "teacher-fp32-onnx", "--python-backend"]) == 0
    assert parse(out / "mnist-teacher-fp32-onnx" / "config.pbtxt").backend == "python"


def test_an_existing_directory_is_written_into_not_replaced(tiny_registry: Path, tmp_path: Path) -> None:
    """A mount point cannot be renamed or replaced: the export stages inside it and keeps the directory."""
    out = tmp_path / "mounted"
    out.mkdir()
    (out / "stale-model").mkdir()
    inode = out.stat().st_ino
    export_triton(tiny_registry, out, ["student-fp32"], gpu=False)
    assert out.stat().st_ino == inode
    assert [p.name for p in out.iterdir()] == ["mnist-student-fp32"]  # what it held is replaced
    assert leftovers(out) == [] and leftovers(tmp_path) == []
