"""Structured pruning, feature distillation and quantization-aware training, each against a hand check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from models.architectures import normalise, student, teacher
from models.artifacts import SIGNATURE
from models.data import Split
from models.export import export_onnx
from models.hints import HintError, hint_loss, make_adapter
from models.pareto import Point, dominated_by, frontier, plot
from models.prune import (
    PruningError,
    check_sparsity,
    hidden_widths,
    l1_ranking,
    prune_to_widths,
    schedule_widths,
    strongest,
)
from models.qat import quantization_aware_training
from models.train import TrainConfig

EXAMPLE = torch.rand(4, 1, 28, 28) * 3 - 1  # normalised pixels, what the bare networks take


def seeded(factory: object, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = factory()  # type: ignore[operator]
    assert isinstance(net, nn.Module)
    return net.eval()


def layer(net: nn.Module, name: str) -> Any:
    return dict(net.named_modules())[name]


def test_l1_ranking_on_a_hand_built_layer() -> None:
    conv = nn.Conv2d(1, 4, 2, bias=False)
    with torch.no_grad():  # L1 norms 4, 8, 1, 8: the tie keeps index order
        conv.weight.copy_(torch.tensor([1.0, 2.0, 0.25, -2.0])[:, None, None, None] * torch.ones(4, 1, 2, 2))
    assert l1_ranking(conv.weight).tolist() == [1, 3, 0, 2]
    assert strongest(conv.weight, 2).tolist() == [1, 3]  # kept in their original order


def test_an_unpruned_copy_computes_exactly_what_the_original_does() -> None:
    net = seeded(student)
    copy = prune_to_widths(net, hidden_widths(net), EXAMPLE)
    assert copy is not net
    torch.testing.assert_close(copy(EXAMPLE), net(EXAMPLE), rtol=0, atol=0)


def test_pruning_keeps_the_network_consistent_and_the_kept_filters_unchanged() -> None:
    net = seeded(student)
    assert hidden_widths(net) == [32, 64, 64]
    pruned = prune_to_widths(net, [16, 32, 32], EXAMPLE)
    conv1, conv2 = layer(pruned, "features.0"), layer(pruned, "features.3")
    hidden, output = layer(pruned, "classifier.2"), layer(pruned, "classifier.5")
    assert (conv1.out_channels, conv2.in_channels, conv2.out_channels) == (16, 16, 32)
    assert (hidden.in_features, hidden.out_features, output.in_features, output.out_features) == (
        32 * 25,
        32,
        32,
        10,
    )
    assert pruned(EXAMPLE).shape == (4, 10)
    kept = strongest(layer(net, "features.0").weight, 16)
    first_block = layer(pruned, "features")[:2](EXAMPLE)
    torch.testing.assert_close(first_block, layer(net, "features")[:2](EXAMPLE)[:, kept])
    params = sum(p.numel() for p in pruned.parameters())
    assert params < sum(p.numel() for p in net.parameters()) / 2


def test_a_pruned_network_whose_removed_units_were_dead_computes_the_same() -> None:
    """Zero filters carry no signal: removing them must leave the logits exactly as they were."""
    net = seeded(student)
    with torch.no_grad():
        for name in ("features.0", "features.3", "classifier.2"):
            layer(net, name).weight[1::2] = 0
            layer(net, name).bias[1::2] = 0
    pruned = prune_to_widths(net, [16, 32, 32], EXAMPLE)
    torch.testing.assert_close(pruned(EXAMPLE), net(EXAMPLE), rtol=1e-5, atol=1e-5)


def test_schedules_end_at_the_same_widths() -> None:
    assert schedule_widths([32, 64, 64], 0.5, "one-shot") == [[16, 32, 32]]
    steps = schedule_widths([32, 64, 64], 0.5, "iterative", steps=3)
    assert len(steps) == 3 and steps[-1] == [16, 32, 32]
    assert steps[0][0] > steps[1][0] > steps[2][0]


@pytest.mark.parametrize("sparsity", [0.0, 1.0, -0.1, 1.5, math.nan])
def test_a_sparsity_outside_zero_one_names_the_field(sparsity: float) -> None:
    with pytest.raises(PruningError, match=r"compression.pruning.sparsity: must be between 0 and 1"):
        check_sparsity(sparsity)


def test_an_unknown_schedule_names_the_field() -> None:
    with pytest.raises(PruningError, match=r"compression.pruning.schedule: unknown schedule 'greedy'"):
        schedule_widths([8], 0.5, "greedy")


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class WithGroupNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.Linear(4 * 26 * 26, 3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class NotSequential(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.mark.parametrize("net", [Residual(), NotSequential()], ids=["residual", "not-sequential"])
def test_an_architecture_that_cannot_be_pruned_names_the_field(net: nn.Module) -> None:
    with pytest.raises(PruningError, match=r"student.architecture: .* cannot be pruned"):
        prune_to_widths(net, [2], EXAMPLE)


def test_an_unknown_layer_kind_names_the_field() -> None:
    with pytest.raises(PruningError, match=r"student.architecture: a GroupNorm layer cannot be pruned"):
        prune_to_widths(WithGroupNorm().eval(), [2], EXAMPLE)


def test_hint_loss_against_a_hand_computation() -> None:
    student_logits = torch.tensor([[2.0, 0.0, -1.0]])
    teacher_logits = torch.tensor([[1.0, 1.0, 0.0]])
    labels = torch.tensor([0])
    adapted, target = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    T, alpha, beta = 2.0, 0.25, 0.5

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max())
        return np.asarray(e / e.sum())

    p_teacher, p_student = softmax(np.array([1.0, 1.0, 0.0]) / T), softmax(np.array([2.0, 0.0, -1.0]) / T)
    kl = float(np.sum(p_teacher * np.log(p_teacher / p_student)))
    ce = -math.log(softmax(np.array([2.0, 0.0, -1.0]))[0])
    mse = ((1.0 - 0.0) ** 2 + (2.0 - 4.0) ** 2) / 2
    expected = alpha * T * T * kl + (1 - alpha) * ce + beta * mse
    value = hint_loss(student_logits, teacher_logits, labels, adapted, target, T=T, alpha=alpha, beta=beta)
    assert float(value) == pytest.approx(expected, rel=1e-6)


def test_the_adapter_maps_student_features_onto_the_teachers() -> None:
    adapter = make_adapter(seeded(student), seeded(teacher), "features", EXAMPLE)
    assert isinstance(adapter, nn.Conv2d)
    assert (adapter.in_channels, adapter.out_channels, adapter.kernel_size) == (64, 128, (1, 1))
    with pytest.raises(HintError, match=r"training.hint_layer: the student has no layer 'trunk'"):
        make_adapter(seeded(student), seeded(teacher), "trunk", EXAMPLE)
    wider_kernel = nn.Module()
    wider_kernel.features = nn.Sequential(nn.Conv2d(1, 8, 5))  # 24x24 maps against the student's 26x26
    wider_kernel.forward = wider_kernel.features.forward
    with pytest.raises(
        HintError, match=r"training.hint_layer: 'features.0' gives student features \(32, 26, 26\)"
    ):
        make_adapter(seeded(student), wider_kernel, "features.0", EXAMPLE)


def test_the_qat_export_reproduces_its_in_memory_model(
    tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits
    train = Split(images[:80].copy(), labels[:80].copy())
    config = TrainConfig(epochs=1, batch_size=32, lr=1e-4, weight_decay=0.0, patience=1, shift_pixels=0,
                         mixup_alpha=0.0, seed=0)  # fmt: skip
    converted, _ = quantization_aware_training(
        seeded(student), seeded(teacher), train, Split(images[80:].copy(), labels[80:].copy()), images[:64],
        config, T=4.0, alpha=0.5, progress=False,
    )  # fmt: skip
    with torch.no_grad():
        in_memory = converted(normalise(torch.from_numpy(images))).numpy()
    path = tmp_path / "model.onnx"
    export_onnx(converted, path, torch.from_numpy(images[:1]), SIGNATURE)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"INPUT__0": images})[0]
    assert "QuantizeLinear" in {node.op_type for node in onnx.load(str(path)).graph.node}
    np.testing.assert_allclose(exported, in_memory, atol=0.05 * float(np.abs(in_memory).max()))
    assert (exported.argmax(1) == in_memory.argmax(1)).mean() >= 0.98


def test_the_pareto_frontier_names_what_is_dominated(tmp_path: Path) -> None:
    points = [
        Point("teacher", 0.992, 0.40),
        Point("student", 0.990, 0.16),
        Point("int8", 0.990, 0.08),  # as accurate as the student and cheaper: dominates it
        Point("pruned-int8", 0.987, 0.05),
        Point("scratch", 0.985, 0.20),  # less accurate and dearer than int8
    ]
    assert dominated_by(points) == {"student": "int8", "scratch": "int8"}
    assert [p.variant for p in frontier(points)] == ["pruned-int8", "int8", "teacher"]
    plot({"latency (ms)": points, "bytes": points}, tmp_path / "pareto.png", title="test")
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
