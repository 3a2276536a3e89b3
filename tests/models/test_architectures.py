from __future__ import annotations

import pytest
import torch

from models import architectures
from models.architectures import ArchitectureError, Preprocess, count_parameters, normalise


def test_student_is_several_times_smaller_than_the_teacher() -> None:
    teacher, student = count_parameters(architectures.teacher()), count_parameters(architectures.student())
    assert 800_000 <= teacher <= 1_200_000
    assert 100_000 <= student <= 140_000
    assert teacher / student >= 5


def test_preprocess_normalises_raw_pixels() -> None:
    net = torch.nn.Identity()
    raw = torch.tensor([0.0, 255.0])
    out = Preprocess(net)(raw)
    assert torch.allclose(out, torch.tensor([-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]))
    assert torch.equal(out, normalise(raw))


def test_resolve_by_import_path() -> None:
    assert architectures.resolve("models.architectures:student") is architectures.student
    model = architectures.build("models.architectures:teacher")
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("models.architectures", "expected 'package.module:factory'"),
        ("models.nope:student", "cannot import models.nope"),
        ("models.architectures:nope", "no callable 'nope'"),
        ("models.architectures:MNIST_MEAN", "no callable"),
        ("builtins:dict", "returned dict, not nn.Module"),
    ],
)
def test_unresolvable_architectures_are_clear_errors(reference: str, message: str) -> None:
    with pytest.raises(ArchitectureError, match=message):
        architectures.build(reference)
