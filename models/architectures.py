"""Network definitions, the in-model preprocessing wrapper, and resolution of ``package.module:factory``.

Networks use module-form activations and pooling (no in-place functional calls) so FX graph-mode static
quantization can trace, observe and fuse them. Normalisation lives in ``Preprocess`` outside the network,
so the int8 variant quantizes only the network while its input stays raw fp32 pixels.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
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


@dataclass(frozen=True)
class Normaliser:
    """``x * scale + offset``: raw client values to the scale a network trains on. Scalars, or one value per
    feature (arrays broadcast against a row); the same arithmetic in training and inside every artifact."""

    scale: float | np.ndarray = 1.0
    offset: float | np.ndarray = 0.0

    @classmethod
    def standardise(
        cls, mean: float | np.ndarray, std: float | np.ndarray, divide_by: float = 1.0
    ) -> Normaliser:
        """``(x / divide_by - mean) / std``, written as one multiply-add."""
        if isinstance(mean, np.ndarray) or isinstance(std, np.ndarray):
            mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
            scale = (1.0 / (divide_by * std)).astype(np.float32)
            return cls(scale, (-mean / std).astype(np.float32))
        return cls(1.0 / (divide_by * std), -mean / std)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * _constant(self.scale) + _constant(self.offset)

    def digest_fields(self) -> dict[str, object]:
        return {"scale": np.asarray(self.scale).tolist(), "offset": np.asarray(self.offset).tolist()}


def _constant(value: float | np.ndarray) -> float | torch.Tensor:
    return torch.from_numpy(value) if isinstance(value, np.ndarray) else value


MNIST_NORMALISER = Normaliser.standardise(MNIST_MEAN, MNIST_STD, divide_by=255.0)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Raw 0-255 pixels to the standardised scale the mnist networks train on."""
    return MNIST_NORMALISER(x)


class Preprocess(nn.Module):
    """Normalise raw client values before the network, so clients send raw values (digits: 0-255 pixels)."""

    def __init__(self, net: nn.Module, normaliser: Normaliser = MNIST_NORMALISER):
        super().__init__()
        self.net = net
        self.normaliser = normaliser
        for name in ("scale", "offset"):  # per-feature values travel with the module as buffers
            value = getattr(normaliser, name)
            if isinstance(value, np.ndarray):
                self.register_buffer(f"{name}_values", torch.from_numpy(value.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = getattr(self, "scale_values", self.normaliser.scale)
        offset = getattr(self, "offset_values", self.normaliser.offset)
        return self.net(x * scale + offset)


class MLP(nn.Module):
    """Fully connected layers with ReLU between them: a network for flat feature vectors (tabular data)."""

    def __init__(self, features: int, hidden: tuple[int, ...], classes: int, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def wdbc_teacher() -> nn.Module:
    """The wdbc family's teacher: 30 features -> 256 -> 256 -> 2 classes (~74k parameters)."""
    return MLP(30, (256, 256), 2, dropout=0.2)


def wdbc_student() -> nn.Module:
    """The wdbc family's student: 30 -> 16 -> 2 (~500 parameters)."""
    return MLP(30, (16,), 2)


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
