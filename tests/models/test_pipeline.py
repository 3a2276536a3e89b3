from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contract import layout
from contract.card import ArtifactFormat
from contract.publish import sha256_of, verify_files
from contract.runners import open_runner
from models.artifacts import GateError
from models.pipeline import build, variants
from models.recipes import default_recipe

CARD_KEYS = {
    "family", "variant", "name", "version", "format", "precision", "quantization", "architecture",
    "hyperparameters", "parent", "dataset", "recipe_digest", "seed", "metrics", "signature", "labels",
    "default_variant", "max_batch_size", "files", "libraries", "torch_version", "created_at", "lineage",
    "compression", "cascade",
}  # fmt: skip
PLATFORMS = {"torchscript": "pytorch_libtorch", "onnx": "onnxruntime_onnx", "openvino": "openvino"}
METRIC_KEYS = {
    "accuracy", "nll", "agreement_with_teacher", "parameters", "bytes",
    "latency_p50_batch1_seconds", "throughput_batch32_per_second",
}  # fmt: skip
NAMES = [f"mnist-{v}" for v in variants(default_recipe("mnist"))]


def test_registry_holds_every_variant_of_every_format(tiny_registry: Path) -> None:
    assert sorted(layout.list_models(tiny_registry)) == sorted(NAMES)
    assert len(NAMES) == 16


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_loads_and_has_a_complete_card(
    tiny_registry: Path, name: str, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    version = layout.latest(tiny_registry, name)
    verify_files(version)
    card = version.card
    raw = card.model_dump()
    assert set(raw) == CARD_KEYS
    assert set(card.metrics) >= METRIC_KEYS
    assert card.name == name and card.version == 1 and card.family == "mnist"
    assert card.labels == [str(i) for i in range(10)] and card.max_batch_size == 64
    assert card.default_variant == "student-int8-x86"
    assert card.dataset["sizes"] == {"train": 3500, "validation": 500, "test": 1000}
    assert set(card.files) == set(card.format.files)
    for filename in card.format.files:
        assert card.files[filename] == sha256_of(version.directory / filename)
    assert card.metrics["bytes"] == sum((version.directory / f).stat().st_size for f in card.format.files)
    assert (card.cascade is None) == (
        name == "mnist-teacher-fp32"
    )  # students record a cascade to the teacher
    int8 = "int8" in name
    assert card.precision == ("int8" if int8 else "fp32")
    assert (card.quantization is not None) == int8
    if int8:
        made_from = ("student-fp32", "student-fp32-onnx", "student-pruned-fp32", "student-qat-int8-onnx")
        assert card.parent is not None and card.parent.name in {f"mnist-{v}" for v in made_from}
    images, _ = mnist_test_digits
    logits = open_runner(version)(images[:5])["OUTPUT__0"]
    assert logits.shape == (5, 10) and logits.dtype == np.float32
    config = (tiny_registry / name / "config.pbtxt").read_text()
    assert f'name: "{name}"' in config and f'platform: "{PLATFORMS[card.format]}"' in config


def test_portable_variants_passed_their_gates_against_the_torch_network(tiny_registry: Path) -> None:
    for name in ("mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx"):
        card = layout.latest(tiny_registry, name).card
        assert card.format is ArtifactFormat.ONNX and card.metrics["max_abs_logit_delta_vs_torch"] <= 1e-4
    for name, fmt in (("mnist-student-int8-onnx", "onnx"), ("mnist-student-int8-openvino", "openvino")):
        card = layout.latest(tiny_registry, name).card
        assert card.format == fmt and card.quantization is not None
        assert card.parent is not None and card.parent.name == "mnist-student-fp32-onnx"
        assert card.metrics["agreement_with_fp32_parent"] >= 0.95  # the smoke build's gate
        assert fmt in card.libraries and "torch" in card.libraries


def test_teacher_and_scratch_have_no_parent(tiny_registry: Path) -> None:
    for name in ("mnist-teacher-fp32", "mnist-student-scratch-fp32"):
        assert layout.latest(tiny_registry, name).card.parent is None
    parent = layout.latest(tiny_registry, "mnist-student-fp32").card.parent
    assert parent is not None and parent.name == "mnist-teacher-fp32"


@pytest.mark.slow
def test_rebuild_is_a_no_op_unless_forced(tiny_registry: Path, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry, root)
    again = build("mnist", root, epochs=1, limit=600, progress=False)
    assert again.up_to_date
    assert all(v.version == 1 for v in again.variants)
    assert layout.list_models(root) == {name: [1] for name in NAMES}
    forced = build("mnist", root, epochs=1, limit=600, progress=False, force=True)
    assert not forced.up_to_date
    assert layout.list_models(root) == {name: [1, 2] for name in NAMES}
    int8 = layout.latest(root, "mnist-student-int8-x86").card
    assert int8.parent is not None and (int8.parent.name, int8.parent.version) == ("mnist-student-fp32", 2)
    assert "| student-int8-x86 | 2 |" in forced.table()


@pytest.mark.slow
def test_a_build_without_torchscript_publishes_only_portable_formats(tmp_path: Path) -> None:
    result = build("mnist", tmp_path, epochs=1, limit=300, formats=("onnx", "openvino"), progress=False)
    expected = [
        "teacher-fp32-onnx", "student-fp32-onnx", "student-int8-onnx", "student-int8-openvino",
        "student-pruned-int8-onnx", "student-pruned-int8-openvino", "student-qat-int8-onnx",
        "student-qat-int8-openvino",
    ]  # fmt: skip
    assert [v.variant for v in result.variants] == expected
    assert sorted(layout.list_models(tmp_path)) == sorted(f"mnist-{v}" for v in expected)
    assert not list(tmp_path.rglob("model.pt"))


def test_a_failed_gate_publishes_nothing(tmp_path: Path) -> None:
    recipe = dataclasses.replace(
        default_recipe("mnist"), max_fp32_logit_delta=0.0, formats=("torchscript", "onnx")
    )
    with pytest.raises(GateError, match=r"teacher-fp32-onnx: max \|Δlogit\|.*max_fp32_logit_delta"):
        build("mnist", tmp_path, recipe=recipe, epochs=1, limit=100, progress=False)
    assert layout.list_models(tmp_path) == {}


def test_each_compressed_variant_names_its_method_and_lineage(tiny_registry: Path) -> None:
    def card(variant: str) -> Any:
        return layout.latest(tiny_registry, f"mnist-{variant}").card

    teacher, student, pruned = "mnist-teacher-fp32", "mnist-student-fp32", "mnist-student-pruned-fp32"
    assert card("student-fp32").compression.method == "distillation"
    assert card("student-pruned-fp32").lineage == [teacher, student]
    pruning = card("student-pruned-fp32").compression
    assert pruning.method == "l1-filter-pruning" and pruning.hyperparameters["sparsity"] == 0.5
    assert pruning.hyperparameters["widths"] == [16, 32, 32]
    for variant in ("student-pruned-int8-x86", "student-pruned-int8-onnx", "student-pruned-int8-openvino"):
        assert card(variant).lineage == [teacher, student, pruned], variant
        assert card(variant).quantization is not None and card(variant).compression is None
    assert card("student-pruned-fp32").metrics["parameters"] <= card("student-fp32").metrics["parameters"] / 2
    qat = card("student-qat-int8-onnx")
    assert qat.compression.method == "quantization-aware-training" and qat.precision == "int8"
    assert qat.lineage == ["mnist-teacher-fp32-onnx", "mnist-student-fp32-onnx"]
    assert qat.metrics["agreement_with_fp32_parent"] >= 0.95  # its gate: the export against the in-memory QAT
