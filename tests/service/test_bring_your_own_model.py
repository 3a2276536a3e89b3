"""Bring your own model, as a user would: a model of one's own written to ONNX and TorchScript with an
evaluation ``.npz``, imported with the CLI (README, "Serve your own model"), served, called with tritonclient
over HTTP and gRPC, split between the imported variants, and their accuracy read from ``/metrics``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris
from torch import nn

from contract import layout, torchscript
from models.__main__ import main
from tests.harness import make_settings, run_service


class IrisNet(nn.Module):
    """The user's model: its own preprocessing inside, raw measurements in, logits out."""

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


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder holding what a user brings: model.onnx, model.pt and eval.npz."""
    folder = tmp_path_factory.mktemp("user")
    iris = load_iris()
    inputs = torch.tensor(iris.data, dtype=torch.float32)
    labels = torch.tensor(iris.target, dtype=torch.int64)
    example = inputs[:8]
    big, small = train_iris(32, inputs, labels), train_iris(4, inputs, labels)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", category=FutureWarning, message=r".*LeafSpec"
        )  # torch's own exporter
        torch.onnx.export(
            big, (example,), str(folder / "model.onnx"), dynamo=True, input_names=["INPUT__0"],
            output_names=["OUTPUT__0"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},),
        )  # fmt: skip
    torchscript.save_traced(small, folder / "model.pt", example)
    np.savez(folder / "eval.npz", inputs=iris.data.astype(np.float32), labels=iris.target.astype(np.int64))
    return folder


def test_imported_models_are_served_split_and_measured(
    user_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    onnx, torchscript_file, data = (
        user_folder / "model.onnx",
        user_folder / "model.pt",
        user_folder / "eval.npz",
    )
    # The README's commands, as they are written there.
    argv = [
        "import",
        "iris-teacher-onnx",
        "--file",
        str(onnx),
        "--eval-data",
        str(data),
        "--registry",
        str(registry),
    ]
    assert main(argv) == 0
    argv = ["import", "iris-student-ts", "--file", str(torchscript_file), "--eval-data", str(data),
            "--registry", str(registry)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert (
        "iris-teacher-onnx:1 onnx fp32: accuracy" in printed
        and "iris-student-ts:1 torchscript fp32" in printed
    )
    teacher = layout.latest(registry, "iris-teacher-onnx").card
    student = layout.latest(registry, "iris-student-ts").card
    assert teacher.signature == student.signature
    assert teacher.signature.inputs[0].shape == [-1, 4] and teacher.signature.outputs[0].shape == [-1, 3]
    assert teacher.metrics["accuracy"] > 0.9 and teacher.metrics["parameters"] > 100
    assert {"bytes", "latency_p50_batch1_seconds", "throughput_batch32_per_second"} <= set(student.metrics)
    assert teacher.default_variant == student.default_variant == "teacher-onnx"  # the family's first import

    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": [{
        "name": "iris-ab", "family": "iris", "reference": "teacher-onnx", "sticky_key": "x-user-id",
        "variants": [{"name": "teacher-onnx", "weight": 50}, {"name": "student-ts", "weight": 50}],
    }]}))  # fmt: skip
    settings = make_settings(registry, routing={"experiments_file": experiments})
    iris = load_iris()
    rows, truth = iris.data.astype(np.float32), iris.target
    with run_service(settings) as service:
        http = triton_http.InferenceServerClient(f"{service.host}:{service.port}")
        served = set()
        for user in range(40):
            tensor = triton_http.InferInput("INPUT__0", [1, 4], "FP32")
            tensor.set_data_from_numpy(rows[user : user + 1])
            answer = http.infer(
                "iris", [tensor], request_id=f"r{user}", headers={"x-user-id": f"user-{user}"}
            )
            served.add(answer.get_response()["parameters"]["variant"])
            assert answer.as_numpy("OUTPUT__0").shape == (1, 3)
        assert served == {"teacher-onnx", "student-ts"}
        with triton_grpc.InferenceServerClient(service.grpc_url) as grpc_client:
            tensor = triton_grpc.InferInput("INPUT__0", [5, 4], "FP32")
            tensor.set_data_from_numpy(rows[:5])
            logits = grpc_client.infer("iris-student-ts", [tensor]).as_numpy("OUTPUT__0")
        assert logits.shape == (5, 3)
        with service.client() as client:
            labels = [{"id": f"r{user}", "label": int(truth[user])} for user in range(40)]
            assert client.post("/v1/feedback", json=labels).json()["accepted"] == 40
            metrics = client.get("/metrics").text
    for variant, card in (("teacher-onnx", teacher), ("student-ts", student)):
        offline = sample(metrics, "slimserve_variant_offline_accuracy_ratio", model="iris", variant=variant)
        assert offline == pytest.approx(card.metrics["accuracy"])
        routed = sample(
            metrics, "slimserve_experiment_assignments_total", experiment="iris-ab", variant=variant
        )
        labelled = sample(
            metrics, "slimserve_labelled_predictions_total", experiment="iris-ab", variant=variant
        )
        correct = sample(
            metrics, "slimserve_labelled_predictions_correct_total", experiment="iris-ab", variant=variant
        )
        assert routed == labelled > 0 and 0.8 <= correct / labelled <= 1.0  # online accuracy


def sample(metrics: str, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``, from Prometheus text."""
    found = [
        value.value
        for family in text_string_to_metric_families(metrics)
        for value in family.samples
        if value.name == name and labels.items() <= value.labels.items()
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]
