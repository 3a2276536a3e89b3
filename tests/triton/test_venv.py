"""The Triton venv: a venv that cannot be made fails the tests loudly instead of skipping them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.triton.conftest import triton_install


def test_a_venv_that_cannot_be_made_fails_loudly(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"triton-venv\.sh failed \(exit 1\)") as failure:
        triton_install(tmp_path / "venv", python="false")
    assert "cannot create a virtualenv" in str(failure.value)
