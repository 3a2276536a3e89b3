"""One core each: slimserve against a real Triton and a naive FastAPI handler, and where a request's time goes.

Every server runs pinned to CPU 0 and the load generator to CPU 1, so a server's req/s is what one core of
it serves. All servers stay up together for the whole section and only one is under load at a time; each
target alternates its two contenders for a few rounds and compares medians, which cancels the drift of a
shared virtual machine instead of building it into a ratio. (Idle neighbours matter here: a vCPU that halts
wakes slowly, so a server measured alone on an otherwise idle core reads lower than one measured beside
another process; measured together, every contender has the same neighbours.)

Triton is the 2.51 server from the nvidia-pytriton wheel with its python backend (the wheel has no libtorch
backend), dynamic batching with a 500 µs queue delay and one CPU instance per model, serving the same
TorchScript files through ``torch`` in the stub (``benchmarks/triton_torchscript/model.py``; its own venv,
``.triton-torch-venv``, adds torch to the test venv's requirements) and the same ONNX file through ONNX
Runtime (``models/triton_python_backend/model.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from google.protobuf import text_format

from benchmarks import budget
from benchmarks.headtohead import (
    MESSAGES_PER_STREAM,
    Contender,
    HeadToHead,
    Load,
    compete,
    grpc,
    grpc_stream,
    http,
    outcome_table,
)
from benchmarks.loadgen import LoadResult, binary_body, json_body
from benchmarks.processes import bare_server, free_port, service, wait_until_ok
from contract import layout, torchscript
from contract.card import ArtifactFormat
from contract.triton_config import load_config
from models.export_triton import PYTHON_BACKEND_MODEL, adapt_config
from models.triton_local import ROOT, TritonServer, triton_install

SERVER_CPU, LOAD_CPU = 0, 1
TORCH_VENV = ROOT / ".triton-torch-venv"
TORCHSCRIPT_MODEL = Path(__file__).parent / "triton_torchscript" / "model.py"
TRITON_QUEUE_DELAY_US = 500
INT8, TEACHER, INT8_ONNX = "student-int8-x86", "teacher-fp32", "student-int8-onnx"  # mnist variants
C = 64


def pin_process_group(leader: int, cpu: int) -> None:
    """Every thread of every process in ``leader``'s process group (Triton and its python stubs) on ``cpu``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError, FileNotFoundError):
            if os.getpgid(int(entry.name)) == leader:
                for task in (entry / "task").iterdir():
                    os.sched_setaffinity(int(task.name), {cpu})


def write_triton_repository(registry: Path, names: list[str], out: Path) -> None:
    """The variants as python-backend models: TorchScript through torch, ONNX through ONNX Runtime."""
    for name in names:
        version = layout.latest(registry, name)
        card = version.card
        config = adapt_config(load_config(registry / name, card), card, gpu=False, python_backend=True)
        config.dynamic_batching.max_queue_delay_microseconds = TRITON_QUEUE_DELAY_US
        for group in config.instance_group:
            group.count = 1
        target = out / name / "1"
        target.mkdir(parents=True)
        for filename in (*card.format.files, layout.CARD_FILE):
            shutil.copyfile(version.directory / filename, target / filename)
        if card.format is ArtifactFormat.TORCHSCRIPT:
            shutil.copyfile(TORCHSCRIPT_MODEL, target / "model.py")
            shutil.copyfile(torchscript.__file__, target / "torchscript.py")
        else:
            shutil.copyfile(PYTHON_BACKEND_MODEL, target / "model.py")
        (out / name / layout.CONFIG_FILE).write_text(text_format.MessageToString(config))


@contextlib.contextmanager
def triton(registry: Path, names: list[str], folder: Path) -> Iterator[int]:
    """A pinned Triton serving ``names``; yields its HTTP port."""
    install = triton_install(TORCH_VENV, extra="torch==2.13.0")
    repository = folder / "triton-repository"
    write_triton_repository(registry, names, repository)
    server = TritonServer(install, repository, names, free_port(), free_port(), folder / "triton.log")
    server.start()
    try:
        pin_process_group(server.pid, SERVER_CPU)
        yield server.http_port
    finally:
        server.stop()


