from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from contract import torchscript
from models import architectures
from models.export import export_torchscript
from models.quantize import quantize_dynamic_linear
from models.recipes import RecipeError, default_recipe
from models.train import TrainConfig, make_batch, shift_images


def test_recipe_digest_covers_fields_and_data() -> None:
    recipe = default_recipe("mnist")
    digest = recipe.digest("data", "split")
    assert digest == default_recipe("mnist").digest("data", "split")
    assert digest != recipe.with_overrides(epochs=1).digest("data", "split")
    assert digest != dataclasses.replace(recipe, kd_alpha=0.1).digest("data", "split")
    assert digest != recipe.digest("other data", "split")
    assert digest != recipe.digest("data", "other split")


def test_recipe_overrides_and_errors() -> None:
    fast = default_recipe("mnist").with_overrides(epochs=2, limit=100, seed=7)
    assert (fast.teacher_epochs, fast.student_epochs, fast.limit, fast.seed) == (2, 2, 100, 7)
    assert fast.calibration_samples == 100
    assert default_recipe("mnist").max_batch_size == 64
    with pytest.raises(RecipeError, match="unknown family"):
        default_recipe("cifar")
    with pytest.raises(RecipeError, match="epochs"):
        default_recipe("mnist").with_overrides(epochs=0)


def test_shift_images_translates_within_bounds() -> None:
    image = torch.zeros(1, 1, 28, 28)
    image[0, 0, 14, 14] = 255.0
    shifted = shift_images(image.repeat(64, 1, 1, 1), 2, torch.Generator().manual_seed(0))
    positions = {tuple(torch.nonzero(s[0]).tolist()[0]) for s in shifted}
    assert len(positions) > 5
    assert all(12 <= r <= 16 and 12 <= c <= 16 for r, c in positions)
    assert torch.equal(shift_images(image, 0, torch.Generator()), image)
    assert float(shifted.sum()) == 64 * 255.0


def test_mixup_batch_mixes_inputs_and_targets() -> None:
    config = TrainConfig(1, 8, 1e-3, 0.0, 1, shift_pixels=0, mixup_alpha=0.4, seed=0)
    images, labels = torch.rand(8, 1, 28, 28) * 255, torch.arange(8)
    batch = make_batch(images, labels, config, torch.Generator().manual_seed(0), np.random.default_rng(0))
    assert 0.0 <= batch.lam <= 1.0
    assert torch.equal(batch.targets, labels) and sorted(batch.mixed_targets.tolist()) == list(range(8))
    no_mixup = dataclasses.replace(config, mixup_alpha=0.0)
    plain = make_batch(images, labels, no_mixup, torch.Generator(), np.random.default_rng(0))
    assert plain.lam == 1.0 and torch.allclose(plain.inputs, architectures.normalise(images))


def test_dynamic_int8_exports_and_stays_close(
    tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    torch.manual_seed(0)
    student = architectures.student().eval()
    images = torch.from_numpy(mnist_test_digits[0][:16])
    dynamic = quantize_dynamic_linear(student, "x86")
    export_torchscript(dynamic, tmp_path / "model.pt", images, engine="x86")
    with torch.inference_mode():
        reference = architectures.Preprocess(student)(images)
        loaded = torchscript.load(tmp_path / "model.pt")(images)
    assert float((reference - loaded).abs().max()) < 0.05 * float(reference.max() - reference.min())
