from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models import registry
from models.pipeline import build, variants
from models.quantize import use_engine
from models.recipes import default_recipe

CARD_KEYS = {
    "family", "variant", "name", "version", "precision", "quantization", "architecture", "hyperparameters",
    "parent", "dataset", "recipe_digest", "seed", "metrics", "signature", "labels", "max_batch_size", "files",
    "torch_version", "created_at",
}  # fmt: skip
METRIC_KEYS = {
    "accuracy", "nll", "agreement_with_teacher", "parameters", "bytes",
    "latency_p50_batch1_seconds", "throughput_batch32_per_second",
}  # fmt: skip
NAMES = [f"mnist-{v}" for v in variants(default_recipe("mnist"))]


def test_registry_holds_all_five_variants(tiny_registry: Path) -> None:
    assert sorted(registry.list_models(tiny_registry)) == sorted(NAMES)
    assert len(NAMES) == 5


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_loads_and_has_a_complete_card(
    tiny_registry: Path, name: str, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    directory = tiny_registry / name / "1"
    card = registry.verify(directory)
    assert set(card) == CARD_KEYS
    assert set(card["metrics"]) == METRIC_KEYS
    assert card["name"] == name and card["version"] == 1 and card["family"] == "mnist"
    assert card["labels"] == [str(i) for i in range(10)] and card["max_batch_size"] == 64
    assert card["dataset"]["sizes"] == {"train": 3500, "validation": 500, "test": 1000}
    assert card["files"]["model.pt"] == registry.sha256_file(directory / "model.pt")
    assert card["metrics"]["bytes"] == (directory / "model.pt").stat().st_size
    int8 = "int8" in name
    assert card["precision"] == ("int8" if int8 else "fp32")
    assert (card["quantization"] is not None) == int8
    if int8:
        assert card["quantization"]["engine"] in name and card["quantization"]["method"] == "static"
        assert card["parent"] == {"name": "mnist-student-fp32", "version": 1}
    images, _ = mnist_test_digits
    module = registry.load_torchscript(directory)
    with use_engine(registry.card_engine(card)), torch.inference_mode():
        logits = module(torch.from_numpy(images[:5]))
    assert logits.shape == (5, 10) and logits.dtype == torch.float32
    config = (tiny_registry / name / "config.pbtxt").read_text()
    assert f'name: "{name}"' in config and 'platform: "pytorch_libtorch"' in config


def test_teacher_and_scratch_have_no_parent(tiny_registry: Path) -> None:
    for name in ("mnist-teacher-fp32", "mnist-student-scratch-fp32"):
        assert registry.read_card(tiny_registry / name / "1")["parent"] is None
    assert (
        registry.read_card(tiny_registry / "mnist-student-fp32" / "1")["parent"]["name"]
        == "mnist-teacher-fp32"
    )


@pytest.mark.slow
def test_rebuild_is_a_no_op_unless_forced(tiny_registry: Path, tmp_path: Path) -> None:
    root = tmp_path / "registry"
    shutil.copytree(tiny_registry, root)
    again = build("mnist", root, epochs=1, limit=600, progress=False)
    assert again.up_to_date
    assert all(v.version == 1 for v in again.variants)
    assert registry.list_models(root) == {name: [1] for name in NAMES}
    forced = build("mnist", root, epochs=1, limit=600, progress=False, force=True)
    assert not forced.up_to_date
    assert registry.list_models(root) == {name: [1, 2] for name in NAMES}
    int8 = registry.read_card(root / "mnist-student-int8-x86" / "2")
    assert int8["parent"] == {"name": "mnist-student-fp32", "version": 2}
    assert "| student-int8-x86 | 2 |" in forced.table()