@contextlib.contextmanager
def naive(registry: Path, model: str) -> Iterator[int]:
    port = free_port()
    command = ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "benchmarks.naive", str(registry), model,
               str(port)]  # fmt: skip
    process = subprocess.Popen(command)
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/docs", 120, "the naive handler")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def worktree(revision: str, folder: Path) -> Iterator[Path]:
    """``revision`` checked out beside this one (no copy of the venv: the same interpreter runs it)."""
    path = folder / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), revision], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True)


@dataclass(frozen=True)
class Pinned:
    outcomes: list[HeadToHead]
    budgets: dict[str, budget.Budget]
    ceilings: dict[str, list[float]]  # calls/s per round of each bare transport on the same core
    before: str | None


BARE_HTTP = (
    "uvicorn (httptools) with the service's direct inference path, JSON tensor decoded as the service does; "
    "wrk, 64 connections"
)
UNARY_LOAD = "unary ModelInfer; h2load, 1 connection × 64 streams"
STREAM_LOAD = (
    f"ModelStreamInfer; h2load, 1 connection, 64 streams × {MESSAGES_PER_STREAM} messages answered in turn"
)
BARE_UNARY, BARE_STREAM = (
    f"the service's HTTP/2 transport, {UNARY_LOAD}",
    f"the service's HTTP/2 transport, {STREAM_LOAD}",
)
GRPCIO_UNARY, GRPCIO_STREAM = f"grpc.aio, {UNARY_LOAD}", f"grpc.aio, {STREAM_LOAD}"


def bare_transports(digit: np.ndarray, seconds: float, rounds: int) -> dict[str, list[float]]:
    """The transports alone on the server's core (``benchmarks.ceilings``: a canned answer, no model), in
    rounds like the targets: what no service built on them can exceed here. grpc.aio beside the service's
    own gRPC transport shows what the switch bought."""
    with (
        bare_server("http", SERVER_CPU) as http_port,
        bare_server("grpc", SERVER_CPU) as grpc_port,
        bare_server("grpcio", SERVER_CPU) as grpcio_port,
    ):
        loads = {BARE_HTTP: Contender("", http(http_port, INT8, json_body(digit), C, seconds, LOAD_CPU))}
        for port, unary, streamed in (
            (grpc_port, BARE_UNARY, BARE_STREAM),
            (grpcio_port, GRPCIO_UNARY, GRPCIO_STREAM),
        ):
            loads[unary] = Contender("", grpc(port, INT8, digit, C, 1, seconds, LOAD_CPU))
            # its handler answers a stream's messages in turn, so 64 streams keep 64 requests in flight
            messages = grpc_stream(port, INT8, digit, C * MESSAGES_PER_STREAM, seconds, LOAD_CPU)
            loads[streamed] = Contender("", messages, MESSAGES_PER_STREAM)
        calls: dict[str, list[float]] = {name: [] for name in loads}
        for _ in range(rounds):
            for name, load in loads.items():
                calls[name].append(load.figure(load.run(), "req/s"))
    return calls


def sampled(pid: int, load: Contender, seconds: float) -> budget.Budget:
    """Profile ``pid`` while ``load`` runs (py-spy on the load generator's CPU), starting a second in."""
    result: list[LoadResult] = []
    runner = threading.Thread(target=lambda: result.append(load.run()))
    runner.start()
    try:
        time.sleep(1.0)
        counts = budget.record(pid, max(1.0, seconds - 2.0), cpu=LOAD_CPU)
    finally:
        runner.join()
    return budget.Budget(counts, result[0].throughput * load.rows_per_request)


