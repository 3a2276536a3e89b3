"""The issue's throughput targets, each measured as a head-to-head: A and B alternate in rounds.

On two shared cores a single 5-second run drifts by ±10 % from one minute to the next, which is as large as
the differences being judged. Alternating A, B, A, B… in the same minutes and comparing medians cancels the
drift instead of building it into the ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.loadgen import LoadResult, binary_body, grpc_frame, json_body, run_h2load, run_wrk

Load = Callable[[], LoadResult]


@dataclass(frozen=True)
class Contender:
    label: str
    run: Load
    rows_per_request: int = 1

    def figure(self, result: LoadResult, unit: str) -> float:
        return result.p50_ms if unit == "ms p50" else result.throughput * self.rows_per_request


@dataclass(frozen=True)
class HeadToHead:
    target: str
    threshold: float
    unit: str  # what the per-round figures count: "req/s" or "rows/s"
    a: str
    b: str
    a_rounds: list[float]
    b_rounds: list[float]
    failures: int

    @property
    def ratio(self) -> float:
        return statistics.median(self.a_rounds) / statistics.median(self.b_rounds)

    @property
    def passed(self) -> bool:
        within = self.ratio <= self.threshold if self.unit == "ms p50" else self.ratio >= self.threshold
        return within and self.failures == 0


def compete(
    target: str, threshold: float, a: Contender, b: Contender, rounds: int, latency: bool = False
) -> HeadToHead:
    """Alternate A and B ``rounds`` times; throughput (A / B ≥ threshold) or, with ``latency``, the p50
    (A / B ≤ threshold)."""
    unit = "ms p50" if latency else "rows/s" if max(a.rows_per_request, b.rows_per_request) > 1 else "req/s"
    a_rounds: list[float] = []
    b_rounds: list[float] = []
    failures = 0
    for _ in range(rounds):
        for contender, results in ((a, a_rounds), (b, b_rounds)):
            result = contender.run()
            failures += result.failures
            results.append(contender.figure(result, unit))
    outcome = HeadToHead(target, threshold, unit, a.label, b.label, a_rounds, b_rounds, failures)
    print(f"{target}: {outcome.ratio:.2f}x ({a.label} {a_rounds} vs {b.label} {b_rounds})", flush=True)
    return outcome


def http(
    port: int,
    variant: str,
    body: tuple[bytes, dict[str, str]],
    concurrency: int,
    seconds: float,
    cpu: int | None = None,
) -> Load:
    """wrk against an mnist variant; ``cpu`` pins the load generator."""
    url = f"http://127.0.0.1:{port}/v2/models/mnist-{variant}/infer"
    return lambda: run_wrk(url, *body, concurrency, seconds, cpu=cpu)


def grpc(
    port: int,
    variant: str,
    digit: np.ndarray,
    streams: int,
    connections: int,
    seconds: float,
    cpu: int | None = None,
) -> Load:
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelInfer"
    frame = grpc_frame(f"mnist-{variant}", digit)
    return lambda: run_h2load(url, frame, streams, seconds, connections, cpu=cpu)


MESSAGES_PER_STREAM = 16


def grpc_stream(
    port: int, variant: str, digit: np.ndarray, in_flight: int, seconds: float, cpu: int | None = None
) -> Load:
    """``in_flight`` messages over one connection: streams of MESSAGES_PER_STREAM one-digit requests each."""
    url = f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ModelStreamInfer"
    frames = grpc_frame(f"mnist-{variant}", digit) * MESSAGES_PER_STREAM
    return lambda: run_h2load(url, frames, in_flight // MESSAGES_PER_STREAM, seconds, 1, cpu=cpu)


def head_to_heads(
    batched: tuple[int, int],
    unbatched: tuple[int, int],
    digit: np.ndarray,
    rows: int,
    seconds: float,
    rounds: int,
) -> list[HeadToHead]:
    """``batched`` and ``unbatched`` are (HTTP port, gRPC port) of two services started on the same registry."""
    int8, teacher, c = "student-int8-x86", "teacher-fp32", 64
    (http_on, grpc_on), (http_off, _) = batched, unbatched
    one, many = binary_body(digit), binary_body(np.repeat(digit, rows, axis=0))
    json_int8 = Contender("HTTP JSON", http(http_on, int8, json_body(digit), c, seconds))
    return [
        compete(
            "batching ≥ 3× throughput on the teacher at concurrency 64 (1 digit per request)", 3.0,
            Contender("batching on", http(http_on, teacher, one, c, seconds)),
            Contender("batching off", http(http_off, teacher, one, c, seconds)),
            rounds,
        ),
        compete(
            "int8 student served ≥ 3× the teacher's served throughput at concurrency 64 (1 digit per request)",
            3.0,
            Contender("int8", http(http_on, int8, one, c, seconds)),
            Contender("teacher", http(http_on, teacher, one, c, seconds)),
            rounds,
        ),
        compete(
            f"int8 student served ≥ 3× the teacher's served throughput at concurrency 64 ({rows} digits per "
            "request, rows/s)", 3.0,
            Contender("int8", http(http_on, int8, many, c, seconds), rows),
            Contender("teacher", http(http_on, teacher, many, c, seconds), rows),
            rounds,
        ),
        compete(
            "gRPC on the int8 student ≥ 1.5× HTTP JSON throughput at concurrency 64 (gRPC: one HTTP/2 "
            "connection, as one tritonclient channel)", 1.5,
            Contender("gRPC 1×64 streams", grpc(grpc_on, int8, digit, c, 1, seconds)),
            json_int8,
            rounds,
        ),
        compete(
            "(context) the same with gRPC spread over 4 connections of 16 streams", 1.5,
            Contender("gRPC 4×16 streams", grpc(grpc_on, int8, digit, c, 4, seconds)),
            json_int8,
            rounds,
        ),
        compete(
            f"(context) the same over ModelStreamInfer: 64 requests in flight as {c // MESSAGES_PER_STREAM} streams "
            f"of {MESSAGES_PER_STREAM} on one connection (rows/s = requests/s, 1 digit each)", 1.5,
            Contender("gRPC streams", grpc_stream(grpc_on, int8, digit, c, seconds), MESSAGES_PER_STREAM),
            json_int8,
            rounds,
        ),
        compete(
            f"gRPC on the int8 student ≥ 1.5× HTTP JSON throughput at concurrency 64 ({rows} digits per "
            "request, rows/s)", 1.5,
            Contender("gRPC 1×64 streams", grpc(grpc_on, int8, np.repeat(digit, rows, axis=0), c, 1, seconds), rows),
            Contender("HTTP JSON", http(http_on, int8, json_body(np.repeat(digit, rows, axis=0)), c, seconds), rows),
            rounds,
        ),
    ]  # fmt: skip


def markdown(outcomes: list[HeadToHead], rounds: int, seconds: float) -> list[str]:
    return [
        "## Targets, head to head",
        "",
        f"Each line alternates A and B for {rounds} rounds of {seconds:g} s on the same service(s) and compares "
        "medians (per-round figures in brackets). Batching on and off are two service processes started "
        "side by side, only one of them under load at a time.",
        "",
        *outcome_table(outcomes),
    ]


def outcome_table(outcomes: list[HeadToHead]) -> list[str]:
    lines = [
        "| target | A | B | A per round | B per round | A / B | verdict |",
        "|---|---|---|---|---|---:|---|",
    ]
    for o in outcomes:
        shown = "{:,.2f}" if o.unit == "ms p50" else "{:,.0f}"
        a_rounds = ", ".join(shown.format(v) for v in o.a_rounds)
        b_rounds = ", ".join(shown.format(v) for v in o.b_rounds)
        verdict = "PASS" if o.passed else "MISS"
        if o.failures:
            verdict += f" ({o.failures} failed requests)"
        lines.append(
            f"| {o.target} | {o.a} | {o.b} | {a_rounds} {o.unit} | {b_rounds} {o.unit} | {o.ratio:.2f}× | {verdict} |"
        )
    return lines
