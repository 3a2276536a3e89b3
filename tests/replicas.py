"""Service replicas as separate ``python -m service`` processes on loopback, as a fleet runs them.

Each writes its log to a file (a pipe nobody reads would fill and stall it); the HTTP address is read from
the "listening on" line, then readiness is awaited.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

LISTENING = re.compile(r"slimserve listening on (http://127\.0\.0\.1:\d+)")


class Replica:
    def __init__(self, flags: list[str], log: Path) -> None:
        self._flags = flags
        self.log = log
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    def start(self, timeout_s: float = 180) -> None:
        self.spawn()
        self.wait_ready(timeout_s)

    def spawn(self) -> None:
        command = [sys.executable, "-m", "service", "--server.host", "127.0.0.1", "--server.http_port", "0",
                   "--server.grpc_port", "0", "--server.drain_delay_s", "0", *self._flags]  # fmt: skip
        self._log_from = self.log.stat().st_size if self.log.exists() else 0  # this run's lines only
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=log)

    def _this_run(self) -> str:
        return self.log.read_bytes()[self._log_from :].decode(errors="replace")

    def wait_ready(self, timeout_s: float = 180) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (match := LISTENING.search(self._this_run())):
            assert self._process.poll() is None, f"replica exited:\n{self.log.read_text()}"
            time.sleep(0.1)
        assert match, f"replica did not start listening:\n{self.log.read_text()}"
        self.url = match.group(1)
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/v2/health/ready").status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"replica {self.url} not ready within {timeout_s} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod: the service drains and writes out what it still holds."""
        if self._process is not None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
            self._process = None
            self.log.write_text(self.log.read_text() + "\n--- stopped ---\n")

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=30)
            self._process = None


def start_all(replicas: list[Replica]) -> None:
    """Start replicas side by side, as a rollout does, and wait until every one is ready."""
    for replica in replicas:
        replica.spawn()
    for replica in replicas:
        replica.wait_ready()


@contextlib.contextmanager
def running_replicas(count: int, flags: list[str], folder: Path) -> Iterator[list[Replica]]:
    replicas = [Replica(flags, folder / f"replica-{index}.log") for index in range(count)]
    try:
        start_all(replicas)
        yield replicas
    finally:
        for replica in replicas:
            replica.kill()
