"""The confidence cascade on the real server: who answers, what it says, what feedback and metrics count."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from contract.confidence import top_probability
from contract.layout import latest
from service.errors import InvalidInput
from service.routing.experiments import ExperimentsFileError
from service.runtime import load_checked_experiments
from tests.harness import RunningService, run_service
from tests.service.test_experiments import TOKEN, body, settings_for

ADMIN = {"authorization": f"Bearer {TOKEN}"}
THRESHOLD = 0.9
CASCADE = {"first": "student-int8-x86", "then": "teacher-fp32", "threshold": THRESHOLD}


def write_cascade(path: Path, variants: dict[str, int] | None = None, **fields: Any) -> Path:
    experiment = {"name": "mnist-cascade", "family": "mnist", "min_samples": 10,
                  "variants": [{"name": n, "weight": w} for n, w in (variants or {"cascade": 100}).items()],
                  "cascade": CASCADE, **fields}  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    return path


def direct_logits(running: RunningService, model: str, images: np.ndarray) -> np.ndarray:
    with running.client() as client:
        rows = []
        for image in images:
            answer = client.post(f"/v2/models/{model}/infer", json=body(image)).raise_for_status().json()
            rows.append(answer["outputs"][0]["data"])
    return np.asarray(rows)


def test_unsure_requests_are_escalated_and_the_response_says_who_answered(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits
    settings = settings_for(tiny_registry, write_cascade(tmp_path / "experiments.yaml"))
    with run_service(settings) as running, running.client() as client:
        confidence = np.sort(top_probability(direct_logits(running, "mnist-student-int8-x86", images)))
        threshold = float((confidence[49] + confidence[50]) / 2)  # the tiny student is unsure of half
        cascade = {**CASCADE, "threshold": threshold}
        assert client.put(
            "/v1/experiments/mnist-cascade", json={"cascade": cascade}, headers=ADMIN
        ).is_success
        unsure = top_probability(direct_logits(running, "mnist-student-int8-x86", images)) < threshold
        assert 0 < unsure.sum() < len(images)
        answered = []
        for index, image in enumerate(images):
            response = client.post("/v2/models/mnist/infer", json=body(image, f"c-{index}"))
            assert response.status_code == 200, response.text
            escalated = bool(unsure[index])
            assert response.headers["slimserve-cascade"] == "cascade"
            assert response.headers["slimserve-escalated"] == str(escalated).lower()
            assert response.headers["slimserve-variant"] == (
                "teacher-fp32" if escalated else "student-int8-x86"
            )
            assert response.json()["parameters"] == {"variant": response.headers["slimserve-variant"],
                                                     "cascade": "cascade", "escalated": escalated,
                                                     "escalated_rows": [0] if escalated else []}  # fmt: skip
            assert response.headers["slimserve-escalated-rows"] == str(int(escalated))
            answered.append(
                (response.headers["slimserve-variant"], np.argmax(response.json()["outputs"][0]["data"]))
            )
        items = [{"id": f"c-{index}", "label": int(label)} for index, label in enumerate(labels)]
        assert client.post("/v1/feedback", json=items).json()["accepted"] == len(images)
        report = client.get("/v1/experiments/mnist-cascade").json()
        metrics = client.get("/metrics").text

    row = next(r for r in report["variants"] if r["variant"] == "cascade")
    section = row["cascade"]
    assert section["threshold"] == threshold and section["escalated"] == int(unsure.sum())
    assert section["escalation_rate"] == pytest.approx(unsure.mean()) == section["row_escalation_rate"]
    stages = {stage["variant"]: stage for stage in section["stages"]}
    for stage, escalated in (("student-int8-x86", False), ("teacher-fp32", True)):
        mine = [i for i, (variant, _) in enumerate(answered) if variant == stage]
        right = sum(int(answered[i][1] == labels[i]) for i in mine)
        assert stages[stage]["escalated"] is escalated
        assert stages[stage]["requests"] == stages[stage]["labelled"] == len(mine)
        assert stages[stage]["online_accuracy"] == pytest.approx(right / len(mine))
        assert stages[stage]["latency_seconds"]["p99"] is not None
    # the arm as a whole: every answer, labelled, whoever gave it
    assert row["requests"] == row["labelled"] == len(images)
    assert [r["variant"] for r in report["variants"]] == ["cascade", "teacher-fp32"]  # no stage rows
    escalations = f'slimserve_cascade_requests_total{{escalated="true",experiment="mnist-cascade",model="mnist",stage="teacher-fp32",variant="cascade"}} {float(unsure.sum())}'
    assert escalations in metrics
    assert (
        'slimserve_cascade_labelled_predictions_total{experiment="mnist-cascade",model="mnist",stage="student-int8-x86",variant="cascade"}'
        in metrics
    )
    assert 'slimserve_cascade_request_duration_seconds_count{escalated="false"' in metrics


def test_grpc_trailing_metadata_names_the_stage(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = mnist_test_digits
    settings = settings_for(tiny_registry, write_cascade(tmp_path / "experiments.yaml"))
    with run_service(settings) as running:
        with grpc.insecure_channel(running.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            request = pb.ModelInferRequest(model_name="mnist")
            request.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 1, 28, 28])
            request.raw_input_contents.append(images[0].astype("<f4").tobytes())
            response, call = stub.ModelInfer.with_call(request)
        trailing = dict(call.trailing_metadata())
    assert trailing["slimserve-cascade"] == "cascade"
    assert trailing["slimserve-escalated"] in ("true", "false")
    assert trailing["slimserve-variant"] == response.parameters["variant"].string_param


def test_a_cascade_is_an_arm_of_an_ab_experiment_with_the_cards_threshold(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, _ = mnist_test_digits
    cascade = {"first": "student-int8-x86", "then": "teacher-fp32"}  # no threshold: the card's
    path = write_cascade(tmp_path / "experiments.yaml", {"cascade": 50, "student-fp32": 50}, cascade=cascade)
    card = latest(tiny_registry, "mnist-student-int8-x86").card
    assert card.cascade is not None
    with run_service(settings_for(tiny_registry, path)) as running, running.client() as client:
        arms = set()
        for index in range(40):
            response = client.post("/v2/models/mnist/infer", json=body(images[index]))
            arms.add(response.headers.get("slimserve-cascade", response.headers["slimserve-variant"]))
        report = client.get("/v1/experiments/mnist-cascade").json()
    assert arms == {"cascade", "student-fp32"}
    assert report["cascade"]["threshold"] == card.cascade.threshold
    row = next(r for r in report["variants"] if r["variant"] == "cascade")
    assert row["weight"] == 50 and "non_inferiority" in row


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cascade": {"first": "resnet", "then": "teacher-fp32", "threshold": 0.9}}, "cascade.first"),
        (
            {"cascade": {"first": "student-fp32", "then": "teacher-fp32", "threshold": 1.5}},
            "cascade.threshold",
        ),
        ({"cascade": {"first": "student-fp32", "then": "teacher-fp32", "threshold": 0}}, "cascade.threshold"),
        ({"cascade": {"first": "student-fp32", "then": "student-fp32", "threshold": 0.5}}, "cascade.then"),
    ],
)
def test_bad_cascades_are_refused_and_change_nothing(
    tiny_registry: Path, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write_cascade(tmp_path / "experiments.yaml")
    with run_service(settings_for(tiny_registry, path)) as running, running.client() as client:
        before = client.get("/v1/experiments/mnist-cascade").json()
        refused = client.put("/v1/experiments/mnist-cascade", json=change, headers=ADMIN)
        assert refused.status_code == 400, refused.text
        assert message in refused.json()["error"]
        assert client.get("/v1/experiments/mnist-cascade").json()["cascade"] == before["cascade"]
    assert yaml.safe_load(path.read_text())["experiments"][0]["cascade"] == CASCADE


@pytest.mark.parametrize(
    ("cascade", "error", "message"),
    [
        ({"first": "resnet", "then": "teacher-fp32", "threshold": 0.9}, InvalidInput, "cascade.first"),
        ({"first": "student-fp32", "then": "teacher-fp32", "threshold": 1.0}, ExperimentsFileError,
         "cascade.threshold"),
        ({"first": "teacher-fp32", "then": "student-fp32"}, InvalidInput, "cascade.threshold: not given"),
    ],
)  # fmt: skip
def test_bad_cascades_refuse_to_start(
    tiny_registry: Path, tmp_path: Path, cascade: dict[str, Any], error: type[Exception], message: str
) -> None:
    settings = settings_for(tiny_registry, write_cascade(tmp_path / "experiments.yaml", cascade=cascade))
    with pytest.raises(error, match=message):
        load_checked_experiments(settings)


def test_a_batch_escalates_only_its_unsure_rows(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits
    settings = settings_for(tiny_registry, write_cascade(tmp_path / "experiments.yaml"))
    batch = {"id": "batch-1", "inputs": [{"name": "INPUT__0", "shape": [len(images), 1, 28, 28], "datatype": "FP32",
                                          "data": images.ravel().tolist()}]}  # fmt: skip
    with run_service(settings) as running, running.client() as client:
        first = direct_logits(running, "mnist-student-int8-x86", images)
        then = direct_logits(running, "mnist-teacher-fp32", images)
        confidence = np.sort(top_probability(first))
        threshold = float((confidence[69] + confidence[70]) / 2)  # 70 of the 100 rows are escalated
        cascade = {**CASCADE, "threshold": threshold}
        assert client.put(
            "/v1/experiments/mnist-cascade", json={"cascade": cascade}, headers=ADMIN
        ).is_success
        response = client.post("/v2/models/mnist/infer", json=batch)
        assert response.status_code == 200, response.text
        feedback = client.post("/v1/feedback", json={"id": "batch-1", "label": labels.tolist()}).json()
        report = client.get("/v1/experiments/mnist-cascade").json()
    unsure = top_probability(first) < threshold
    answer = response.json()
    assert answer["parameters"]["escalated_rows"] == np.flatnonzero(unsure).tolist()
    assert (
        response.headers["slimserve-escalated-rows"] == "70"
        and response.headers["slimserve-escalated"] == "true"
    )
    assert response.headers["slimserve-variant"] == "student-int8-x86"  # it answered some rows itself
    outputs = np.asarray(answer["outputs"][0]["data"]).reshape(len(images), -1)
    np.testing.assert_allclose(outputs[unsure], then[unsure], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outputs[~unsure], first[~unsure], rtol=1e-4, atol=1e-4)
    assert feedback["accepted"] == 1
    section = next(r for r in report["variants"] if r["variant"] == "cascade")["cascade"]
    assert (section["escalated"], section["escalated_rows"]) == (1, 70)
    assert section["row_escalation_rate"] == pytest.approx(0.7)
    stages = {stage["variant"]: stage for stage in section["stages"]}
    assert stages["teacher-fp32"]["labelled"] == stages["teacher-fp32"]["rows"] == 70
    assert stages["student-int8-x86"]["labelled"] == stages["student-int8-x86"]["rows"] == 30
    right = outputs.argmax(axis=1) == labels
    assert stages["teacher-fp32"]["online_accuracy"] == pytest.approx(right[unsure].mean())
    assert stages["student-int8-x86"]["online_accuracy"] == pytest.approx(right[~unsure].mean())
