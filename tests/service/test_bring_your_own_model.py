"""Bring your own model, as a user would: a model of one's own written to ONNX and TorchScript with an
evaluation ``.npz``, imported with the CLI (README, "Serve your own model"), served, called with tritonclient
over HTTP and gRPC, split between the imported variants, and their accuracy read from ``/metrics``."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

from contract import layout
from examples.own_model import write_user_model
from models.__main__ import main
from tests.harness import make_settings, run_service

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder holding what a user brings: model.onnx, model.pt and eval.npz."""
    folder = tmp_path_factory.mktemp("user")
    write_user_model(folder)
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

    experiments = tmp_path / "experiments.yaml"  # the README's file, copied as it says
    shutil.copyfile(EXAMPLES / "iris-experiments.yaml", experiments)
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
