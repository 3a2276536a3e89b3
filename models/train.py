"""The training loop shared by the teacher, the scratch student and the distilled student.

One loop with a pluggable loss keeps the scratch baseline honest: it gets exactly the same epochs,
augmentation, optimiser and early stopping as the distilled student, only without the teacher.
"""

from __future__ import annotations

import copy
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.architectures import normalise
from models.data import Split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """An augmented, normalised batch; with mixup the target is ``lam * targets + (1 - lam) * mixed_targets``."""

    inputs: torch.Tensor
    targets: torch.Tensor
    mixed_targets: torch.Tensor
    lam: float


LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    shift_pixels: int
    mixup_alpha: float
    seed: int
    normalise: Callable[[torch.Tensor], torch.Tensor] = normalise  # raw inputs to the network's scale


@dataclass
class FitResult:
    best_epoch: int
    epochs_run: int
    validation_accuracy: float
    history: list[dict[str, float]] = field(default_factory=list)


def shift_images(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by its own random (dy, dx) in [-max_shift, max_shift], filling with zeros."""
    if max_shift <= 0:
        return images
    n, _, height, width = images.shape
    padded = F.pad(images, (max_shift, max_shift, max_shift, max_shift))
    offsets = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    rows = torch.arange(height)[None, :] + offsets[0][:, None]
    cols = torch.arange(width)[None, :] + offsets[1][:, None]
    batch = torch.arange(n)[:, None, None]
    return padded[batch, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def make_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    rng: np.random.Generator,
) -> Batch:
    inputs = config.normalise(shift_images(images, config.shift_pixels, generator))
    if config.mixup_alpha <= 0:
        return Batch(inputs, labels, labels, 1.0)
    lam = float(rng.beta(config.mixup_alpha, config.mixup_alpha))
    perm = torch.randperm(len(labels), generator=generator)
    return Batch(lam * inputs + (1 - lam) * inputs[perm], labels, labels[perm], lam)


def cross_entropy_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    logits = model(batch.inputs)
    loss = F.cross_entropy(logits, batch.targets)
    if batch.lam < 1.0:
        loss = batch.lam * loss + (1 - batch.lam) * F.cross_entropy(logits, batch.mixed_targets)
    return loss


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: np.ndarray,
    *,
    batch_size: int = 500,
    raw: bool = True,
    normaliser: Callable[[torch.Tensor], torch.Tensor] = normalise,
) -> torch.Tensor:
    """Logits of a bare network (``raw=True`` normalises raw inputs first) in eval mode."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size])
        outputs.append(model(normaliser(x) if raw else x))
    model.train(was_training)
    return torch.cat(outputs)


def accuracy_and_nll(logits: torch.Tensor, labels: np.ndarray) -> tuple[float, float]:
    targets = torch.from_numpy(labels)
    accuracy = float((logits.argmax(1) == targets).float().mean())
    return accuracy, float(F.cross_entropy(logits, targets))


def fit(
    model: nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    *,
    loss_fn: LossFn = cross_entropy_loss,
    name: str = "model",
    progress: bool = True,
) -> FitResult:
    """AdamW with a cosine schedule; keeps the weights of the best validation epoch (accuracy, then NLL)."""
    generator = torch.Generator().manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    images, labels = torch.from_numpy(train.images), torch.from_numpy(train.labels)
    steps_per_epoch = math.ceil(len(labels) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15
    )
    show = progress and sys.stderr.isatty()
    best: tuple[float, float] = (-1.0, math.inf)
    best_state = copy.deepcopy(model.state_dict())
    result = FitResult(best_epoch=0, epochs_run=0, validation_accuracy=0.0)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        bar = tqdm(
            range(steps_per_epoch), desc=f"{name} {epoch}/{config.epochs}", leave=False, disable=not show
        )
        for step in bar:
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = make_batch(images[index], labels[index], config, generator, rng)
            loss = loss_fn(model, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            total += value * len(index)
            bar.set_postfix(loss=f"{value:.4f}")
        accuracy, nll = accuracy_and_nll(
            predict_logits(model, validation.images, normaliser=config.normalise), validation.labels
        )
        result.history.append({"epoch": epoch, "loss": total / len(labels), "accuracy": accuracy, "nll": nll})
        result.epochs_run = epoch
        improved = (accuracy, -nll) > (best[0], -best[1])
        if improved:
            best = (accuracy, nll)
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.validation_accuracy = epoch, accuracy
        log.info(
            "%s epoch %d/%d loss %.4f val_acc %.4f val_nll %.4f%s",
            name, epoch, config.epochs, total / len(labels), accuracy, nll, " *" if improved else "",
        )  # fmt: skip
        if epoch - result.best_epoch >= config.patience:
            log.info("%s: early stop after %d epochs (best %d)", name, epoch, result.best_epoch)
            break
    model.load_state_dict(best_state)
    model.eval()
    return result
