"""Each deprecated torch API stays behind one module, and the test configuration fails any new use elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from contract import torchscript

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contract", "models", "service", "benchmarks", "loadtests")
LEGACY = {
    "torch.jit": (re.compile(r"torch\.jit\.\w+\("), {"contract/torchscript.py"}),
    "torch.ao.quantization": (re.compile(r"torch\.ao\.quantization"), {"models/quantize.py"}),
}


@pytest.mark.parametrize("api", LEGACY)
def test_each_legacy_api_is_used_by_one_module_only(api: str) -> None:
    pattern, allowed = LEGACY[api]
    users = {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if any(
            pattern.search(line)
            for line in path.read_text().splitlines()
            if not line.lstrip().startswith(("#", "``"))
        )
    }
    assert users == allowed


def test_a_new_torch_jit_use_fails_under_the_test_configuration(tiny_registry: Path) -> None:
    path = tiny_registry / "mnist-student-fp32" / "1" / "model.pt"
    with pytest.raises(DeprecationWarning, match=r"torch\.jit\.load"):
        torch.jit.load(str(path))
    assert torchscript.load(path) is not None  # the one module that may, may
