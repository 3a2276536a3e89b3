"""The load test end to end: the real command runs real locust against the real service, then this test
checks the report against what the service itself counted.

The service runs in this process (``tests/harness.py``) so the test reads its metrics registry and
experiment report directly, as an observer independent of the command; the command and locust run in
subprocesses, because locust's gevent monkey-patching must not reach pytest.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness import make_settings, run_service

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = REPO / "loadtests" / "experiments.yaml"
PNG = b"\x89PNG\r\n\x1a\n"


def service_requests(metrics: Any, family: str) -> dict[str, float]:
    """slimserve_requests_total per variant, every status and protocol: the service's own count."""
    counts: dict[str, float] = {}
    for metric in metrics.collect():
        for sample in metric.samples:
            if sample.name == "slimserve_requests_total" and sample.labels["model"] == family:
                counts[sample.labels["variant"]] = counts.get(sample.labels["variant"], 0.0) + sample.value
    return counts


@pytest.mark.slow
def test_locust_smoke_run_matches_the_service(tiny_registry: Path, tmp_path: Path) -> None:
    experiments = tmp_path / "experiments.yaml"
    shutil.copyfile(EXPERIMENTS, experiments)
    experiment = yaml.safe_load(EXPERIMENTS.read_text())["experiments"][0]
    weights = {v["name"]: v["weight"] for v in experiment["variants"]}
    out = tmp_path / "report"
    settings = make_settings(tiny_registry, routing={"experiments_file": experiments})
    with run_service(settings) as service:
        command = [sys.executable, "-m", "loadtests", "run", "--host", service.url, "--grpc-host",
                   service.grpc_url, "--duration", "7s", "--users", "8", "--spawn-rate", "8", "--out", str(out)]  # fmt: skip
        completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=90)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        with service.client() as client:
            truth = client.get(f"/v1/experiments/{experiment['name']}").raise_for_status().json()
        counted = service_requests(service.metrics, "mnist")

    # the folder: locust's CSVs, every request, the report and two real PNGs
    for name in (
        "locust_stats.csv",
        "locust_stats_history.csv",
        "locust_failures.csv",
        "requests.csv",
        "report.md",
    ):
        assert (out / name).stat().st_size > 0, name
    for name in ("latency_over_time.png", "trade_off.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    report = json.loads((out / "report.json").read_text())
    rows = {row["variant"]: row for row in report["rows"]}
    markdown = (out / "report.md").read_text()

    # acceptance 1: no failures, every configured variant within ±5 points of its weight (the client's split
    # and the service's), and the report's online accuracy is the service's experiment report's
    assert report["failures"] == 0
    assert set(weights) <= set(rows)
    by_service = {row["variant"]: row for row in truth["variants"]}
    for variant, weight in weights.items():
        assert abs(rows[variant]["share"] * 100 - weight) <= 5, (variant, rows[variant]["share"], weight)
        assert abs(by_service[variant]["traffic_share"] * 100 - weight) <= 5, (variant, by_service[variant])
    for variant, row in rows.items():
        assert row["labelled"] == by_service[variant]["labelled"], variant
        assert row["online_accuracy"] == pytest.approx(by_service[variant]["online_accuracy"], abs=1e-12), (
            variant
        )
        assert f"| {variant} |" in markdown
        if (
            variant != report["shadow"]
        ):  # the client's own tally; the shadow's also holds labels it cannot see
            assert (row["client_labelled"], row["client_correct"]) == (row["labelled"], row["correct"]), (
                variant
            )
    assert sum(row["labelled"] for row in rows.values()) > 0

    # acceptance 2: request counts agree with the service's metrics within 1%: per variant from the samples,
    # and in total from locust's own stats CSV
    assert set(counted) == set(weights)
    for variant, count in counted.items():
        assert abs(rows[variant]["requests"] - count) <= 0.01 * count, (
            variant,
            rows[variant]["requests"],
            count,
        )
    with (out / "locust_stats.csv").open(newline="") as handle:
        named = [r for r in csv.DictReader(handle) if r["Name"] not in ("Aggregated", "feedback")]
    locust_total = sum(int(r["Request Count"]) for r in named)
    assert abs(locust_total - sum(counted.values())) <= 0.01 * sum(counted.values())
    assert sum(int(r["Failure Count"]) for r in named) == 0
    assert report["checks"]["passed"]
