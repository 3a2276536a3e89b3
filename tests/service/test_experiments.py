"""Experiments on the real server: split, stickiness, pinning, shadow, feedback, admin changes."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import yaml
from scipy.stats import chisquare
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from contract.layout import ModelVersion
from service.backends.base import Backend
from service.config import Settings
from service.routing.stats import verdict, wilson_interval
from tests.harness import RunningService, make_settings, run_service
from tests.service.faults import FaultyBackend

TOKEN = "s3cret-admin-token"
SPLIT = {"teacher-fp32": 20, "student-fp32": 30, "student-int8-x86": 50}


def body(row: np.ndarray, request_id: str | None = None) -> dict[str, object]:
    payload: dict[str, object] = {"inputs": [{"name": "INPUT__0", "shape": [1, 1, 28, 28], "datatype": "FP32",
                                              "data": row.ravel().tolist()}]}  # fmt: skip
    if request_id:
        payload["id"] = request_id
    return payload


def write_experiments(path: Path, **fields: object) -> Path:
    experiment = {"name": "mnist-ab", "family": "mnist",
                  "variants": [{"name": n, "weight": w} for n, w in SPLIT.items()],
                  "sticky_key": "x-user-id", "pin_header": "slimserve-pin-variant", "margin": 0.02,
                  "min_samples": 20, **fields}  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    return path


def settings_for(registry: Path, experiments: Path, **sections: dict[str, object]) -> Settings:
    routing = {"experiments_file": experiments, **sections.pop("routing", {})}
    return make_settings(registry, routing=routing, admin={"token": TOKEN}, **sections)


async def post_many(url: str, bodies: list[dict[str, object]], headers: list[dict[str, str]] | None = None,
                    concurrency: int = 32) -> list[httpx.Response]:  # fmt: skip
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(index: int) -> httpx.Response:
            async with limit:
                extra = headers[index] if headers else {}
                return await client.post("/v2/models/mnist/infer", json=bodies[index], headers=extra)

        return await asyncio.gather(*(one(i) for i in range(len(bodies))))


async def grpc_variants(url: str, row: np.ndarray, count: int, concurrency: int = 64) -> list[str]:
    """Send ``count`` unkeyed requests to the family over gRPC; the variant each was served by."""
    request = pb.ModelInferRequest(model_name="mnist")
    request.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 1, 28, 28])
    request.raw_input_contents.append(row.astype("<f4").tobytes())
    variants: list[str] = []
    async with grpc.aio.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        async def worker(share: int) -> None:
            for _ in range(share):
                response = await stub.ModelInfer(request)
                variants.append(response.parameters["variant"].string_param)

        await asyncio.gather(
            *(worker(count // concurrency + (i < count % concurrency)) for i in range(concurrency))
        )
    return variants


def test_ten_thousand_unkeyed_assignments_follow_the_weights(
    tiny_registry: Path, tmp_path: Path, digits: np.ndarray
) -> None:
    experiments = write_experiments(tmp_path / "experiments.yaml")
    with run_service(settings_for(tiny_registry, experiments)) as running:
        served = asyncio.run(grpc_variants(running.grpc_url, digits[0], 10_000))
        observed = [served.count(variant) for variant in SPLIT]
        assert sum(observed) == 10_000
        expected = [weight * 100 for weight in SPLIT.values()]
        assert chisquare(observed, expected).pvalue > 0.001, observed
        for variant, count in zip(SPLIT, observed, strict=True):
            labels = {"experiment": "mnist-ab", "model": "mnist", "variant": variant, "how": "weighted"}
            assert running.metrics.get_sample_value("slimserve_experiment_assignments_total", labels) == count
        with running.client() as client:
            report = client.get("/v1/experiments/mnist-ab").json()
        shares = {row["variant"]: row["traffic_share"] for row in report["variants"]}
        assert shares == pytest.approx({v: c / 10_000 for v, c in zip(SPLIT, observed, strict=True)})


def sticky_variants(running: RunningService, keys: list[str], row: np.ndarray) -> dict[str, str]:
    responses = asyncio.run(post_many(running.url, [body(row)] * len(keys), [{"x-user-id": k} for k in keys]))
    return {key: response.headers["slimserve-variant"] for key, response in zip(keys, responses, strict=True)}


def test_sticky_keys_survive_a_restart_and_hold_over_grpc(
    tiny_registry: Path, tmp_path: Path, digits: np.ndarray
) -> None:
    experiments = write_experiments(tmp_path / "experiments.yaml")
    keys = [f"user-{i}" for i in range(300)]
    settings = settings_for(tiny_registry, experiments)
    with run_service(settings) as running:
        first = sticky_variants(running, keys, digits[0])
        again = sticky_variants(running, keys, digits[1])
    assert first == again
    assert set(first.values()) == set(SPLIT), "300 keys should reach every variant"
    with run_service(settings) as restarted:
        assert sticky_variants(restarted, keys, digits[2]) == first
        with grpc.insecure_channel(restarted.grpc_url) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            for key in keys[:20]:
                request = pb.ModelInferRequest(model_name="mnist")
                request.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 1, 28, 28])
                request.raw_input_contents.append(digits[0].astype("<f4").tobytes())
                _, call = stub.ModelInfer.with_call(request, metadata=(("x-user-id", key),))
                assert dict(call.trailing_metadata())["slimserve-variant"] == first[key]


def test_http_and_grpc_name_what_served_a_request_alike(
    tiny_registry: Path, tmp_path: Path, digits: np.ndarray
) -> None:
    """One function turns what served a request into HTTP headers and gRPC trailing metadata."""
    experiments = write_experiments(tmp_path / "experiments.yaml")
    with run_service(settings_for(tiny_registry, experiments)) as running, running.client() as client:
        http = client.post(
            "/v2/models/mnist/infer", json=body(digits[0], "id-7"), headers={"x-user-id": "u7"}
        )
        with grpc.insecure_channel(running.grpc_url) as channel:
            request = pb.ModelInferRequest(model_name="mnist", id="id-7")
            request.inputs.add(name="INPUT__0", datatype="FP32", shape=[1, 1, 28, 28])
            request.raw_input_contents.append(digits[0].astype("<f4").tobytes())
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            _, call = stub.ModelInfer.with_call(request, metadata=(("x-user-id", "u7"),))
    said_over_http = {key: value for key, value in http.headers.items() if key.startswith("slimserve-")}
    said_over_grpc = {key: value for key, value in call.trailing_metadata() if key.startswith("slimserve-")}
    assert said_over_grpc == said_over_http
    assert said_over_http["slimserve-experiment"] == "mnist-ab"
    assert said_over_http["slimserve-request-id"] == "id-7"


def test_pin_header_forces_a_variant(tiny_registry: Path, tmp_path: Path, digits: np.ndarray) -> None:
    experiments = write_experiments(tmp_path / "experiments.yaml")
    with run_service(settings_for(tiny_registry, experiments)) as running, running.client() as client:
        for _ in range(10):
            pinned = client.post("/v2/models/mnist/infer", json=body(digits[0]),
                                 headers={"slimserve-pin-variant": "student-fp32", "x-user-id": "u1"})  # fmt: skip
            assert pinned.headers["slimserve-variant"] == "student-fp32"
        wrong = client.post("/v2/models/mnist/infer", json=body(digits[0]),
                            headers={"slimserve-pin-variant": "student-int8-qnnpack"})  # fmt: skip
        assert wrong.status_code == 400
        assert "'student-int8-qnnpack' is not a variant of experiment 'mnist-ab'" in wrong.json()["error"]
        direct = client.post("/v2/models/mnist-student-int8-qnnpack/infer", json=body(digits[0]))
        assert direct.status_code == 200 and "slimserve-experiment" not in direct.headers


SHADOW_DELAY_S = 0.4


def test_a_slow_shadow_never_slows_the_primary(
    tiny_registry: Path, tmp_path: Path, digits: np.ndarray
) -> None:
    def slow_teacher(backend: Backend, model: ModelVersion) -> Backend:
        return (
            FaultyBackend(backend, infer_delay_s=SHADOW_DELAY_S)
            if model.card.variant == "teacher-fp32"
            else backend
        )

    experiments = write_experiments(
        tmp_path / "experiments.yaml",
        variants=[{"name": "student-int8-x86", "weight": 100}],
        shadow={"variant": "teacher-fp32", "percent": 100},
    )
    settings = settings_for(tiny_registry, experiments, routing={"shadow_queue_size": 2})
    with run_service(settings, backend_wrapper=slow_teacher) as running, running.client() as client:
        latencies = []
        for index in range(30):
            started = time.perf_counter()
            assert client.post("/v2/models/mnist/infer", json=body(digits[index])).status_code == 200
            latencies.append(time.perf_counter() - started)
        assert statistics.median(latencies) < SHADOW_DELAY_S / 4, "the primary waited for its shadow"
        deadline = time.monotonic() + 10
        while (report := client.get("/v1/experiments/mnist-ab").json()) and time.monotonic() < deadline:
            int8 = next(row for row in report["variants"] if row["variant"] == "student-int8-x86")
            if int8["compared_with_reference"] + report["shadow_dropped"] >= 30:
                break
            time.sleep(0.1)
        assert report["shadow_dropped"] > 0, "a queue of 2 behind a 0.4 s shadow must drop copies"
        assert int8["compared_with_reference"] >= 1
        assert 0.0 <= int8["agreement_with_reference"] <= 1.0
        dropped = running.metrics.get_sample_value("slimserve_shadow_dropped_total",
                                                   {"experiment": "mnist-ab", "model": "mnist"})  # fmt: skip
        assert dropped == report["shadow_dropped"]


def test_feedback_joins_labels_and_the_report_does_the_math(
    tiny_registry: Path,
    tmp_path: Path,
    mnist_test_digits: tuple[np.ndarray, np.ndarray],
    references: dict[str, np.ndarray],
) -> None:
    images, labels = mnist_test_digits
    count = min(60, len(images))
    experiments = write_experiments(
        tmp_path / "experiments.yaml",
        variants=[{"name": "student-int8-x86", "weight": 100}],
        shadow={"variant": "teacher-fp32", "percent": 100},
    )
    with run_service(settings_for(tiny_registry, experiments)) as running, running.client() as client:
        predicted = []
        for index in range(count):
            response = client.post("/v2/models/mnist/infer", json=body(images[index], f"req-{index}"))
            assert response.json()["id"] == f"req-{index}"
            predicted.append(int(np.argmax(response.json()["outputs"][0]["data"])))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            report = client.get("/v1/experiments/mnist-ab").json()
            int8 = next(row for row in report["variants"] if row["variant"] == "student-int8-x86")
            if int8["compared_with_reference"] == count:
                break
            time.sleep(0.1)
        items = [{"id": f"req-{i}", "label": int(labels[i])} for i in range(count)]
        items += [{"id": "never-seen", "label": 1}, {"id": "req-0", "label": 1}]
        answer = client.post("/v1/feedback", json=items).json()
        statuses = [result["status"] for result in answer["results"]]
        assert statuses == ["accepted"] * count + ["unknown id", "unknown id"]
        assert answer["accepted"] == count
        wrongs = ({"id": "req-1", "label": "seven"}, {"id": "req-1", "label": -1}, {"id": "req-1"},
                  [{"id": "req-1", "label": 1}, {"id": "req-2", "label": 10}])  # fmt: skip
        for wrong in wrongs:
            refused = client.post("/v1/feedback", json=wrong)
            assert refused.status_code == 400 and "label" in refused.json()["error"], refused.text
        report = client.get("/v1/experiments/mnist-ab").json()
    rows = {row["variant"]: row for row in report["variants"]}
    int8_correct = sum(p == int(label) for p, label in zip(predicted, labels[:count], strict=True))
    teacher_correct = int((references["mnist-teacher-fp32"][:count].argmax(axis=1) == labels[:count]).sum())
    assert (rows["student-int8-x86"]["labelled"], rows["teacher-fp32"]["labelled"]) == (count, count)
    assert rows["student-int8-x86"]["online_accuracy"] == pytest.approx(int8_correct / count)
    assert rows["teacher-fp32"]["online_accuracy"] == pytest.approx(teacher_correct / count)
    assert rows["student-int8-x86"]["accuracy_ci95"] == pytest.approx(
        list(wilson_interval(int8_correct, count))
    )
    expected = verdict(int8_correct, count, teacher_correct, count, margin=0.02, min_samples=20)
    assert rows["student-int8-x86"]["non_inferiority"] == {"p_value": pytest.approx(expected.p_value),
                                                             "verdict": expected.verdict}  # fmt: skip


def test_admin_changes_need_the_token_and_survive_a_restart(
    tiny_registry: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    experiments = write_experiments(tmp_path / "experiments.yaml")
    settings = settings_for(tiny_registry, experiments)
    change = {
        "weights": {"student-int8-x86": 90, "student-fp32": 10},
        "shadow": {"variant": "teacher-fp32", "percent": 5},
    }
    with run_service(settings) as running, running.client() as client:
        anonymous = client.put("/v1/experiments/mnist-ab", json=change)
        wrong = client.put("/v1/experiments/mnist-ab", json=change, headers={"authorization": "Bearer nope"})
        assert (anonymous.status_code, wrong.status_code) == (401, 401)
        assert anonymous.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in anonymous.json()["error"]
        admin = {"authorization": f"Bearer {TOKEN}"}
        bad_sum = client.put(
            "/v1/experiments/mnist-ab", json={"weights": {"student-fp32": 50}}, headers=admin
        )
        assert bad_sum.status_code == 400 and "sum to 100" in bad_sum.json()["error"]
        unknown = client.put("/v1/experiments/mnist-ab", json={"weights": {"resnet": 100}}, headers=admin)
        assert unknown.status_code == 400 and "has no variant resnet" in unknown.json()["error"]
        changed = client.put("/v1/experiments/mnist-ab", json=change, headers=admin)
        assert changed.status_code == 200, changed.text
        assert changed.json()["shadow"] == {"variant": "teacher-fp32", "percent": 5.0}
    saved = yaml.safe_load(experiments.read_text())["experiments"][0]
    assert saved["variants"] == [
        {"name": "student-int8-x86", "weight": 90},
        {"name": "student-fp32", "weight": 10},
    ]
    assert TOKEN not in caplog.text
    with run_service(settings) as restarted, restarted.client() as client:
        weights = {
            row["variant"]: row["weight"] for row in client.get("/v1/experiments/mnist-ab").json()["variants"]
        }
        assert weights["student-int8-x86"] == 90 and weights["teacher-fp32"] == 0
        assert client.get("/v1/experiments/nope").status_code == 404


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"margin": 3}, "experiments.yaml:"),
        ({"variants": [{"name": "resnet", "weight": 100}]}, "family 'mnist' has no variant resnet"),
    ],
)
def test_invalid_experiments_refuse_to_start(
    tiny_registry: Path, tmp_path: Path, fields: dict[str, object], message: str
) -> None:
    experiments = write_experiments(tmp_path / "experiments.yaml", **fields)
    command = [sys.executable, "-m", "service", "--registry.path", str(tiny_registry),
               "--routing.experiments_file", str(experiments), "--server.http_port", "0"]  # fmt: skip
    finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1
    assert message in finished.stderr
    assert "Traceback" not in finished.stderr


def test_labels_sent_before_the_shadow_answers_still_count_for_it(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits

    def slow_teacher(backend: Backend, model: ModelVersion) -> Backend:
        return FaultyBackend(backend, infer_delay_s=0.2) if model.card.variant == "teacher-fp32" else backend

    experiments = write_experiments(
        tmp_path / "experiments.yaml",
        variants=[{"name": "student-int8-x86", "weight": 100}],
        shadow={"variant": "teacher-fp32", "percent": 100},
    )
    with (
        run_service(settings_for(tiny_registry, experiments), backend_wrapper=slow_teacher) as running,
        running.client() as client,
    ):
        for index in range(5):
            client.post("/v2/models/mnist/infer", json=body(images[index], f"early-{index}"))
            answer = client.post("/v1/feedback", json={"id": f"early-{index}", "label": int(labels[index])})
            assert answer.json()["accepted"] == 1  # the shadow copy is still sleeping
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            rows = {row["variant"]: row for row in client.get("/v1/experiments/mnist-ab").json()["variants"]}
            if rows["teacher-fp32"]["labelled"] == 5:
                break
            time.sleep(0.1)
    assert (rows["student-int8-x86"]["labelled"], rows["teacher-fp32"]["labelled"]) == (5, 5)
