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


@contextlib.contextmanager
def service(registry: Path, batching: bool, extra: list[str] | None = None) -> Iterator[tuple[int, int, int]]:
    """``python -m service`` on free ports until the block ends: (HTTP port, gRPC port, PID) once ready."""
    http_port, grpc_port = free_port(), free_port()
    command = [
        sys.executable, "-m", "service", "--registry.path", str(registry),
        "--server.http_port", str(http_port), "--server.grpc_port", str(grpc_port),
        "--server.log_level", "warning", "--batching.enabled" if batching else "--no-batching.enabled",
        *(extra or []),
    ]  # fmt: skip
    process = subprocess.Popen(command)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready").status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise TimeoutError("the service did not become ready")
        yield http_port, grpc_port, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def served_ok(http_port: int, variant: str, protocol: str) -> int:
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
    pattern = rf'^slimserve_requests_total\{{(?=[^}}]*variant="{variant}")(?=[^}}]*protocol="{protocol}")(?=[^}}]*status="ok")[^}}]*\}} (\S+)$'
    return int(sum(float(value) for value in re.findall(pattern, text, re.MULTILINE)))