def measure(registry: Path, digit: np.ndarray, seconds: float, rounds: int, before: str | None) -> Pinned:
    registry = registry.absolute()
    one_json, one_binary = json_body(digit), binary_body(digit)
    many_binary = binary_body(np.repeat(digit, 32, axis=0))
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        ours_http, ours_grpc, ours_pid = stack.enter_context(service(registry, True, cpu=SERVER_CPU))
        triton_http = stack.enter_context(
            triton(registry, [f"mnist-{v}" for v in (INT8, TEACHER, INT8_ONNX)], folder)
        )
        naive_http = stack.enter_context(naive(registry, f"mnist-{INT8}"))
        earlier: tuple[int, int, int] | None = None
        if before is not None:
            tree = stack.enter_context(worktree(before, folder))
            earlier = stack.enter_context(service(registry, True, cpu=SERVER_CPU, cwd=tree))

        def ours(variant: str, body: tuple[bytes, dict[str, str]] = one_json, concurrency: int = C) -> Load:
            return http(ours_http, variant, body, concurrency, seconds, LOAD_CPU)

        def theirs(variant: str) -> Load:
            return http(triton_http, variant, one_json, C, seconds, LOAD_CPU)

        streams = C // MESSAGES_PER_STREAM
        unary = Contender(
            "gRPC unary, 1 connection × 64 streams", grpc(ours_grpc, INT8, digit, C, 1, seconds, LOAD_CPU)
        )
        stream = Contender(
            f"ModelStreamInfer, {streams} streams × {MESSAGES_PER_STREAM} in flight",
            grpc_stream(ours_grpc, INT8, digit, C, seconds, LOAD_CPU),
            MESSAGES_PER_STREAM,
        )
        json_int8 = Contender("HTTP JSON", ours(INT8))
        outcomes = [
            compete("int8 student, 1 digit per request (JSON), 64 connections: slimserve ≥ 1.0× Triton "
                    "(stretch 1.5×)", 1.0, Contender("slimserve", ours(INT8)), Contender("Triton", theirs(INT8)),
                    rounds),
            compete("teacher, 1 digit per request (JSON), 64 connections: slimserve ≥ 1.5× Triton", 1.5,
                    Contender("slimserve", ours(TEACHER)), Contender("Triton", theirs(TEACHER)), rounds),
            compete("(context) the int8 ONNX file, served by ONNX Runtime in both", 1.0,
                    Contender("slimserve", ours(INT8_ONNX)), Contender("Triton", theirs(INT8_ONNX)), rounds),
            compete("int8 student at concurrency 1: slimserve's p50 ≤ the naive FastAPI handler's", 1.0,
                    Contender("slimserve", ours(INT8, concurrency=1)),
                    Contender("naive FastAPI", http(naive_http, INT8, one_json, 1, seconds, LOAD_CPU)), rounds,
                    latency=True),
            compete("int8 served ≥ 2× the teacher served, 1 digit per request (JSON), 64 connections", 2.0,
                    Contender("int8", ours(INT8)), Contender("teacher", ours(TEACHER)), rounds),
            compete("int8 served ≥ 3× the teacher served, 32 digits per request (binary), 64 connections, rows/s",
                    3.0, Contender("int8", ours(INT8, many_binary), 32),
                    Contender("teacher", ours(TEACHER, many_binary), 32), rounds),
            compete("ModelStreamInfer ≥ 1.5× HTTP JSON, 1 digit per request, 64 in flight", 1.5, stream, json_int8,
                    rounds),
            compete("unary gRPC ≥ 1.0× HTTP JSON, 1 digit per request, 64 in flight", 1.0, unary, json_int8, rounds),
        ]  # fmt: skip
        budgets: dict[str, budget.Budget] = {}
        if earlier is not None:
            before_http, _, before_pid = earlier
            before_json = Contender("", http(before_http, INT8, one_json, C, seconds, LOAD_CPU))
            budgets[f"HTTP JSON, before ({before})"] = sampled(before_pid, before_json, seconds)
        budgets["HTTP JSON"] = sampled(ours_pid, json_int8, seconds)
        budgets["HTTP binary"] = sampled(ours_pid, Contender("", ours(INT8, one_binary)), seconds)
        budgets["gRPC unary"] = sampled(ours_pid, unary, seconds)
        budgets["gRPC stream"] = sampled(ours_pid, stream, seconds)
        ceilings = bare_transports(digit, seconds, rounds)
    return Pinned(outcomes, budgets, ceilings, before)


