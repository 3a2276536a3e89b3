"""Start the real service on an ephemeral loopback port for a test, and stop it afterwards."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from prometheus_client import CollectorRegistry

from contract.layout import ModelVersion
from service.api.http.app import create_app
from service.backends.base import Backend
from service.config import Settings
from service.server import bind, uvicorn_config

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def make_settings(registry_path: Path, /, **sections: dict[str, Any]) -> Settings:
    """Settings for a test: defaults plus the given sections, never the developer's environment or .env."""
    values: dict[str, Any] = {**sections}
    values["registry"] = {"path": registry_path, **sections.get("registry", {})}
    values["server"] = {"grpc_port": 0, **sections.get("server", {})}  # ephemeral, like the HTTP port
    values["admin"] = {"token": ADMIN_TOKEN, **sections.get("admin", {})}
    return Settings(_env_file=None, **values)


@dataclass
class RunningService:
    url: str
    host: str
    port: int
    metrics: CollectorRegistry
    grpc_port: int = 0

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def wait_loaded(self, timeout_s: float = 120) -> None:
        """Until no variant is LOADING any more (for a test where the server is not meant to become ready)."""
        deadline = time.monotonic() + timeout_s
        with self.client() as client:
            while time.monotonic() < deadline:
                answer = client.get("/v2/health/ready")
                if answer.status_code == 200 or "still loading" not in answer.json()["error"]:
                    return
                time.sleep(0.05)
        raise TimeoutError(f"variants of {self.url} still loading after {timeout_s} s")


@contextlib.contextmanager
def run_service(
    settings: Settings,
    *,
    backend_wrapper: Callable[[Backend, ModelVersion], Backend] | None = None,
    wait_ready: bool = True,
    timeout_s: float = 120,
) -> Iterator[RunningService]:
    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    metrics = CollectorRegistry()
    app = create_app(settings, backend_wrapper=backend_wrapper, metrics_registry=metrics)
    server = uvicorn.Server(uvicorn_config(app, settings, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    service = RunningService(f"http://{host}:{port}", host, port, metrics)
    try:
        _wait(service, ready=wait_ready, timeout_s=timeout_s)
        service.grpc_port = app.state.slimserve.grpc_port or 0
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _wait(service: RunningService, *, ready: bool, timeout_s: float) -> None:
    path = "/v2/health/ready" if ready else "/v2/health/live"
    deadline = time.monotonic() + timeout_s
    with service.client() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if client.get(path).status_code == 200:
                    return
            time.sleep(0.05)
    raise TimeoutError(f"service at {service.url} did not answer 200 on {path} within {timeout_s} s")
