"""Start the service for a load test, and read what it says about itself: /metrics and the experiment report.

The runner either starts ``python -m service`` on a registry (ephemeral ports, read from its log lines)
or targets a service that is already running. Either way it snapshots the service before and after the
run and keeps the difference, so a long-lived service's earlier traffic does not leak into the report.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

HTTP_LINE = re.compile(r"slimserve listening on (http://[\d.]+:\d+)")
GRPC_LINE = re.compile(r"gRPC listening on ([\d.]+:\d+)")


@dataclass
class Target:
    url: str  # http://127.0.0.1:PORT
    grpc: str  # 127.0.0.1:PORT


@contextlib.contextmanager
def start_service(
    registry: Path, experiments: Path, log: Path, timeout_s: float = 180, extra: list[str] | None = None
) -> Iterator[Target]:
    """``python -m service`` on ephemeral loopback ports; yields once every variant is ready, stops it after.
    ``extra``: more settings flags (``--routing.rollout_period_s 1``)."""
    command = [sys.executable, "-m", "service", "--registry.path", str(registry),
               "--server.host", "127.0.0.1", "--server.http_port", "0", "--server.grpc_port", "0",
               "--routing.experiments_file", str(experiments), *(extra or [])]  # fmt: skip
    with log.open("w") as log_file:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        found: dict[str, str] = {}
        ports_known = threading.Event()
        reader = threading.Thread(
            target=_tee, args=(process.stderr, log_file, found, ports_known), daemon=True
        )
        reader.start()
        try:
            if not ports_known.wait(timeout_s):
                raise TimeoutError(f"the service did not print its ports within {timeout_s} s (log: {log})")
            target = Target(found["http"], found["grpc"])
            wait_ready(target.url, timeout_s, process)
            yield target
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            reader.join(timeout=5)


def _tee(stream: IO[str], log: IO[str], found: dict[str, str], ports_known: threading.Event) -> None:
    """Copy the service's stderr to the run's log, picking the two listening addresses out of it."""
    for line in stream:
        log.write(line)
        log.flush()
        if match := HTTP_LINE.search(line):
            found["http"] = match.group(1)
        if match := GRPC_LINE.search(line):
            found["grpc"] = match.group(1)
        if "http" in found and "grpc" in found:
            ports_known.set()
    ports_known.set()  # the process ended: wake the waiter, which then finds the ports missing


def wait_ready(url: str, timeout_s: float, process: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the service exited with code {process.returncode} before it was ready")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {timeout_s} s")


@dataclass
class Snapshot:
    """What the service counted, at one moment: enough to difference two moments."""

    requests: dict[tuple[str, str], float] = field(default_factory=dict)  # (variant, status) -> count
    model_bytes: dict[str, float] = field(default_factory=dict)  # variant -> bytes
    experiment: dict[str, Any] = field(default_factory=dict)  # GET /v1/experiments/{name}


def snapshot(url: str, family: str, experiment: str | None) -> Snapshot:
    """Scrape /metrics for ``family`` (summed over versions, backends and protocols) and the experiment report."""
    with httpx.Client(base_url=url, timeout=30) as client:
        text = client.get("/metrics").raise_for_status().text
        report = client.get(f"/v1/experiments/{experiment}").raise_for_status().json() if experiment else {}
    result = Snapshot(experiment=report)
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            labels = sample.labels
            if labels.get("model") != family:
                continue
            if sample.name == "slimserve_requests_total":
                key = (labels["variant"], labels["status"])
                result.requests[key] = result.requests.get(key, 0.0) + sample.value
            elif sample.name == "slimserve_variant_model_bytes":
                result.model_bytes[labels["variant"]] = max(
                    result.model_bytes.get(labels["variant"], 0.0), sample.value
                )
    return result


def find_experiment(url: str, family: str) -> str | None:
    """The experiment that routes ``family`` on a running service, if any."""
    reports = httpx.get(f"{url}/v1/experiments", timeout=30).raise_for_status().json()["experiments"]
    return next((r["name"] for r in reports if r.get("family") == family), None)
