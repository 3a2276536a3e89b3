"""Acceptance for shared experiment state: three ``python -m service`` replicas on one real redis-server.

Labels posted to a different replica than the one that served the prediction all join; the fleet's report
equals a single process's fed the same requests and labels; a weight change on one replica routes every
replica within 2 s; restarting every replica and Redis keeps weights and tallies.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.harness import run_service
from tests.redis_server import running_redis
from tests.replicas import Replica, running_replicas, start_all
from tests.service.test_experiments import TOKEN, body, settings_for, write_experiments

ADMIN = {"authorization": f"Bearer {TOKEN}"}
REQUESTS = 60
PROPAGATION_S = 2.0

pytestmark = pytest.mark.slow


def send(url: str, images: np.ndarray, indexes: range) -> dict[int, str]:
    """Sticky-keyed requests with known ids; the variant that served each."""
    served = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for index in indexes:
            response = client.post("/v2/models/mnist/infer", json=body(images[index], f"req-{index}"),
                                   headers={"x-user-id": f"user-{index}"})  # fmt: skip
            assert response.status_code == 200, response.text
            served[index] = response.headers["slimserve-variant"]
    return served


def wait_for_shadow(url: str, expected: int) -> None:
    """Until every mirrored request's shadow comparison is counted (shadow copies run after the answer)."""
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=30) as client:
        while time.monotonic() < deadline:
            rows = client.get("/v1/experiments/mnist-ab").json()["variants"]
            if sum(row["compared_with_reference"] for row in rows) >= expected:
                return
            time.sleep(0.1)
    raise AssertionError(f"shadow comparisons did not reach {expected}")


def label(url: str, labels: np.ndarray, indexes: list[int]) -> list[str]:
    items = [{"id": f"req-{index}", "label": int(labels[index])} for index in indexes]
    answer = httpx.post(f"{url}/v1/feedback", json=items, timeout=30).json()
    return [result["status"] for result in answer["results"]]


def counts_of(report: dict[str, Any]) -> dict[str, Any]:
    """A report without its latencies (the one thing two runs cannot share)."""
    return {**report, "variants": [{k: v for k, v in row.items() if k != "latency_seconds"}
                                   for row in report["variants"]]}  # fmt: skip


