"""Hinton knowledge distillation: the loss as a pure function, and the loss closure for the training loop.

The teacher labels exactly the (augmented, possibly mixed) batch the student sees — function matching —
which is what lets longer, strongly augmented schedules keep transferring the teacher's knowledge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models.data import Split
from models.train import Batch, FitResult, LossFn, TrainConfig, fit


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, T: float, alpha: float
) -> torch.Tensor:
    """``alpha * T² * KL(softmax(t/T) ‖ softmax(s/T)) + (1 - alpha) * CE(s, y)``, KL averaged over the batch.

    T² keeps the soft term's gradient scale independent of the temperature (Hinton et al., 2015).
    """
    soft = F.kl_div(
        F.log_softmax(student_logits / T, dim=1),
        F.log_softmax(teacher_logits / T, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * T * T * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def distillation_loss(teacher: nn.Module, T: float, alpha: float) -> LossFn:
    """A loss for ``fit``: the teacher, in eval mode under inference_mode, labels the student's own batch."""
    teacher.eval()

    def loss(student: nn.Module, batch: Batch) -> torch.Tensor:
        with torch.inference_mode():
            teacher_logits = teacher(batch.inputs)
        # A normal tensor: inference tensors cannot be saved for backward.
        teacher_logits = teacher_logits.clone()
        return batch_kd_loss(student(batch.inputs), teacher_logits, batch, T, alpha)

    return loss


def batch_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch: Batch, T: float, alpha: float
) -> torch.Tensor:
    """``kd_loss`` on a batch, mixed like its targets when the batch is a mixup."""
    value = kd_loss(student_logits, teacher_logits, batch.targets, T, alpha)
    if batch.lam < 1.0:
        mixed = kd_loss(student_logits, teacher_logits, batch.mixed_targets, T, alpha)
        value = batch.lam * value + (1 - batch.lam) * mixed
    return value


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    *,
    T: float,
    alpha: float,
    progress: bool = True,
) -> FitResult:
    return fit(
        student,
        train,
        validation,
        config,
        loss_fn=distillation_loss(teacher, T, alpha),
        name="student-kd",
        progress=progress,
    )