def markdown(pinned: Pinned, rounds: int, seconds: float) -> list[str]:
    before = (
        f" The first column is the service at `{pinned.before}` (the revision before this work), checked out "
        "beside it and measured in the same run."
        if pinned.before
        else ""
    )
    return [
        "## One core each: slimserve, Triton and a naive handler",
        "",
        f"Each server pinned to CPU {SERVER_CPU} (`taskset`), the load generator (wrk, h2load) to CPU {LOAD_CPU}; "
        f"all servers up at once, one under load at a time; each line alternates A and B for {rounds} rounds "
        f"of {seconds:g} s and compares medians. Triton: 2.51 (nvidia-pytriton wheel), python backend, dynamic "
        f"batching {TRITON_QUEUE_DELAY_US} µs, one CPU instance, the same TorchScript files through torch in "
        "its stub (no libtorch backend in the wheel) and the same ONNX file through ONNX Runtime. slimserve: "
        "`python -m service` with its defaults (greedy batching up to 32 rows, 2 inference threads). The naive "
        "handler: `benchmarks/naive.py`, one FastAPI route calling the same runner on the event loop, no batching.",
        "",
        *outcome_table(pinned.outcomes),
        "",
        "### Where one request's time goes (int8 student, one digit, 64 in flight, one core)",
        "",
        "From py-spy samples of the pinned service under each load (`benchmarks/budget.py`): a row's share of "
        "the samples times the core time per request. A sample is charged to the innermost frame that belongs "
        "to a row; a thread waiting for the GIL is charged to the line where it waits." + before,
        "",
        *budget.markdown_rows(pinned.budgets),
        "",
        "### The transports alone on the same core",
        "",
        "`python -m benchmarks.ceilings` pinned like the servers above: the same libraries answering a canned "
        f"reply with no model, DataPlane or metrics behind them, one digit per call; {rounds} rounds of "
        f"{seconds:g} s, all other servers of this section up.",
        "",
        "| transport; load | calls/s per round | median | core time per call |",
        "|---|---|---:|---:|",
        *(
            f"| {name} | {', '.join(f'{v:,.0f}' for v in calls)} | {statistics.median(calls):,.0f} | "
            f"{1e6 / statistics.median(calls):.0f} µs |"
            for name, calls in pinned.ceilings.items()
        ),
        "",
        *reading(pinned),
    ]


def reading(pinned: Pinned) -> list[str]:
    """What the transports' own cost leaves for the rest of a request, from this section's figures."""
    int8_vs_triton, stream_vs_json, unary_vs_json = pinned.outcomes[0], pinned.outcomes[6], pinned.outcomes[7]

    def per_call_us(rounds: list[float]) -> float:
        return 1e6 / statistics.median(rounds)

    triton_us, ours_us = per_call_us(int8_vs_triton.b_rounds), per_call_us(int8_vs_triton.a_rounds)
    bare_http_us = per_call_us(pinned.ceilings[BARE_HTTP])
    http_json = pinned.budgets["HTTP JSON"]
    model_us = http_json.microseconds("model")
    http_work_us = 1e6 / http_json.requests_per_s - http_json.microseconds(budget.TRANSPORT[0])
    served_json = statistics.median(unary_vs_json.b_rounds)
    unary_ratio = statistics.median(pinned.ceilings[BARE_UNARY]) / served_json
    grpcio_unary_ratio = statistics.median(pinned.ceilings[GRPCIO_UNARY]) / served_json
    stream_allowed_us = 1e6 / (stream_vs_json.threshold * statistics.median(stream_vs_json.b_rounds))
    stream_left_us = stream_allowed_us - per_call_us(pinned.ceilings[BARE_STREAM])
    grpcio_left_us = stream_allowed_us - per_call_us(pinned.ceilings[GRPCIO_STREAM])
    return [
        "Reading the targets against these ceilings:",
        "",
        f"- int8 vs Triton: Triton answers a request in {triton_us:.0f} µs of this core. The bare HTTP transport "
        f"alone takes {bare_http_us:.0f} µs and the batched model {model_us:.0f} µs (budget above), which leaves "
        f"{triton_us - bare_http_us - model_us:.0f} µs for everything else a request costs in slimserve "
        f"(validation, routing, batching, the thread hand-off, metrics) to tie; it spends "
        f"{ours_us - bare_http_us - model_us:.0f} µs.",
        f"- unary gRPC vs HTTP JSON: with nothing behind it, the service's HTTP/2 transport answers "
        f"{unary_ratio:.2f}× the calls slimserve serves over HTTP JSON with the model; grpc.aio "
        f"{grpcio_unary_ratio:.2f}×"
        + (
            ", so no service built on grpc.aio reaches the target on one core."
            if grpcio_unary_ratio < 1.0
            else "."
        ),
        f"- ModelStreamInfer vs HTTP JSON: {stream_vs_json.threshold:g}× allows {stream_allowed_us:.0f} µs per "
        f"message; the bare stream alone takes {stream_allowed_us - stream_left_us:.0f} µs on the service's "
        f"transport (grpc.aio: {stream_allowed_us - grpcio_left_us:.0f} µs), leaving {stream_left_us:.0f} µs "
        f"(grpc.aio: {grpcio_left_us:.0f} µs) for the model and all of the service's own work (over HTTP JSON, "
        f"everything but the transport costs {http_work_us:.0f} µs per request in the budget above).",
    ]
