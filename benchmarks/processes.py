"""The service as a separate process on free loopback ports, for benchmarks, and its own request counter."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ok(url: str, timeout_s: float, what: str) -> None:
    """Poll ``url`` until it answers 200; TimeoutError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not become ready")


@contextlib.contextmanager
def service(
    registry: Path,
    batching: bool,
    extra: list[str] | None = None,
    cpu: int | None = None,
    cwd: Path | None = None,
) -> Iterator[tuple[int, int, int]]:
    """``python -m service`` on free ports until the block ends: (HTTP port, gRPC port, PID) once ready.

    ``cpu`` pins it to one CPU; ``cwd`` runs the service found there (a worktree of another revision).
    """
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "service", "--registry.path", str(registry),
        "--server.http_port", str(http_port), "--server.grpc_port", str(grpc_port),
        "--server.log_level", "warning", "--batching.enabled" if batching else "--no-batching.enabled",
        *(extra or []),
    ]  # fmt: skip
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]  # taskset execs: the PID stays the service's
    process = subprocess.Popen(command, cwd=cwd)
    try:
        wait_until_ok(f"http://127.0.0.1:{http_port}/v2/health/ready", 180, "the service")
        yield http_port, grpc_port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextlib.contextmanager
def bare_server(kind: str, cpu: int | None = None) -> Iterator[int]:
    """``python -m benchmarks.ceilings KIND`` (``http``, ``grpc`` or ``grpcio``) on a free port until the block ends."""
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.ceilings", kind, str(port)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(f"the bare {kind} server did not listen on port {port}")
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def served_ok(http_port: int, variant: str, protocol: str) -> int:
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    pattern = rf'^slimserve_requests_total\{{(?=[^}}]*variant="{variant}")(?=[^}}]*protocol="{protocol}")(?=[^}}]*status="ok")[^}}]*\}} (\S+)$'
    return int(sum(float(value) for value in re.findall(pattern, text, re.MULTILINE)))
