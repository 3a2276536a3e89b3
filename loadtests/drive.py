"""A closed-loop load generator for the scenario runs: ``concurrency`` workers, each sending its next binary
OIP request as soon as the last one is answered, recording who answered each and whether it was right.

The cascade and rollout scenarios need per-request facts locust's CSVs do not keep (the stage that answered,
the class it gave); this stays small and in-process, and labels go back as feedback in batches.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx
import numpy as np

from loadtests.payloads import INPUT, OUTPUT, Digit, with_id

FEEDBACK_BATCH = 64


@dataclass(frozen=True)
class Batch:
    """``rows`` digits as one binary OIP request (the id goes in front of ``header``)."""

    labels: list[int]
    header: bytes
    tensor: bytes


def batches(digits: list[Digit], rows: int) -> list[Batch]:
    """The digits in requests of ``rows`` each (the last, shorter group dropped)."""
    result = []
    for start in range(0, len(digits) - rows + 1, rows):
        group = digits[start : start + rows]
        raw = b"".join(d.binary_tensor for d in group)
        header = json.dumps({
            "inputs": [{"name": INPUT, "shape": [rows, 1, 28, 28], "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": OUTPUT, "parameters": {"binary_data": True}}],
        }, separators=(",", ":"))[1:-1].encode()  # fmt: skip
        result.append(Batch([d.label for d in group], header, raw))
    return result


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the run started
    seconds: float
    status: int
    variant: str  # slimserve-variant: what answered
    escalated: bool | None  # a cascade's answer: whether the second stage gave it
    rows: int
    correct: int  # rows answered right (0 when the request failed)
    escalated_rows: int = 0


@dataclass
class Driven:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> list[Sample]:
        return [s for s in self.samples if s.status == 200]

    @property
    def throughput(self) -> float:
        return len(self.ok) / self.seconds if self.seconds else 0.0

    @property
    def rows_per_second(self) -> float:
        return sum(s.rows for s in self.ok) / self.seconds if self.seconds else 0.0

    @property
    def accuracy(self) -> float:
        rows = sum(s.rows for s in self.ok)
        return sum(s.correct for s in self.ok) / rows if rows else float("nan")

    @property
    def escalation_rate(self) -> float:
        ok = self.ok
        return sum(bool(s.escalated) for s in ok) / len(ok) if ok else float("nan")

    @property
    def row_escalation_rate(self) -> float:
        rows = sum(s.rows for s in self.ok)
        return sum(s.escalated_rows for s in self.ok) / rows if rows else float("nan")

    def latency_ms(self, quantile: float) -> float:
        ok = self.ok
        return float(np.quantile([s.seconds for s in ok], quantile) * 1e3) if ok else float("nan")


def predicted_classes(response: httpx.Response, rows: int) -> np.ndarray:
    """The argmax per row of the one binary FP32 output that ends the response."""
    header = int(response.headers["inference-header-content-length"])
    return np.frombuffer(response.content[header:], dtype="<f4").reshape(rows, -1).argmax(axis=1)


async def drive(
    url: str,
    model: str,
    requests: list[Batch],
    *,
    concurrency: int,
    until: Callable[[float], bool],
    headers: Mapping[str, str] | None = None,
    feedback: bool = False,
    run_id: str = "run",
) -> Driven:
    """Send until ``until(seconds since start)`` is true; labels are posted back when ``feedback``."""
    ids = itertools.count()
    result = Driven()
    pending: list[dict[str, object]] = []
    start = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def flush() -> None:
            batch, pending[:] = list(pending), []
            if batch:
                await client.post("/v1/feedback", json=batch)

        async def worker() -> None:
            while not until(time.perf_counter() - start):
                number = next(ids)
                request = requests[number % len(requests)]
                request_id = f"{run_id}-{number}"
                head = with_id(request_id, request.header)
                sent = time.perf_counter()
                response = await client.post(
                    f"/v2/models/{model}/infer",
                    content=head + request.tensor,
                    headers={"inference-header-content-length": str(len(head)),
                             "content-type": "application/octet-stream", **(headers or {})},
                )  # fmt: skip
                elapsed = time.perf_counter() - sent
                ok = response.status_code == 200
                rows = len(request.labels)
                right = int((predicted_classes(response, rows) == request.labels).sum()) if ok else 0
                escalated = response.headers.get("slimserve-escalated")
                result.samples.append(Sample(
                    sent - start, elapsed, response.status_code, response.headers.get("slimserve-variant", ""),
                    None if escalated is None else escalated == "true", rows, right,
                    int(response.headers.get("slimserve-escalated-rows", 0)),
                ))  # fmt: skip
                if ok and feedback:
                    pending.append({"id": request_id, "label": request.labels})
                    if len(pending) >= FEEDBACK_BATCH:
                        await flush()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.seconds = time.perf_counter() - start
        await flush()
    return result


def for_seconds(seconds: float) -> Callable[[float], bool]:
    return lambda elapsed: elapsed >= seconds
