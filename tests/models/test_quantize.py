from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contract import torchscript
from contract.engines import EngineError, check_engine_supported, use_engine


def _logits(directory: Path, images: np.ndarray, engine: str | None) -> torch.Tensor:
    with use_engine(engine), torch.inference_mode():
        return torchscript.load(directory / "model.pt")(torch.from_numpy(images))


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_int8_outputs_stay_close_to_fp32_on_real_digits(
    tiny_registry: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray], engine: str
) -> None:
    images, _ = mnist_test_digits
    fp32 = _logits(tiny_registry / "mnist-student-fp32" / "1", images, None)
    int8 = _logits(tiny_registry / f"mnist-student-int8-{engine}" / "1", images, engine)
    agreement = float((fp32.argmax(1) == int8.argmax(1)).float().mean())
    assert agreement >= 0.9
    spread = float(fp32.max() - fp32.min())
    assert float((fp32 - int8).abs().max()) <= 0.1 * spread


@pytest.mark.parametrize(("saved", "running"), [("x86", "qnnpack"), ("qnnpack", "x86"), ("x86", "fbgemm")])
def test_int8_model_runs_under_another_engine_with_near_identical_outputs(
    tiny_registry: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray], saved: str, running: str
) -> None:
    """The fact recorded in models/quantize.py's docstring, kept true by this test."""
    images, _ = mnist_test_digits
    directory = tiny_registry / f"mnist-student-int8-{saved}" / "1"
    native = _logits(directory, images, saved)
    foreign = _logits(directory, images, running)
    assert float((native.argmax(1) == foreign.argmax(1)).float().mean()) >= 0.97
    assert float((native - foreign).abs().max()) <= 0.05 * float(native.max() - native.min())


def test_unsupported_engine_is_refused_clearly() -> None:
    check_engine_supported("x86")
    with pytest.raises(EngineError, match=r"'tpu'.*supported: .*x86"):
        check_engine_supported("tpu")


def test_use_engine_restores_the_previous_engine() -> None:
    before = torch.backends.quantized.engine
    with use_engine("qnnpack"):
        assert torch.backends.quantized.engine == "qnnpack"
    assert torch.backends.quantized.engine == before
    with pytest.raises(RuntimeError), use_engine("qnnpack"):
        raise RuntimeError("boom")
    assert torch.backends.quantized.engine == before
