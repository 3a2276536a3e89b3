"""Structured L1 filter pruning: the weakest filters (and hidden units) are removed, not zeroed.

Li et al. (2017) rank a convolution's filters by the L1 norm of their weights and drop the smallest; the
next layer loses the matching input channels. Doing it physically gives a smaller *dense* network: fewer
parameters, fewer bytes and fewer FLOPs in every runtime, where zeroed weights (unstructured pruning) buy
nothing without sparse kernels. The same rule prunes a hidden Linear layer's units; the output layer
keeps its width.

The network must be a chain: its ``nn.Sequential`` children run in order, each layer feeding the next
(``ConvNet`` is one). Anything else is refused with a ``PruningError``, checked by running the chain
against the network itself.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TypeVar

import torch
from torch import nn

from models.data import Split
from models.distill import distill
from models.recipes import RecipeError
from models.train import FitResult, TrainConfig

PASS_THROUGH = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Dropout, nn.Identity)
SCHEDULES = ("one-shot", "iterative")


class PruningError(RecipeError):
    """A sparsity, schedule or network that cannot be pruned; the message names the spec field."""


def check_sparsity(sparsity: float) -> float:
    if not 0.0 < sparsity < 1.0:
        raise PruningError(
            f"compression.pruning.sparsity: must be between 0 and 1 (exclusive), got {sparsity}"
        )
    return sparsity


def check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise PruningError(
            f"compression.pruning.schedule: unknown schedule {schedule!r} (known: {', '.join(SCHEDULES)})"
        )
    return schedule


def l1_ranking(weight: torch.Tensor) -> torch.Tensor:
    """Output units (filters, rows) from the largest L1 norm to the smallest; ties keep index order."""
    norms = weight.detach().abs().flatten(1).sum(1)
    return torch.argsort(norms, descending=True, stable=True)


def kept_units(weight: torch.Tensor, keep: int | None) -> torch.Tensor:
    """The strongest ``keep`` output units, or all of them when the layer has no target (the output layer)."""
    return torch.arange(weight.shape[0]) if keep is None else strongest(weight, keep)


def strongest(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` units with the largest L1 norms, in their original order."""
    return torch.sort(l1_ranking(weight)[:keep]).values


