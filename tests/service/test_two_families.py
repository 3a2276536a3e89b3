"""Two built-in families served from one registry: each bare family name serves its own default variant,
each family runs its own experiment, and their metrics carry their own ``model`` label."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from models.evaluate import single_thread
from models.pipeline import build
from models.sources import load_family_data
from models.spec import builtin_spec
from service.runtime import load_checked_experiments
from tests.harness import make_settings, run_service
from tests.service.test_bring_your_own_model import sample


@pytest.fixture(scope="module")
def two_families(tiny_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny mnist registry plus a smoke build of wdbc (a few epochs: seconds)."""
    root = tmp_path_factory.mktemp("two-families") / "registry"
    shutil.copytree(tiny_registry, root)
    with single_thread():
        build("wdbc", root, epochs=3, limit=400, progress=False)
    return root


@pytest.fixture(scope="module")
def wdbc_rows() -> tuple[np.ndarray, np.ndarray]:
    test = load_family_data(builtin_spec("wdbc")).test
    return test.images[:20], test.labels[:20]


def infer(client: httpx.Client, model: str, rows: np.ndarray, **extra: object) -> httpx.Response:
    body = {
        "inputs": [
            {"name": "INPUT__0", "datatype": "FP32", "shape": list(rows.shape), "data": rows.ravel().tolist()}
        ]
    }
    answer = client.post(f"/v2/models/{model}/infer", json={**body, **extra})
    assert answer.status_code == 200, answer.text
    return answer


def test_each_family_name_serves_its_own_default(
    two_families: Path,
    wdbc_rows: tuple[np.ndarray, np.ndarray],
    mnist_test_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    with run_service(make_settings(two_families)) as service, service.client() as client:
        assert client.get("/v2/health/ready").status_code == 200
        wdbc = infer(client, "wdbc", wdbc_rows[0][:3])
        assert wdbc.headers["slimserve-variant"] == "student-int8-onnx"  # declared by the wdbc spec
        assert np.asarray(wdbc.json()["outputs"][0]["data"]).size == 3 * 2
        mnist = infer(client, "mnist", mnist_test_digits[0][:1])
        assert mnist.headers["slimserve-variant"] == "student-int8-x86"
        wrong = client.post("/v2/models/wdbc/infer", json={"inputs": [
            {"name": "INPUT__0", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [0.0] * 784}]})  # fmt: skip
        assert wrong.status_code == 400 and "expected shape [-1, 30]" in wrong.json()["error"]
        assert client.get("/v2/models/wdbc-student-int8-onnx").json()["inputs"][0]["shape"] == [-1, 30]
    settings = make_settings(two_families, routing={"family_defaults": {"wdbc": "teacher-fp32-onnx"}})
    with run_service(settings) as service, service.client() as client:
        assert infer(client, "wdbc", wdbc_rows[0][:1]).headers["slimserve-variant"] == "teacher-fp32-onnx"


def test_per_family_experiments_and_metrics_stay_apart(
    two_families: Path,
    tmp_path: Path,
    wdbc_rows: tuple[np.ndarray, np.ndarray],
    mnist_test_digits: tuple[np.ndarray, np.ndarray],
) -> None:
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(yaml.safe_dump({"experiments": [
        {"name": "mnist-ab", "family": "mnist",
         "variants": [{"name": "student-int8-x86", "weight": 100}, {"name": "student-fp32", "weight": 0}]},
        {"name": "wdbc-ab", "family": "wdbc", "reference": "teacher-fp32",
         "variants": [{"name": "student-int8-dynamic", "weight": 50}, {"name": "student-int8-onnx", "weight": 50}]},
    ]}))  # fmt: skip
    rows, labels = wdbc_rows
    settings = make_settings(two_families, routing={"experiments_file": experiments})
    with run_service(settings) as service, service.client() as client:
        for index in range(len(rows)):
            infer(client, "wdbc", rows[index : index + 1], id=f"w{index}")
        for index in range(5):
            infer(client, "mnist", mnist_test_digits[0][index : index + 1], id=f"m{index}")
        feedback = [{"id": f"w{i}", "label": int(labels[i])} for i in range(len(rows))]
        assert client.post("/v1/feedback", json=feedback).json()["accepted"] == len(rows)
        report = client.get("/v1/experiments/wdbc-ab").json()
        metrics = client.get("/metrics").text
    routed = {
        variant: sample(
            metrics, "slimserve_experiment_assignments_total", experiment="wdbc-ab", variant=variant
        )
        for variant in ("student-int8-dynamic", "student-int8-onnx")
    }
    assert sum(routed.values()) == len(rows) and all(count > 0 for count in routed.values())
    assert (
        sample(metrics, "slimserve_experiment_assignments_total", experiment="mnist-ab", model="mnist") == 5
    )
    wdbc_requests = sample(
        metrics, "slimserve_requests_total", model="wdbc", variant="student-int8-onnx", protocol="http"
    )
    assert wdbc_requests == routed["student-int8-onnx"]
    labelled = sum(
        sample(metrics, "slimserve_labelled_predictions_total", experiment="wdbc-ab", model="wdbc", variant=v)
        for v in routed
    )
    assert labelled == len(rows)
    assert "mnist" not in str(report) and report["family"] == "wdbc"


def test_the_example_experiments_route_both_families(two_families: Path) -> None:
    examples = Path(__file__).parents[2] / "examples" / "experiments.yaml"
    experiments = load_checked_experiments(
        make_settings(two_families, routing={"experiments_file": examples})
    )
    assert {experiment.family for experiment in experiments.experiments} == {"mnist", "wdbc"}
