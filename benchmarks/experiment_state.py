"""What shared experiment state costs: int8 served throughput with the Redis store against the in-process one.

Two services side by side, one per store, measured in alternating rounds: the family endpoint (``mnist``)
routed by an experiment that sends everything to ``student-int8-x86``, one digit per request (binary), wrk at
concurrency 64, every prediction kept for its label, and a client posting labels alongside (each one joins a
prediction it just made). Target: Redis ≥ 0.9× in-process. The Redis store's own count of the requests it
recorded is checked against the service's request counter, so a store that dropped its writes cannot pass.

``python -m benchmarks.experiment_state --registry registry`` runs it alone; ``make bench-serving`` includes it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml

from benchmarks.loadgen import binary_body, real_digit, run_wrk
from benchmarks.processes import served_ok, service
from tests.redis_server import running_redis

CONCURRENCY = 64
TARGET = 0.9
EXPERIMENT = {
    "name": "bench-state",
    "family": "mnist",
    "variants": [{"name": "student-int8-x86", "weight": 100}],
}


@dataclass(frozen=True)
class StateCost:
    in_process: list[float]  # req/s per round
    redis: list[float]
    failures: int
    labels_posted: int
    labels_joined: int
    served: int  # the Redis-backed service's ok requests
    recorded: int  # what its experiment report counted

    @property
    def ratio(self) -> float:
        """Median of the rounds' ratios: each round pairs two runs minutes apart at most, so load from
        elsewhere on the shared cores, which drifts from round to round, cancels within a pair."""
        return statistics.median(r / p for r, p in zip(self.redis, self.in_process, strict=True))


@contextlib.contextmanager
def labelling(url: str, digit: np.ndarray) -> Iterator[list[int]]:
    """While the block runs: predict with a known id, then label it, one after the other: [posted, joined]."""
    counts, stop = [0, 0], threading.Event()
    tensor = {
        "name": "INPUT__0",
        "shape": list(digit.shape),
        "datatype": "FP32",
        "data": digit.ravel().tolist(),
    }

    def run() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while not stop.is_set():
                request_id = f"labelled-{counts[0]}"
                client.post("/v2/models/mnist/infer", json={"id": request_id, "inputs": [tensor]})
                answer = client.post("/v1/feedback", json={"id": request_id, "label": 7})
                counts[0] += 1
                counts[1] += answer.status_code == 200 and answer.json()["accepted"] == 1
                stop.wait(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        stop.set()
        thread.join(timeout=30)


def measure_state_cost(registry: Path, digit: np.ndarray, seconds: float, rounds: int) -> StateCost:
    body, headers = binary_body(digit)
    with tempfile.TemporaryDirectory() as folder, running_redis(Path(folder)) as redis:
        experiments = Path(folder) / "experiments.yaml"
        experiments.write_text(yaml.safe_dump({"experiments": [EXPERIMENT]}))
        common = ["--routing.experiments_file", str(experiments)]
        with (
            service(registry, True, common) as (local_port, _, _),
            service(registry, True, [*common, "--routing.redis_url", redis.url]) as (redis_port, _, _),
        ):
            measured: dict[int, list[float]] = {local_port: [], redis_port: []}
            failures, posted, joined = 0, 0, 0
            for round_number in range(rounds):
                order = (local_port, redis_port) if round_number % 2 == 0 else (redis_port, local_port)
                for port in order:  # ABBA: a steady drift favours neither
                    url = f"http://127.0.0.1:{port}"
                    with labelling(url, digit) as labels:
                        result = run_wrk(f"{url}/v2/models/mnist/infer", body, headers, CONCURRENCY, seconds)
                    measured[port].append(result.throughput)
                    failures += result.failures
                    if port == redis_port:
                        posted, joined = posted + labels[0], joined + labels[1]
            served = served_ok(redis_port, "student-int8-x86", "http")
            report = httpx.get(f"http://127.0.0.1:{redis_port}/v1/experiments/bench-state", timeout=30).json()
            recorded = report["requests"]
    return StateCost(measured[local_port], measured[redis_port], failures, posted, joined, served, recorded)


def state_cost_markdown(cost: StateCost, rounds: int, seconds: float) -> list[str]:
    def rounds_of(values: list[float]) -> str:
        return ", ".join(f"{value:,.0f}" for value in values)

    verdict = "PASS" if cost.ratio >= TARGET else "MISS"
    per_round = ", ".join(f"{r / p:.2f}" for r, p in zip(cost.redis, cost.in_process, strict=True))
    return [
        "## Shared experiment state: Redis against in-process",
        "",
        f"int8 student through the family endpoint with an experiment, one digit per request (binary), "
        f"concurrency {CONCURRENCY}, labels posted alongside; {rounds} rounds of {seconds:g} s, each running "
        "both stores back to back (order alternating); the ratio is the median of the rounds' ratios. Redis: a "
        "local redis-server (append-only file on) on the same cores.",
        "",
        "| store | req/s (median) | rounds | ",
        "|---|---:|---|",
        f"| in-process | {statistics.median(cost.in_process):,.0f} | {rounds_of(cost.in_process)} |",
        f"| Redis | {statistics.median(cost.redis):,.0f} | {rounds_of(cost.redis)} |",
        "",
        "| target | measured | verdict |",
        "|---|---|---|",
        f"| Redis ≥ {TARGET}× in-process | {cost.ratio:.2f}× (per round: {per_round}) | {verdict} |",
        "",
        f"Failed requests: {cost.failures}. Labels posted to the Redis-backed service: {cost.labels_posted:,}, "
        f"joined: {cost.labels_joined:,}. Requests its report counted: {cost.recorded:,} of {cost.served:,} "
        "served on the family endpoint.",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.experiment_state", description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load run")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two stores")
    args = parser.parse_args(argv)
    cost = measure_state_cost(args.registry, real_digit(), args.seconds, args.rounds)
    print("\n".join(state_cost_markdown(cost, args.rounds, args.seconds)))


if __name__ == "__main__":
    main()
