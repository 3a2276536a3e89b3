from __future__ import annotations

import math

import pytest
import torch

from models.distill import kd_loss


def _hand_kd(student: list[float], teacher: list[float], label: int, T: float, alpha: float) -> float:
    def softmax(z: list[float]) -> list[float]:
        exps = [math.exp(v) for v in z]
        return [e / sum(exps) for e in exps]

    p_t = softmax([v / T for v in teacher])
    p_s = softmax([v / T for v in student])
    kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    ce = -math.log(softmax(student)[label])
    return alpha * T * T * kl + (1 - alpha) * ce


@pytest.mark.parametrize(("T", "alpha"), [(1.0, 0.5), (4.0, 0.5), (2.0, 0.9), (3.0, 0.0), (5.0, 1.0)])
def test_kd_loss_matches_a_hand_computation(T: float, alpha: float) -> None:
    students = [[1.0, 2.0, 0.5], [0.1, -1.0, 3.0]]
    teachers = [[2.0, 1.0, 0.0], [0.0, 0.5, 2.5]]
    labels = [1, 2]
    expected = (
        sum(_hand_kd(s, t, y, T, alpha) for s, t, y in zip(students, teachers, labels, strict=True)) / 2
    )
    actual = kd_loss(torch.tensor(students), torch.tensor(teachers), torch.tensor(labels), T, alpha)
    assert float(actual) == pytest.approx(expected, rel=1e-5)


def test_soft_term_is_scaled_by_t_squared() -> None:
    student, teacher, labels = (
        torch.tensor([[1.0, 0.0, -1.0]]),
        torch.tensor([[0.0, 1.0, 0.0]]),
        torch.tensor([0]),
    )
    soft = {T: float(kd_loss(student, teacher, labels, T, 1.0)) for T in (2.0, 4.0)}
    kl = {T: _hand_kd([1.0, 0.0, -1.0], [0.0, 1.0, 0.0], 0, T, 1.0) / T**2 for T in (2.0, 4.0)}
    assert soft[2.0] == pytest.approx(4 * kl[2.0], rel=1e-5)
    assert soft[4.0] == pytest.approx(16 * kl[4.0], rel=1e-5)


def test_identical_logits_leave_only_the_hard_term() -> None:
    logits, labels = torch.randn(8, 10, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert float(kd_loss(logits, logits, labels, 4.0, 0.5)) == pytest.approx(0.5 * float(ce), rel=1e-5)


def test_gradient_flows_to_the_student_only() -> None:
    student = torch.randn(4, 10, requires_grad=True)
    teacher = torch.randn(4, 10)
    kd_loss(student, teacher, torch.tensor([0, 1, 2, 3]), 4.0, 0.5).backward()
    assert student.grad is not None and teacher.grad is None
