"""Where one request's microseconds go: py-spy samples of the pinned service, sorted into the budget's rows.

The service runs on one pinned core and is kept busy by the load generator on the other, so the samples of
all its threads add up to that core's time; a row's share of the samples times the core-time per request
(1 s / served req/s) is what that row costs one request. A sample is charged to the innermost frame that
belongs to a row (a histogram observed inside the DataPlane is ``metrics``; the DataPlane's own lines are
``dataplane``); what belongs to none (uvloop's I/O, uvicorn's parser, the ASGI layers) is ``transport``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks.loadgen import pinned

# (row, what the row covers, markers: a frame belongs to the row when its "function (file:line)" text
# contains one of them). Checked in this order for each frame, innermost frame first.
ROWS: list[tuple[str, str, tuple[str, ...]]] = [
    ("model", "the backend's runtime on the batch", (
        "contract/runners.py", "torch/", "onnxruntime/", "openvino/")),
    ("metrics", "Prometheus series, statistics, the live window", (
        "prometheus_client/", "service/metrics/", "service/statistics.py")),
    ("routing", "experiments, feedback, shadow, cascade", ("service/routing/", "service/cascade.py")),
    ("decode", "body, JSON or binary tensors to arrays", (
        "decode_infer_request", "read_body", "parse_json", "decode_json", "decode_binary", "pydantic",
        "service/protocol.py", "api/grpc/tensors.py")),
    ("validation", "the request against the variant's signature", ("service/signature.py",)),
    ("encode", "outputs to the wire, what served it", (
        "encode_infer_response", "service/served.py", "to_little_endian", "response_message")),
    ("batcher", "queue, batch assembly, hand-off to the inference thread and back", (
        "service/batching/", "service/backends/", "service/inference_threads.py", "concurrent/futures/",
        "threading.py", "asyncio/futures.py", "run_in_executor")),
    ("dataplane", "the DataPlane's own lines: lookups, labels, deadlines, ids", (
        "service/dataplane.py", "asyncio/timeouts.py")),
]  # fmt: skip
TRANSPORT = ("transport", "sockets, HTTP/1.1 or HTTP/2 parsing, ASGI or gRPC layers, the event loop")


@dataclass(frozen=True)
class Budget:
    samples: Counter[str]
    requests_per_s: float

    @property
    def total(self) -> int:
        return sum(self.samples.values())

    def microseconds(self, row: str) -> float:
        return self.samples[row] / self.total * 1e6 / self.requests_per_s


def classify(frames: list[str]) -> str:
    for frame in reversed(frames):  # innermost first
        for row, _, markers in ROWS:
            if any(marker in frame for marker in markers):
                return row
    return TRANSPORT[0]


def record(pid: int, seconds: float, rate: int = 997, cpu: int | None = None) -> Counter[str]:
    """Sample every thread of ``pid`` for ``seconds`` (py-spy, pinned to ``cpu``) and sort the samples."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "samples.txt"
        command = [
            str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid), "--duration",
            str(max(1, round(seconds))), "--rate", str(rate), "--format", "raw", "--nonblocking",
            "--output", str(out),
        ]  # fmt: skip
        subprocess.run(pinned(command, cpu), check=True, capture_output=True)
        counts: Counter[str] = Counter()
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            counts[classify(stack.split(";"))] += int(count)
    return counts


def markdown_rows(budgets: dict[str, Budget]) -> list[str]:
    """One table: a column per measured configuration, µs per request in each budget row."""
    names = list(budgets)
    lines = [
        "| row | covers | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(names),
    ]
    for row, covers, _ in [*ROWS, (*TRANSPORT, ())]:
        cells = " | ".join(f"{budgets[n].microseconds(row):.0f} µs" for n in names)
        lines.append(f"| {row} | {covers} | {cells} |")
    totals = " | ".join(f"**{1e6 / budgets[n].requests_per_s:.0f} µs**" for n in names)
    lines.append(f"| **total** | core time per request (1 s / served req/s) | {totals} |")
    rates = " | ".join(f"{budgets[n].requests_per_s:,.0f}" for n in names)
    lines.append(f"| | served req/s while sampled | {rates} |")
    return lines
