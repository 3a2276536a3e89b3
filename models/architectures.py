"""Network definitions, the in-model preprocessing wrapper, and resolution of ``package.module:factory``.

Networks use module-form activations and pooling (no in-place functional calls) so FX graph-mode static
quantization can trace, observe and fuse them. Normalisation lives in ``Preprocess`` outside the network,
so the int8 variant quantizes only the network while its input stays raw fp32 pixels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
NUM_CLASSES = 10


class ArchitectureError(Exception):
    """An architecture reference that does not resolve to a factory of ``nn.Module``."""


class ConvNet(nn.Module):
    """Two 3x3 conv blocks (conv, ReLU, 2x2 max-pool) then a hidden fully connected layer."""

    def __init__(self, conv1: int, conv2: int, hidden: int, dropout: float, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, conv1, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(conv1, conv2, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(conv2 * 5 * 5, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def teacher() -> nn.Module:
    """~0.9M parameters: conv64 -> conv128 -> fc256."""
    return ConvNet(64, 128, 256, dropout=0.3)


def student() -> nn.Module:
    """~120k parameters, about 7x fewer than the teacher: conv32 -> conv64 -> fc64."""
    return ConvNet(32, 64, 64, dropout=0.1)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Raw 0-255 pixels to the standardised scale the networks train on."""
    return x * (1.0 / (255.0 * MNIST_STD)) - MNIST_MEAN / MNIST_STD


class Preprocess(nn.Module):
    """Take raw 0-255 fp32 pixels [N,1,28,28] and normalise before the network, so clients send raw digits."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(normalise(x))


def resolve(reference: str) -> Callable[[], nn.Module]:
    """Resolve ``package.module:factory`` to a callable returning a fresh ``nn.Module``."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ArchitectureError(f"architecture {reference!r}: expected 'package.module:factory'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ArchitectureError(f"architecture {reference!r}: cannot import {module_name} ({exc})") from None
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise ArchitectureError(f"architecture {reference!r}: {module_name} has no callable {attribute!r}")
    return factory


def build(reference: str) -> nn.Module:
    model = resolve(reference)()
    if not isinstance(model, nn.Module):
        raise ArchitectureError(
            f"architecture {reference!r}: factory returned {type(model).__name__}, not nn.Module"
        )
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