def leaf_chain(net: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """Each leaf layer as (its Sequential, its index), in the order the chain runs them."""
    chain: list[tuple[nn.Sequential, int]] = []
    for child in net.children():
        if not isinstance(child, nn.Sequential):
            raise PruningError(
                f"student.architecture: {type(net).__name__} cannot be pruned: it must be a chain of "
                f"nn.Sequential blocks, and has a {type(child).__name__}"
            )
        chain.extend((child, index) for index in range(len(child)))
    return chain


@torch.no_grad()
def check_is_chain(net: nn.Module, example: torch.Tensor) -> None:
    """Running the leaves in order must give the network's own output, or pruning would change its meaning."""
    was_training = net.training
    net.eval()
    x = example
    for block, index in leaf_chain(net):
        x = block[index](x)
    same = torch.allclose(x, net(example), atol=1e-5)
    net.train(was_training)
    if not same:
        raise PruningError(
            f"student.architecture: {type(net).__name__} cannot be pruned: its forward is not the chain of "
            "its nn.Sequential blocks"
        )


Layer = TypeVar("Layer", nn.Conv2d, nn.Linear)


def _copy_weights(new: Layer, old: Layer, inputs: torch.Tensor, outputs: torch.Tensor) -> Layer:
    new.weight.data = old.weight.data[outputs][:, inputs].clone()
    if old.bias is not None and new.bias is not None:
        new.bias.data = old.bias.data[outputs].clone()
    return new


def _sliced_conv(conv: nn.Conv2d, inputs: torch.Tensor, outputs: torch.Tensor) -> nn.Conv2d:
    if conv.groups != 1:
        raise PruningError("student.architecture: grouped convolutions cannot be pruned")
    new = nn.Conv2d(
        len(inputs), len(outputs), conv.kernel_size, conv.stride, conv.padding, conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None, padding_mode=conv.padding_mode,
    )  # fmt: skip
    return _copy_weights(new, conv, inputs, outputs)


def _sliced_linear(linear: nn.Linear, inputs: torch.Tensor, outputs: torch.Tensor) -> nn.Linear:
    return _copy_weights(
        nn.Linear(len(inputs), len(outputs), bias=linear.bias is not None), linear, inputs, outputs
    )


def _sliced_batchnorm(norm: nn.BatchNorm2d, kept: torch.Tensor) -> nn.BatchNorm2d:
    new = nn.BatchNorm2d(len(kept), norm.eps, norm.momentum, norm.affine, norm.track_running_stats)
    for name in ("weight", "bias", "running_mean", "running_var"):
        value = getattr(norm, name)
        if value is not None:
            getattr(new, name).data = value.data[kept].clone()
    return new


def hidden_widths(net: nn.Module) -> list[int]:
    """Output width of every conv and hidden Linear, in chain order (the output layer is not counted)."""
    widths = []
    for block, index in leaf_chain(net):
        layer = block[index]
        if isinstance(layer, nn.Conv2d):
            widths.append(layer.out_channels)
        elif isinstance(layer, nn.Linear):
            widths.append(layer.out_features)
    return widths[:-1]


def schedule_widths(original: list[int], sparsity: float, schedule: str, steps: int = 3) -> list[list[int]]:
    """The widths after each pruning step: one step to the target, or ``steps`` geometric steps to it."""
    check_sparsity(sparsity)
    count = 1 if check_schedule(schedule) == "one-shot" else steps
    return [
        [max(1, round(width * (1.0 - sparsity) ** (step / count))) for width in original]
        for step in range(1, count + 1)
    ]


@torch.no_grad()
def prune_to_widths(net: nn.Module, widths: list[int], example: torch.Tensor) -> nn.Module:
    """A pruned copy: every conv and hidden Linear keeps its ``widths[i]`` strongest units by L1 norm.

    ``example`` is one input batch, used to check the network is a chain. Unchanged widths give an equal copy.
    """
    pruned = copy.deepcopy(net)
    check_is_chain(pruned, example)
    if len(widths) != len(hidden_widths(pruned)):
        raise ValueError(f"{len(widths)} widths for {len(hidden_widths(pruned))} prunable layers")
    chain = leaf_chain(pruned)
    producers = [
        i for i, (block, index) in enumerate(chain) if isinstance(block[index], nn.Conv2d | nn.Linear)
    ]
    targets = dict(zip(producers, widths, strict=False))  # the output layer has no target: it keeps its width
    kept: torch.Tensor | None = None  # channels (or features) the previous producer kept
    width = 0  # how many channels the previous producer had before pruning
    flattened = False
    for position, (block, index) in enumerate(chain):
        layer = block[index]
        if isinstance(layer, nn.Conv2d):
            inputs = torch.arange(layer.in_channels) if kept is None else kept
            outputs = kept_units(layer.weight, targets.get(position))
            block[index], kept, width = _sliced_conv(layer, inputs, outputs), outputs, layer.out_channels
        elif isinstance(layer, nn.Linear):
            if kept is None:
                inputs = torch.arange(layer.in_features)
            elif flattened:  # each kept channel brings its whole feature map: in_features / channels columns
                per_channel = layer.in_features // width
                inputs = (kept[:, None] * per_channel + torch.arange(per_channel)[None, :]).flatten()
            else:
                inputs = kept
            outputs = kept_units(layer.weight, targets.get(position))
            block[index], kept, width = _sliced_linear(layer, inputs, outputs), outputs, layer.out_features
            flattened = False
        elif isinstance(layer, nn.BatchNorm2d):
            if kept is not None:
                block[index] = _sliced_batchnorm(layer, kept)
        elif isinstance(layer, nn.Flatten):
            flattened = True
        elif not isinstance(layer, PASS_THROUGH):
            raise PruningError(
                f"student.architecture: a {type(layer).__name__} layer cannot be pruned "
                "(known: Conv2d, Linear, BatchNorm2d, ReLU, pooling, Dropout, Flatten)"
            )
    return pruned


def prune_and_finetune(
    student: nn.Module,
    teacher: nn.Module,
    train: Split,
    validation: Split,
    config: TrainConfig,
    *,
    sparsity: float,
    schedule: str,
    steps: int,
    T: float,
    alpha: float,
    progress: bool = True,
) -> tuple[nn.Module, list[FitResult]]:
    """Prune ``student`` to ``1 - sparsity`` of its widths, fine-tuning with KD after each step.

    One-shot spends the whole fine-tuning budget (``config.epochs``) after one cut; iterative splits it
    evenly over ``steps`` smaller cuts, which lets the network recover between them.
    """
    plan = schedule_widths(hidden_widths(student), sparsity, schedule, steps)
    epochs = max(1, config.epochs // len(plan))
    example = config.normalise(torch.from_numpy(train.images[:2]))
    net, results = student, []
    for number, widths in enumerate(plan, start=1):
        net = prune_to_widths(net, widths, example)
        step_config = dataclasses.replace(config, epochs=epochs, seed=config.seed + number)
        results.append(
            distill(net, teacher, train, validation, step_config, T=T, alpha=alpha, progress=progress)
        )
    return net, results
