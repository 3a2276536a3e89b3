"""Progressive rollout on one real server: gates move a good candidate to 100 %, roll a failing one back,
admin actions pause and force it, bad policies are refused, and a restart resumes the same step."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from contract.layout import ModelVersion
from service.backends.base import Backend
from service.errors import InvalidInput
from service.routing.experiments import ExperimentsFileError
from service.runtime import load_checked_experiments
from tests.harness import run_service
from tests.service.faults import FaultyBackend
from tests.service.test_experiments import TOKEN, body, settings_for

ADMIN = {"authorization": f"Bearer {TOKEN}"}
CANDIDATE, CONTROL = "student-fp32", "student-int8-x86"
POLICY: dict[str, Any] = {
    "candidate": CANDIDATE, "control": CONTROL, "steps": [20, 50, 100],
    "gates": {"min_samples": 20, "non_inferiority": True, "max_p99_latency_s": 10, "max_error_rate": 0.05},
}  # fmt: skip
FAST: dict[str, object] = {"rollout_period_s": 0.2}
_ids = itertools.count()


def write_rollout(path: Path, policy: dict[str, Any] | None = None, **fields: Any) -> Path:
    experiment = {"name": "mnist-rollout", "family": "mnist", "margin": 0.3, "reference": CONTROL,
                  "variants": [{"name": CONTROL, "weight": 100}, {"name": CANDIDATE, "weight": 0}],
                  "rollout": policy or POLICY, **fields}  # fmt: skip
    path.write_text(yaml.safe_dump({"experiments": [experiment]}, sort_keys=False))
    return path


def report_of(url: str) -> dict[str, Any]:
    import httpx

    answer = httpx.get(f"{url}/v1/experiments/mnist-rollout", timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def drive(urls: list[str], digits: tuple[np.ndarray, np.ndarray], until: Callable[[dict[str, Any]], bool],
          deadline_s: float = 180) -> dict[str, Any]:  # fmt: skip
    """Send labelled traffic round the replicas until ``until(report)`` holds; no timing is asserted."""
    import httpx

    images, labels = digits
    deadline = time.monotonic() + deadline_s
    clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
    try:
        while time.monotonic() < deadline:
            report = report_of(urls[0])
            if until(report):
                return report
            for client in clients:
                items = []
                for _ in range(20):
                    index, request_id = next(_ids) % len(images), f"r-{next(_ids)}"
                    answer = client.post("/v2/models/mnist/infer", json=body(images[index], request_id))
                    if answer.status_code == 200:
                        items.append({"id": request_id, "label": int(labels[index])})
                if items:
                    client.post("/v1/feedback", json=items).raise_for_status()
    finally:
        for client in clients:
            client.close()
    raise AssertionError(f"the rollout did not get there in {deadline_s} s: {report_of(urls[0])['rollout']}")


def status(report: dict[str, Any]) -> tuple[str, int | None]:
    return report["rollout"]["status"], report["rollout"]["percent"]


def weights(report: dict[str, Any]) -> dict[str, int]:
    return {row["variant"]: row["weight"] for row in report["variants"]}


def test_a_good_candidate_reaches_100_percent_step_by_step(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    settings = settings_for(tiny_registry, write_rollout(tmp_path / "experiments.yaml"), routing=FAST)
    with run_service(settings) as running:
        report = drive([running.url], mnist_test_digits, lambda r: status(r)[0] == "completed")
        with running.client() as client:
            metrics = client.get("/metrics").text
    transitions = report["rollout"]["transitions"]
    assert [(t["kind"], t["to_percent"]) for t in transitions] == [
        ("start", 20),
        ("advance", 50),
        ("complete", 100),
    ]
    assert all(t["by"] == "gates" and t["reason"] for t in transitions)
    assert "gates held: non-inferior" in transitions[1]["reason"]
    assert weights(report)[CANDIDATE] == 100 and weights(report)[CONTROL] == 0
    assert report["rollout"]["candidate"] == CANDIDATE and report["rollout"]["steps"] == [20, 50, 100]
    assert (
        'slimserve_rollout_candidate_percent{candidate="student-fp32",experiment="mnist-rollout",model="mnist"} 100.0'
        in metrics
    )
    assert (
        'slimserve_rollout_transitions_total{experiment="mnist-rollout",kind="complete",model="mnist"} 1.0'
        in metrics
    )


def test_a_failing_candidate_is_rolled_back_to_zero(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    def broken_candidate(backend: Backend, model: ModelVersion) -> Backend:
        if model.card.variant != CANDIDATE:
            return backend
        return FaultyBackend(backend, poisoned=lambda row: bool(row.sum() % 3 < 1.5))  # about half fail

    settings = settings_for(tiny_registry, write_rollout(tmp_path / "experiments.yaml"), routing=FAST)
    with run_service(settings, backend_wrapper=broken_candidate) as running:
        report = drive([running.url], mnist_test_digits, lambda r: status(r)[0] == "rolled_back")
    last = report["rollout"]["transitions"][-1]
    assert (last["kind"], last["from_percent"], last["to_percent"]) == ("rollback", 20, 0)
    assert "error rate" in last["reason"] and "max_error_rate 0.05" in last["reason"]
    assert weights(report) == {CONTROL: 100, CANDIDATE: 0}


def test_admin_pauses_forces_and_the_state_survives_a_restart(tiny_registry: Path, tmp_path: Path) -> None:
    path = write_rollout(tmp_path / "experiments.yaml")
    settings = settings_for(tiny_registry, path, routing=FAST)
    url = "/v1/experiments/mnist-rollout/rollout"
    with run_service(settings) as running, running.client() as client:
        assert client.post(url, json={"action": "pause"}).status_code == 401
        paused = client.post(url, json={"action": "pause", "reason": "investigating"}, headers=ADMIN)
        assert paused.status_code == 200, paused.text
        assert status(paused.json()) == ("paused", 20)
        assert client.post(url, json={"action": "pause"}, headers=ADMIN).status_code == 400
        assert client.post(url, json={"action": "jump"}, headers=ADMIN).status_code == 400
        forced = client.post(url, json={"action": "advance"}, headers=ADMIN).json()
        assert status(forced) == ("running", 50) and weights(forced)[CANDIDATE] == 50
        assert forced["rollout"]["transitions"][-1]["by"] == "admin"
    with run_service(settings) as restarted, restarted.client() as client:
        report = client.get("/v1/experiments/mnist-rollout").json()
        assert status(report) == ("running", 50) and weights(report)[CANDIDATE] == 50
        kinds = [t["kind"] for t in report["rollout"]["transitions"]]
        assert kinds == ["start", "pause", "advance"]
        back = client.post(url, json={"action": "rollback"}, headers=ADMIN).json()
        assert status(back) == ("rolled_back", 0) and weights(back)[CANDIDATE] == 0
        again = client.post(url, json={"action": "resume"}, headers=ADMIN).json()
        assert status(again) == ("running", 20) and again["rollout"]["transitions"][-1]["kind"] == "restart"


BAD_POLICIES = [
    ({**POLICY, "steps": [50, 20, 100]}, "rollout.steps: must be strictly increasing"),
    ({**POLICY, "steps": [0, 50]}, "rollout.steps"),
    ({**POLICY, "control": "teacher-fp32"}, "rollout.control"),
    ({**POLICY, "candidate": "resnet"}, "rollout.candidate"),
    ({**POLICY, "gates": {"non_inferiority": False}}, "rollout.gates: none to evaluate"),
    ({**POLICY, "gates": {"min_samples": 50, "max_samples": 10}}, "rollout.gates.max_samples"),
]


@pytest.mark.parametrize(("policy", "message"), BAD_POLICIES)
def test_bad_rollouts_refuse_to_start(tiny_registry: Path, tmp_path: Path, policy: dict[str, Any],
                                      message: str) -> None:  # fmt: skip
    settings = settings_for(tiny_registry, write_rollout(tmp_path / "experiments.yaml", policy))
    with pytest.raises((ExperimentsFileError, InvalidInput), match=message):
        load_checked_experiments(settings)


def test_bad_rollouts_are_refused_by_the_admin_api_and_change_nothing(
    tiny_registry: Path, tmp_path: Path
) -> None:
    path = write_rollout(tmp_path / "experiments.yaml")
    with run_service(settings_for(tiny_registry, path)) as running, running.client() as client:
        before = client.get("/v1/experiments/mnist-rollout").json()
        for policy, message in BAD_POLICIES:
            refused = client.put("/v1/experiments/mnist-rollout", json={"rollout": policy}, headers=ADMIN)
            assert refused.status_code == 400 and message in refused.json()["error"], refused.text
        after = client.get("/v1/experiments/mnist-rollout").json()
    assert after["rollout"] == before["rollout"]
    assert yaml.safe_load(path.read_text())["experiments"][0]["rollout"]["steps"] == POLICY["steps"]


def test_a_running_service_can_be_given_a_rollout(tiny_registry: Path, tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    write_rollout(path)
    data = yaml.safe_load(path.read_text())
    del data["experiments"][0]["rollout"]
    path.write_text(yaml.safe_dump(data))
    with run_service(settings_for(tiny_registry, path, routing=FAST)) as running:
        with running.client() as client:
            answer = client.put("/v1/experiments/mnist-rollout", json={"rollout": POLICY}, headers=ADMIN)
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60
        while status(report_of(running.url)) != ("running", 20):
            assert time.monotonic() < deadline, report_of(running.url)["rollout"]
            time.sleep(0.1)
