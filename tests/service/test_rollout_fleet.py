"""A rollout across three ``python -m service`` replicas sharing one real redis-server: exactly one replica
decides each transition (the lease), every replica routes and reports the same step, and restarting the
whole fleet resumes the step it was at."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_server import running_redis
from tests.replicas import running_replicas, start_all
from tests.service.test_experiments import TOKEN
from tests.service.test_rollout import CANDIDATE, POLICY, drive, status, weights, write_rollout

ADMIN = {"authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.slow


def transitions_counted(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "slimserve_rollout_transitions_total")  # fmt: skip


def every_replica_routing(urls: list[str], percent: int, deadline_s: float = 60) -> list[dict[str, Any]]:
    """The replicas' reports once every one routes ``percent`` to the candidate (or the deadline passed)."""
    deadline = time.monotonic() + deadline_s
    while True:
        reports = [httpx.get(f"{url}/v1/experiments/mnist-rollout", timeout=30).json() for url in urls]
        if all(weights(r)[CANDIDATE] == percent for r in reports) or time.monotonic() > deadline:
            return reports
        time.sleep(0.1)


def test_three_replicas_one_decider_and_a_fleet_restart_resumes_the_step(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    # a step needs more labelled rows than one round of traffic brings: the driver sees every step
    policy = {**POLICY, "gates": {**POLICY["gates"], "min_samples": 100}}
    experiments = write_rollout(tmp_path / "experiments.yaml", policy)
    with running_redis(tmp_path) as redis_server:
        flags = ["--registry.path", str(tiny_registry), "--routing.experiments_file", str(experiments),
                 "--routing.redis_url", redis_server.url, "--routing.rollout_period_s", "0.3",
                 "--admin.token", TOKEN]  # fmt: skip
        with running_replicas(3, flags, tmp_path) as replicas:
            urls = [replica.url for replica in replicas]
            report = drive(urls, mnist_test_digits, lambda r: status(r)[1] == 50)
            # a restart of every replica in the middle: the ledger in Redis keeps the step
            for replica in replicas:
                replica.stop()
            start_all(replicas)
            urls = [replica.url for replica in replicas]
            for resumed in every_replica_routing(urls, 50):
                assert status(resumed) == ("running", 50) and weights(resumed)[CANDIDATE] == 50
            report = drive(urls, mnist_test_digits, lambda r: status(r)[0] == "completed")
            counted_after_restart = sum(transitions_counted(url) for url in urls)
            # the state is written first, the weights second, and replicas follow the configuration by polling
            reports = every_replica_routing(urls, 100)
    kinds = [(t["kind"], t["to_percent"]) for t in report["rollout"]["transitions"]]
    assert kinds == [("start", 20), ("advance", 50), ("complete", 100)]  # each decided once, by one replica
    assert counted_after_restart == 1  # after the restart, one replica made the one remaining transition
    assert all(r["rollout"]["transitions"] == report["rollout"]["transitions"] for r in reports)
    assert all(weights(r)[CANDIDATE] == 100 for r in reports)
