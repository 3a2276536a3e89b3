"""Feature distillation (FitNets hints): besides the logits, the student matches a teacher feature map.

Romero et al. (2015) regress an intermediate student layer onto the teacher's through a small adapter.
Here the adapter is a 1x1 convolution from the student's channels to the teacher's, trained with the
student and dropped afterwards, so the served network is exactly the student architecture. The loss is
Hinton's logit KD plus ``beta`` times the mean squared error between adapted student and teacher features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.data import Split
from models.distill import batch_kd_loss, kd_loss
from models.recipes import RecipeError
from models.train import Batch, FitResult, LossFn, TrainConfig, fit


class HintError(RecipeError):
    """A hint layer that does not exist or whose feature maps cannot be matched; names the recipe field."""


def named_layer(net: nn.Module, name: str, role: str) -> nn.Module:
    layers = dict(net.named_modules())
    if not name or name not in layers:
        known = ", ".join(n for n in layers if n) or "(none)"
        raise HintError(f"training.hint_layer: the {role} has no layer {name!r} (known: {known})")
    return layers[name]


class FeatureTap:
    """Keeps the latest output of one layer (a forward hook), for the loss to read after a forward pass."""

    def __init__(self, layer: nn.Module) -> None:
        self.output: torch.Tensor | None = None
        self._handle = layer.register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: object, output: torch.Tensor) -> None:
        self.output = output

    def take(self) -> torch.Tensor:
        if self.output is None:
            raise RuntimeError("the hint layer did not run")
        output, self.output = self.output, None
        return output

    def remove(self) -> None:
        self._handle.remove()


class HintedStudent(nn.Module):
    """The student and its adapter as one module, so the training loop optimises and checkpoints both."""

    def __init__(self, student: nn.Module, adapter: nn.Module) -> None:
        super().__init__()
        self.student = student
        self.adapter = adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


def hint_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    adapted_features: torch.Tensor,
    teacher_features: torch.Tensor,
    *,
    T: float,
    alpha: float,
    beta: float,
) -> torch.Tensor:
    """``kd_loss + beta * mean((adapter(student feature) - teacher feature)^2)``."""
    return kd_loss(student_logits, teacher_logits, labels, T, alpha) + beta * F.mse_loss(
        adapted_features, teacher_features
    )


@torch.no_grad()
def make_adapter(student: nn.Module, teacher: nn.Module, layer: str, example: torch.Tensor) -> nn.Module:
    """A 1x1 conv (or a Linear, for flat features) from the student's hint width to the teacher's."""
    shapes = []
    for net, role in ((student, "student"), (teacher, "teacher")):
        tap = FeatureTap(named_layer(net, layer, role))
        was_training = net.training
        net.eval()
        net(example)
        net.train(was_training)
        shapes.append(tuple(tap.take().shape[1:]))
        tap.remove()
    (student_shape, teacher_shape) = shapes
    if len(student_shape) != len(teacher_shape) or student_shape[1:] != teacher_shape[1:]:
        raise HintError(
            f"training.hint_layer: {layer!r} gives student features {student_shape} and teacher features "
            f"{teacher_shape}; they must differ only in channels"
        )
    if len(student_shape) == 3:
        return nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1)
    return nn.Linear(student_shape[0], teacher_shape[0])


def distill_with_hints(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    *,
    layer: str,
    T: float,
    alpha: float,
    beta: float,
    progress: bool = True,
) -> FitResult:
    """Train ``student`` in place with logit KD plus hints at ``layer`` (a module name in both networks)."""
    example = config.normalise(torch.from_numpy(train.images[:2]))
    hinted = HintedStudent(student, make_adapter(student, teacher, layer, example))
    student_tap = FeatureTap(named_layer(student, layer, "student"))
    teacher_tap = FeatureTap(named_layer(teacher, layer, "teacher"))
    teacher.eval()

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.inference_mode():
            teacher_logits = teacher(batch.inputs)
        # normal tensors: inference tensors cannot be saved for backward
        teacher_logits, teacher_features = teacher_logits.clone(), teacher_tap.take().clone()
        student_logits = model(batch.inputs)
        features = F.mse_loss(hinted.adapter(student_tap.take()), teacher_features)
        return batch_kd_loss(student_logits, teacher_logits, batch, T, alpha) + beta * features

    loss_fn: LossFn = loss
    try:
        return fit(
            hinted, train, validation, config, loss_fn=loss_fn, name="student-hints", progress=progress
        )
    finally:
        student_tap.remove()
        teacher_tap.remove()