def report(url: str) -> dict[str, Any]:
    answer = httpx.get(f"{url}/v1/experiments/mnist-ab", timeout=30)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def single_process_report(
    registry: Path, experiments: Path, images: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    with run_service(settings_for(registry, experiments)) as running:
        served = send(running.url, images, range(REQUESTS))
        wait_for_shadow(running.url, sum(v != "teacher-fp32" for v in served.values()))
        assert label(running.url, labels, list(range(REQUESTS))) == ["accepted"] * REQUESTS
        return counts_of(report(running.url))


def variants_served(replica: Replica, images: np.ndarray, count: int = 10) -> set[str]:
    with httpx.Client(base_url=replica.url, timeout=30) as client:
        return {client.post("/v2/models/mnist/infer", json=body(images[i])).headers["slimserve-variant"]
                for i in range(count)}  # fmt: skip


def test_three_replicas_join_report_and_change_as_one(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits
    fleet_file = write_experiments(
        tmp_path / "fleet.yaml", shadow={"variant": "teacher-fp32", "percent": 100}
    )
    alone_file = write_experiments(
        tmp_path / "alone.yaml", shadow={"variant": "teacher-fp32", "percent": 100}
    )
    expected = single_process_report(tiny_registry, alone_file, images, labels)
    with running_redis(tmp_path) as redis:
        flags = ["--registry.path", str(tiny_registry), "--routing.experiments_file", str(fleet_file),
                 "--routing.redis_url", redis.url, "--admin.token", TOKEN]  # fmt: skip
        with running_replicas(3, flags, tmp_path) as replicas:
            served: dict[int, str] = {}
            for index in range(REQUESTS):  # round robin
                served |= send(replicas[index % 3].url, images, range(index, index + 1))
            wait_for_shadow(replicas[0].url, sum(v != "teacher-fp32" for v in served.values()))
            statuses: list[str] = []
            for offset in range(3):  # each label to the replica after the one that served it
                statuses += label(replicas[(offset + 1) % 3].url, labels, list(range(offset, REQUESTS, 3)))
            assert statuses == ["accepted"] * REQUESTS
            assert label(replicas[2].url, labels, [0]) == ["unknown id"]  # a second label counts once
            reports = [counts_of(report(replica.url)) for replica in replicas]
            assert reports == [expected] * 3

            changed = httpx.put(f"{replicas[0].url}/v1/experiments/mnist-ab", headers=ADMIN, timeout=30,
                                json={"weights": {"student-fp32": 100}})  # fmt: skip
            assert changed.status_code == 200, changed.text
            deadline = time.monotonic() + PROPAGATION_S
            pending = list(replicas)
            while pending and time.monotonic() < deadline:
                pending = [r for r in pending if variants_served(r, images) != {"student-fp32"}]
            assert not pending, f"{[r.url for r in pending]} still route by the old weights after 2 s"
            time.sleep(0.5)  # the write-behind rounds of the last requests
            before = report(replicas[1].url)

            for replica in replicas:
                replica.stop()
            redis.stop()
            redis.start()
            start_all(replicas)
            after = [report(replica.url) for replica in replicas]
    assert [counts_of(each) for each in after] == [counts_of(before)] * 3
    weights = {row["variant"]: row["weight"] for row in after[0]["variants"]}
    assert weights == {"student-fp32": 100, "teacher-fp32": 0, "student-int8-x86": 0}
    assert after[0]["variants"][0]["latency_seconds"] == before["variants"][0]["latency_seconds"]


async def hammer(url: str, row: np.ndarray, stop: asyncio.Event, workers: int = 16) -> list[int]:
    """Family requests from ``workers`` clients until ``stop``; every status code."""
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def worker() -> None:
            while not stop.is_set():
                statuses.append((await client.post("/v2/models/mnist/infer", json=body(row))).status_code)

        await asyncio.gather(*(worker() for _ in range(workers)))
    return statuses


def test_killing_redis_under_load_fails_no_inference_and_labels_join_once_it_returns(
    tiny_registry: Path, tmp_path: Path, mnist_test_digits: tuple[np.ndarray, np.ndarray]
) -> None:
    images, labels = mnist_test_digits
    experiments = write_experiments(tmp_path / "experiments.yaml")
    with running_redis(tmp_path) as redis:
        settings = settings_for(tiny_registry, experiments, routing={"redis_url": redis.url})
        with run_service(settings) as running:

            async def outage() -> tuple[list[int], list[httpx.Response]]:
                stop = asyncio.Event()
                load = asyncio.create_task(hammer(running.url, images[0], stop))
                await asyncio.sleep(0.5)
                await asyncio.to_thread(redis.kill)
                await asyncio.sleep(1.0)
                async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
                    during = [
                        await client.get("/v2/health/ready"),
                        await client.post("/v1/feedback", json={"id": "any", "label": 1}),
                        await client.get("/v1/experiments/mnist-ab"),
                    ]
                await asyncio.to_thread(redis.start)
                await asyncio.sleep(1.0)
                stop.set()
                return await load, during

            statuses, during = asyncio.run(outage())
            assert statuses and set(statuses) == {200}, f"{len(statuses) - statuses.count(200)} failed"
            ready, feedback, report_during = during
            assert ready.status_code == 200
            assert (feedback.status_code, report_during.status_code) == (503, 503)
            assert "Redis" in feedback.json()["error"] and feedback.headers["retry-after"]
            lost = {kind: running.metrics.get_sample_value("slimserve_experiment_state_lost_total", {"kind": kind})
                    for kind in ("prediction", "count")}  # fmt: skip
            assert lost["prediction"] and lost["count"], lost

            with running.client() as client:
                deadline = time.monotonic() + 10
                joined: list[dict[str, object]] = []
                while not joined and time.monotonic() < deadline:
                    request_id = f"after-{time.monotonic()}"
                    client.post("/v2/models/mnist/infer", json=body(images[3], request_id))
                    answer = client.post("/v1/feedback", json={"id": request_id, "label": int(labels[3])})
                    joined = [r for r in answer.json().get("results", []) if r["status"] == "accepted"]
                assert joined, "labels did not join again after Redis came back"
                assert running.metrics.get_sample_value("slimserve_experiment_state_up") == 1
