"""A model of your own, as slimserve's "Serve your own model" starts from: writes FOLDER/model.onnx (a larger
network), FOLDER/model.pt (a smaller one, TorchScript) and FOLDER/eval.npz (``inputs`` and ``labels``).

    .venv/bin/python examples/own_model.py my-model

Both networks classify scikit-learn's bundled iris flowers (4 measurements -> 3 classes) and carry their
own preprocessing, as an exported model usually does. Any ONNX, OpenVINO or TorchScript classifier with one
input (a dynamic batch axis first) and one ``[batch, classes]`` output imports the same way.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn


class IrisNet(nn.Module):
    """Raw measurements in, logits out: the standardisation is part of the model."""

    def __init__(self, hidden: int, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.layers = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.mean) / self.std)


def train_iris(hidden: int, inputs: torch.Tensor, labels: torch.Tensor) -> nn.Module:
    torch.manual_seed(hidden)
    net = IrisNet(hidden, inputs.mean(0), inputs.std(0))
    optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(inputs), labels).backward()
        optimizer.step()
    return net.eval()


def write_user_model(folder: Path) -> None:
    from sklearn.datasets import load_iris

    from contract import torchscript  # slimserve's one door to torch.jit (trace, freeze, save)

    folder.mkdir(parents=True, exist_ok=True)
    iris = load_iris()
    inputs = torch.tensor(iris.data, dtype=torch.float32)
    labels = torch.tensor(iris.target, dtype=torch.int64)
    large, small = train_iris(32, inputs, labels), train_iris(4, inputs, labels)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message=r".*LeafSpec"
        )  # torch's own exporter
        torch.onnx.export(
            large, (inputs[:8],), str(folder / "model.onnx"), dynamo=True, input_names=["INPUT__0"],
            output_names=["OUTPUT__0"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        )  # fmt: skip
    torchscript.save_traced(small, folder / "model.pt", inputs[:8])
    np.savez(folder / "eval.npz", inputs=iris.data.astype(np.float32), labels=iris.target.astype(np.int64))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    write_user_model(Path(sys.argv[1]))
    print(f"wrote {sys.argv[1]}/model.onnx, model.pt and eval.npz")
