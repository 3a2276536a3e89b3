"""A real Triton Inference Server on this machine, for the tests and the serving benchmark.

The tritonserver 2.51 inside the nvidia-pytriton wheel runs from its own virtualenv (``.triton-venv``, made by
``scripts/triton-venv.sh``: it pins numpy<2). It has only the python backend, so variants are exported with
``python_backend=True``: the same TorchScript, served by a python-backend ``model.py``. The server binds
loopback only, on the ports it is given; metrics are off. Model control is ``none`` (everything in the
repository, fixed) or ``explicit`` (everything loaded at start, then loaded and unloaded by API calls, as the
gpu-triton overlay runs it). It is stopped by PID (its stubs with it: they share its process group).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

ROOT = Path(__file__).resolve().parents[1]
VENV_SCRIPT = ROOT / "scripts" / "triton-venv.sh"
TRITON_VENV = ROOT / ".triton-venv"
READY_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 15.0


class TritonUnavailable(RuntimeError):
    """The Triton virtualenv could not be made."""


@dataclass(frozen=True)
class TritonInstall:
    """What ``scripts/triton-venv.sh`` prints: the binary, its backends and the environment it needs."""

    tritonserver: Path
    backend_dir: Path
    cache_dir: Path
    ld_library_path: str
    path: str

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        # the python stub links libpython: the venv's own, not Debian's older one
        env["LD_LIBRARY_PATH"] = ":".join(p for p in (self.ld_library_path, env.get("LD_LIBRARY_PATH")) if p)
        # the stub finds onnxruntime (and numpy<2) through the first python3 on PATH
        env["PATH"] = f"{self.path}:{env.get('PATH', '')}"
        env["OMP_NUM_THREADS"] = "1"
        return env


def triton_install(
    venv: Path = TRITON_VENV, python: str | None = None, extra: str | None = None
) -> TritonInstall:
    """Create (idempotently) and describe the Triton venv; fail loudly if that is impossible.

    ``python`` is the interpreter a new venv is made with (the script's default: python3.11 or python3);
    ``extra`` are more requirements for it (the serving benchmark's venv adds torch).
    """
    env = dict(os.environ)
    if python is not None:
        env["PYTHON"] = python
    if extra is not None:
        env["TRITON_VENV_EXTRA"] = extra
    result = subprocess.run(
        ["sh", str(VENV_SCRIPT), str(venv)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    if result.returncode != 0:
        raise TritonUnavailable(
            f"{VENV_SCRIPT.name} failed (exit {result.returncode}); a local Triton needs it:\n"
            f"{result.stderr[-4000:]}"
        )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return TritonInstall(
        tritonserver=Path(values["TRITONSERVER"]),
        backend_dir=Path(values["TRITON_BACKEND_DIR"]),
        cache_dir=Path(values["TRITON_CACHE_DIR"]),
        ld_library_path=values["TRITON_LD_LIBRARY_PATH"],
        path=values["TRITON_PATH"],
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TritonServer:
    install: TritonInstall
    repository: Path
    models: list[str]
    http_port: int
    grpc_port: int
    log_path: Path
    model_control: Literal["none", "explicit"] = "none"
    shm_prefix: str = field(default_factory=lambda: f"slimserve-test-{os.getpid()}-{uuid.uuid4().hex[:8]}-")
    process: subprocess.Popen[bytes] | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("tritonserver is not running")
        return self.process.pid

    def command(self) -> list[str]:
        return [
            str(self.install.tritonserver),
            f"--model-repository={self.repository}",
            f"--model-control-mode={self.model_control}",
            *(["--load-model=*"] if self.model_control == "explicit" else []),
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--backend-directory={self.install.backend_dir}",
            f"--cache-directory={self.install.cache_dir}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--allow-sagemaker=false",
            "--allow-vertex-ai=false",
            "--pinned-memory-pool-byte-size=0",
            "--exit-timeout-secs=5",
        ]

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError(f"tritonserver already running (pid {self.process.pid})")
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {time.strftime('%H:%M:%S')}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(),
                env=self.install.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its python stubs share its process group: stopped with it
            )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                code = self.process.returncode
                self._reap()
                raise RuntimeError(f"tritonserver exited with {code} before ready:\n{self.log_tail()}")
            if self._ready():
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tritonserver not ready after {READY_TIMEOUT_S:.0f} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with contextlib.closing(httpclient.InferenceServerClient(self.http_url)) as http:
                if not http.is_server_ready():
                    return False
            with contextlib.closing(grpcclient.InferenceServerClient(self.grpc_url)) as grpc:
                return bool(grpc.is_server_ready())
        except Exception:  # refused, reset, not yet listening
            return False

    def kill(self) -> None:
        """SIGKILL the server (no graceful shutdown), as a crash would; its stubs are removed too."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._reap()

    def restart(self) -> None:
        """Start again on the same ports (after ``kill`` or while running: then stop first) and wait ready."""
        if self.process is not None:
            self.stop()
        self.start()

    def stop(self) -> None:
        """SIGTERM by PID, SIGKILL after ``STOP_TIMEOUT_S``."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reap()

    def _reap(self) -> None:
        """After the server is gone: its stubs (same process group) and its shared-memory regions."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None
        shm = Path("/dev/shm")
        if shm.is_dir():
            for region in shm.glob(f"{self.shm_prefix}*"):
                region.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
