"""``make bench-serving``: what serving costs on top of in-process inference, per variant.

Measured in one run on one machine: in-process latency and throughput, then the real service (a separate
process) under wrk (HTTP JSON and binary) and h2load (gRPC) at concurrency 1 and 64, with batching on and
off. Every load run is cross-checked against the service's own request counter. Writes a Markdown report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks import pinned
from benchmarks.experiment_state import StateCost, measure_state_cost, state_cost_markdown
from benchmarks.headtohead import MESSAGES_PER_STREAM, HeadToHead, grpc, grpc_stream, head_to_heads, markdown
from benchmarks.loadgen import LoadResult, binary_body, grpc_frame, json_body, real_digit, run_h2load, run_wrk
from benchmarks.processes import bare_server, free_port, served_ok, service
from contract import layout
from contract.runners import RunnerOptions, open_runner
from models.export_triton import export_triton
from models.triton_local import TritonServer, triton_install

CONCURRENCY = (1, 64)
ROWS_PER_BIG_REQUEST = 32


@dataclass(frozen=True)
class Row:
    variant: str
    protocol: str  # "http-json", "http-binary", "grpc"
    batching: bool
    concurrency: int
    result: LoadResult
    server_counted: int


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    return (
        f"{model.group(1) if model else platform.processor()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def in_process(version_dir: Path, batch1: np.ndarray) -> tuple[float, float]:
    """p50 latency at batch 1 (ms) and throughput at batch 32 (rows/s), one thread, loaded as served."""
    torch.set_num_threads(1)
    version = layout.ModelVersion(version_dir, layout.read_card(version_dir))
    runner = open_runner(version, RunnerOptions(threads=1, optimize_fp32=True))
    one, thirty_two = batch1.copy(), np.repeat(batch1, 32, axis=0)
    for _ in range(20):
        runner(one)
    times = []
    for _ in range(300):
        started = time.perf_counter()
        runner(one)
        times.append(time.perf_counter() - started)
    started, runs = time.perf_counter(), 0
    while time.perf_counter() - started < 2.0:
        runner(thirty_two)
        runs += 1
    rate = runs * 32 / (time.perf_counter() - started)
    return float(np.median(times) * 1000), rate


def measure(registry: Path, variants: list[str], seconds: float, digit: np.ndarray) -> list[Row]:
    rows: list[Row] = []
    for batching in (True, False):
        with service(registry, batching) as (http_port, grpc_port, _):
            for variant in variants:
                url = f"http://127.0.0.1:{http_port}/v2/models/mnist-{variant}/infer"
                for fmt, make in (("http-json", json_body), ("http-binary", binary_body)):
                    body, headers = make(digit)
                    for concurrency in CONCURRENCY:
                        before = served_ok(http_port, variant, "http")
                        result = run_wrk(url, body, headers, concurrency, seconds)
                        counted = served_ok(http_port, variant, "http") - before
                        rows.append(Row(variant, fmt, batching, concurrency, result, counted))
                        print(f"{variant:22} {fmt:12} batching={batching!s:5} c={concurrency:<3} "
                              f"{result.throughput:8.0f} req/s p50 {result.p50_ms:.2f} ms", flush=True)  # fmt: skip
                if batching:  # 32 rows per request: the model's cost, not the HTTP stack's, dominates
                    body, headers = binary_body(np.repeat(digit, ROWS_PER_BIG_REQUEST, axis=0))
                    before = served_ok(http_port, variant, "http")
                    result = run_wrk(url, body, headers, 16, seconds)
                    counted = served_ok(http_port, variant, "http") - before
                    rows.append(
                        Row(variant, f"http-binary x{ROWS_PER_BIG_REQUEST}", batching, 16, result, counted)
                    )
                frame = grpc_frame(f"mnist-{variant}", digit)
                grpc_url = f"http://127.0.0.1:{grpc_port}/inference.GRPCInferenceService/ModelInfer"
                for concurrency in CONCURRENCY:
                    before = served_ok(http_port, variant, "grpc")
                    result = run_h2load(grpc_url, frame, concurrency, seconds)
                    counted = served_ok(http_port, variant, "grpc") - before
                    rows.append(Row(variant, "grpc", batching, concurrency, result, counted))
                    print(f"{variant:22} {'grpc':12} batching={batching!s:5} c={concurrency:<3} "
                          f"{result.throughput:8.0f} req/s p50 {result.p50_ms:.2f} ms", flush=True)  # fmt: skip
    return rows


def measure_triton(registry: Path, variant: str, seconds: float, digit: np.ndarray) -> list[Row]:
    """The same variant forwarded to a local Triton (python backend running the same ONNX with ONNX Runtime)."""
    install = triton_install()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder) / "repository"
        models = export_triton(registry, repository, [variant], gpu=False, python_backend=True)
        triton = TritonServer(
            install, repository, models, free_port(), free_port(), Path(folder) / "triton.log"
        )
        triton.start()
        backends = json.dumps({variant: {"kind": "triton", "url": triton.grpc_url, "protocol": "grpc"}})
        try:
            with service(registry, True, ["--backends", backends]) as (http_port, _, _):
                url = f"http://127.0.0.1:{http_port}/v2/models/mnist-{variant}/infer"
                body, headers = binary_body(digit)
                for concurrency in CONCURRENCY:
                    before = served_ok(http_port, variant, "http")
                    result = run_wrk(url, body, headers, concurrency, seconds)
                    counted = served_ok(http_port, variant, "http") - before
                    rows.append(Row(variant, "http-binary via triton", True, concurrency, result, counted))
                    print(f"{variant:22} via triton  c={concurrency:<3} {result.throughput:8.0f} req/s "
                          f"p50 {result.p50_ms:.2f} ms", flush=True)  # fmt: skip
        finally:
            triton.stop()
    return rows


def pick(rows: list[Row], variant: str, protocol: str, batching: bool, concurrency: int) -> Row:
    return next(
        r for r in rows
        if (r.variant, r.protocol, r.batching, r.concurrency) == (variant, protocol, batching, concurrency)
    )  # fmt: skip


LatencyRounds = dict[str, list[float]]  # "binary" / "JSON" -> p50 ms per round, int8 student at concurrency 1


def latency_rounds(http_port: int, digit: np.ndarray, seconds: float, rounds: int) -> LatencyRounds:
    """p50 at concurrency 1 in alternating rounds: a single 5 s run on shared cores can be off by 2x."""
    url = f"http://127.0.0.1:{http_port}/v2/models/mnist-student-int8-x86/infer"
    measured: LatencyRounds = {"binary": [], "JSON": []}
    for _ in range(rounds):
        for fmt, make in (("binary", binary_body), ("JSON", json_body)):
            measured[fmt].append(run_wrk(url, *make(digit), 1, seconds).p50_ms)
    return measured


def overhead_targets(
    latency: LatencyRounds, inproc: dict[str, tuple[float, float]]
) -> list[tuple[str, str, bool]]:
    alone = inproc["student-int8-x86"][0]
    overhead = statistics.median(latency["binary"]) - alone
    overhead_json = statistics.median(latency["JSON"]) - alone
    rounds = ", ".join(f"{p50:.2f}" for p50 in latency["binary"])
    return [
        ("p50 overhead over in-process at concurrency 1 ≤ 1 ms (int8, binary; median of rounds)",
         f"{overhead:.2f} ms (p50 per round {rounds} ms, in-process {alone:.3f} ms; JSON: {overhead_json:.2f} ms)",
         overhead <= 1.0),
    ]  # fmt: skip


def compare(
    registry: Path, digit: np.ndarray, seconds: float, rounds: int
) -> tuple[list[HeadToHead], LatencyRounds]:
    """The targets, on a batching and a non-batching service started side by side."""
    with (
        service(registry, True) as (http_on, grpc_on, _),
        service(registry, False) as (http_off, grpc_off, _),
    ):
        latency = latency_rounds(http_on, digit, seconds, rounds)
        outcomes = head_to_heads(
            (http_on, grpc_on), (http_off, grpc_off), digit, ROWS_PER_BIG_REQUEST, seconds, rounds
        )
        return outcomes, latency


def report(
    command: str,
    rows: list[Row],
    inproc: dict[str, tuple[float, float]],
    outcomes: list[HeadToHead],
    latency: LatencyRounds,
    ceilings: list[Ceiling],
    state_cost: StateCost,
    seconds: float,
    rounds: int,
    pinned_section: list[str],
) -> str:
    lines = [
        "# Serving benchmark",
        "",
        f"- Command: `{command}`",
        f"- Machine: {machine()}",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Load: wrk 1 thread (HTTP), h2load 4 connections (gRPC, streams = concurrency), {seconds:g} s per "
        "row, one real MNIST digit per request; service: one process, 2 inference threads, 1 torch "
        "thread each, batching max 32 rows, greedy (no added delay). After the first section, client and "
        "server share the same 2 cores.",
        '- `served` is the service\'s own `slimserve_requests_total{status="ok"}` increase during the row; '
        "the load generator's count may exceed it by at most the requests in flight when it stopped.",
        f"- `http-binary x{ROWS_PER_BIG_REQUEST}` rows send {ROWS_PER_BIG_REQUEST} digits per request (rows/s = "
        f"req/s × {ROWS_PER_BIG_REQUEST}): with one digit per request the HTTP stack, not the model, is the limit.",
        "",
        *pinned_section,
        "",
        "## In-process (each variant through its own runtime, 1 thread)",
        "",
        "| variant | p50 latency, batch 1 | throughput, batch 32 |",
        "|---|---:|---:|",
    ]
    lines += [f"| {v} | {lat:.3f} ms | {rate:,.0f} rows/s |" for v, (lat, rate) in inproc.items()]
    lines += ["", "## Served", "", "| variant | protocol | batching | concurrency | req/s | p50 | p99 | "
              "failures | served |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.protocol} | {'on' if r.batching else 'off'} | {r.concurrency} | "
            f"{r.result.throughput:,.0f} | {r.result.p50_ms:.2f} ms | {r.result.p99_ms:.2f} ms | "
            f"{r.result.failures} | {r.server_counted:,} |"
        )
    via_triton = [r for r in rows if r.protocol.endswith("via triton")]
    if via_triton:
        lines += ["", "## The same fp32 variant in-process and through Triton", "",
                  "Triton here is the 2.51 server from the nvidia-pytriton wheel on the same 2 CPU cores, running "
                  "the same TorchScript through its python backend (no libtorch backend or GPU on this machine): "
                  "the figures measure the forwarding path (slimserve → tritonclient gRPC → Triton → stub "
                  "process), not GPU speed.", "",
                  "| variant | path | concurrency | req/s | p50 | p99 | overhead per request (p50) |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in via_triton:
            local = pick(rows, r.variant, "http-binary", True, r.concurrency)
            for row, overhead in ((local, "—"), (r, f"{r.result.p50_ms - local.result.p50_ms:+.2f} ms")):
                lines.append(f"| {row.variant} | {'through Triton' if row is r else 'in-process'} | "
                             f"{row.concurrency} | {row.result.throughput:,.0f} | {row.result.p50_ms:.2f} ms | "
                             f"{row.result.p99_ms:.2f} ms | {overhead} |")  # fmt: skip
    lines += ["", "## Latency target", "", "| target | measured | verdict |", "|---|---|---|"]
    lines += [
        f"| {name} | {value} | {'PASS' if ok else 'MISS'} |"
        for name, value, ok in overhead_targets(latency, inproc)
    ]
    lines += ["", *markdown(outcomes, rounds, seconds), "", *ceilings_markdown(ceilings)]
    lines += ["", *state_cost_markdown(state_cost, rounds, seconds)]
    lines += ["", *reading(outcomes, inproc, ceilings)]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Ceiling:
    transport: str
    load: str
    calls_per_s: float


def measure_ceilings(digit: np.ndarray, seconds: float) -> list[Ceiling]:
    """The bare transports under the same load generators as the service, one digit per call."""
    variant = "student-int8-x86"
    with bare_server("http") as port:
        url = f"http://127.0.0.1:{port}/v2/models/mnist-{variant}/infer"
        json = run_wrk(url, *json_body(digit), 64, seconds)
    with bare_server("grpc") as port:
        unary = grpc(port, variant, digit, 64, 1, seconds)()
        # its handler answers a stream's messages in turn, so 64 streams keep 64 requests in flight
        stream = grpc_stream(port, variant, digit, 64 * MESSAGES_PER_STREAM, seconds)()
    return [
        Ceiling("uvicorn (httptools) with the direct inference path, JSON tensor decoded as the service does",
                "wrk, 64 connections",
                json.throughput),
        Ceiling("the service's HTTP/2 gRPC transport, unary ModelInfer", "h2load, 1 connection × 64 streams",
                unary.throughput),
        Ceiling("the service's HTTP/2 gRPC transport, ModelStreamInfer", f"h2load, 1 connection, 64 streams × {MESSAGES_PER_STREAM} "
                "messages answered in turn", stream.throughput * MESSAGES_PER_STREAM),
    ]  # fmt: skip


def ceilings_markdown(ceilings: list[Ceiling]) -> list[str]:
    lines = [
        "## The transports' own ceilings",
        "",
        "`python -m benchmarks.ceilings`: the same libraries with no model, DataPlane or metrics behind them "
        "(a canned answer), one digit per call, same load generators, measured in this run.",
        "",
        "| transport | load | calls/s |",
        "|---|---|---:|",
    ]
    lines += [f"| {c.transport} | {c.load} | {c.calls_per_s:,.0f} |" for c in ceilings]
    return lines


def reading(
    outcomes: list[HeadToHead], inproc: dict[str, tuple[float, float]], ceilings: list[Ceiling]
) -> list[str]:
    """What limits each missed target, from this run's own figures."""
    batching, int8_one, int8_many, grpc_one = outcomes[0], outcomes[1], outcomes[2], outcomes[3]
    stream, grpc_many = outcomes[5], outcomes[6]
    latency_ms, rows_per_s = inproc["teacher-fp32"]
    model_gain = latency_ms * rows_per_s / 1000  # per-row cost at batch 1 over per-row cost at batch 32
    http_ceiling, unary_ceiling, stream_ceiling = (c.calls_per_s for c in ceilings)
    teacher, int8 = statistics.median(int8_one.b_rounds), statistics.median(int8_one.a_rounds)
    needed = 3 * teacher
    return [
        "## Reading the targets",
        "",
        f"- Batching on the teacher ({batching.ratio:.2f}×): in-process, a row costs {model_gain:.1f}× less in a "
        "batch of 32 than alone on this CPU; served, batching also saves a thread hand-off per request. Both "
        "services share 2 cores with the load generator, so the batched teacher competes with the event loop "
        "for CPU.",
        f"- int8 vs teacher with one digit per request ({int8_one.ratio:.2f}×): the batched teacher serves "
        f"{teacher:,.0f} req/s, so 3× needs {needed:,.0f} req/s from the int8 student: "
        f"{needed / http_ceiling:.0%} of what the bare HTTP transport answers with nothing behind it "
        f"({http_ceiling:,.0f} calls/s). The service reaches {int8:,.0f} ({int8 / http_ceiling:.0%}): its "
        "DataPlane, batcher, thread hand-off and metrics cost about as much per request as the transport, "
        "and the cores are shared with the load generator. "
        f"With {ROWS_PER_BIG_REQUEST} digits per request the model dominates: {int8_many.ratio:.2f}×.",
        f"- gRPC vs HTTP JSON with one digit per request ({grpc_one.ratio:.2f}×): with nothing behind them, unary "
        f"gRPC on the service's transport answers {unary_ceiling:,.0f} calls/s and uvicorn {http_ceiling:,.0f} "
        f"({unary_ceiling / http_ceiling:.2f}×); the same work per call added to both only moves the ratio "
        "towards 1, so 1.5× is out of reach for unary calls on these transports"
        + (" here." if unary_ceiling < 1.5 * http_ceiling else " only by the service's own costs.")
        + f" Streaming skips call setup ({stream_ceiling:,.0f} messages/s bare, {stream_ceiling / http_ceiling:.2f}× "
        f"uvicorn): served, {stream.ratio:.2f}× HTTP JSON. With {ROWS_PER_BIG_REQUEST} digits JSON decoding "
        f"dominates and raw gRPC tensors win {grpc_many.ratio:.2f}×.",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serving", description=__doc__)
    parser.add_argument("--registry", type=Path, default=Path("registry"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/serving.md"))
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each load run")
    parser.add_argument("--variants", nargs="+", default=[
        "teacher-fp32", "student-scratch-fp32", "student-fp32", "student-int8-x86", "student-int8-qnnpack",
        "teacher-fp32-onnx", "student-fp32-onnx", "student-int8-onnx", "student-int8-openvino"])  # fmt: skip
    parser.add_argument("--no-triton", dest="triton", action="store_false", help="skip the Triton rows")
    parser.add_argument("--rounds", type=int, default=3, help="alternations per head-to-head target")
    parser.add_argument("--targets-only", action="store_true", help="only the head-to-head targets")
    parser.add_argument("--before", metavar="REVISION", help="also profile the service at this git revision")
    parser.add_argument("--pinned-rounds", type=int, default=5, help="alternations per one-core target")
    parser.add_argument("--pinned-only", action="store_true", help="only the one-core section, printed")
    args = parser.parse_args(argv)
    digit = real_digit()
    pinned_section = pinned.markdown(
        pinned.measure(args.registry, digit, args.seconds, args.pinned_rounds, args.before),
        args.pinned_rounds,
        args.seconds,
    )
    if args.pinned_only:
        print("\n".join(pinned_section))
        return
    inproc = {v: in_process(args.registry / f"mnist-{v}" / latest(args.registry / f"mnist-{v}"), digit)
              for v in args.variants}  # fmt: skip
    outcomes, latency = compare(args.registry, digit, args.seconds, args.rounds)
    ceilings = measure_ceilings(digit, args.seconds)
    if args.targets_only:
        targets = [
            f"| {name} | {value} | {'PASS' if ok else 'MISS'} |"
            for name, value, ok in overhead_targets(latency, inproc)
        ]
        print(
            "\n".join(
                [
                    *targets,
                    "",
                    *markdown(outcomes, args.rounds, args.seconds),
                    "",
                    *ceilings_markdown(ceilings),
                ]
            )
        )
        print("\n".join(["", *reading(outcomes, inproc, ceilings)]))
        return
    rows = measure(args.registry, args.variants, args.seconds, digit)
    if args.triton:
        rows += measure_triton(args.registry, "teacher-fp32-onnx", args.seconds, digit)
    state_cost = measure_state_cost(args.registry, digit, args.seconds, args.rounds)
    command = "python -m benchmarks.serving " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.write_text(
        report(
            command.strip(),
            rows,
            inproc,
            outcomes,
            latency,
            ceilings,
            state_cost,
            args.seconds,
            args.rounds,
            pinned_section,
        )
    )
    print(f"wrote {args.out}")


def latest(model_dir: Path) -> str:
    return str(max(int(p.name) for p in model_dir.iterdir() if p.name.isdigit()))


if __name__ == "__main__":
    main()
