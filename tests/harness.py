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
import uvloop
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from contract.layout import ModelVersion
from service.api.http.app import create_app
from service.assembly import serving_stack
from service.backends.base import Backend
from service.config import Settings
from service.server import uvicorn_config
from service.sockets import bind

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
    http_state: uvicorn.server.ServerState | None = None  # uvicorn's connections, for white-box checks

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


class ServiceThread(threading.Thread):
    """The service as ``python -m service`` assembles it, on its own event loop in a background thread."""

    def __init__(
        self,
        settings: Settings,
        sock: Any,
        metrics: CollectorRegistry,
        backend_wrapper: Callable[[Backend, ModelVersion], Backend] | None,
        customize_app: Callable[[FastAPI], None] | None,
    ) -> None:
        super().__init__(daemon=True)
        self._settings, self._sock, self._metrics = settings, sock, metrics
        self._backend_wrapper, self._customize_app = backend_wrapper, customize_app
        self.started = threading.Event()
        self.grpc_port = 0
        self.error: BaseException | None = None
        self.http: uvicorn.Server | None = None

    def run(self) -> None:
        try:
            uvloop.run(self._serve())
        except BaseException as error:  # reported to the test by run_service
            self.error = error
        finally:
            self.started.set()

    async def _serve(self) -> None:
        stack = serving_stack(
            self._settings, backend_wrapper=self._backend_wrapper, metrics_registry=self._metrics
        )
        async with stack as context:
            app = create_app(context)
            if self._customize_app:
                self._customize_app(app)
            self.http = uvicorn.Server(uvicorn_config(app, self._settings, log_level="warning"))
            self.grpc_port = context.grpc_port or 0
            self.started.set()
            await self.http.serve(sockets=[self._sock])

    def stop(self) -> None:
        if self.http is not None:
            self.http.should_exit = True
        self.join(timeout=30)


@contextlib.contextmanager
def run_service(
    settings: Settings,
    *,
    backend_wrapper: Callable[[Backend, ModelVersion], Backend] | None = None,
    customize_app: Callable[[FastAPI], None] | None = None,
    wait_ready: bool = True,
    timeout_s: float = 120,
) -> Iterator[RunningService]:
    """``customize_app`` changes the app before it serves (a test adds a middleware with it)."""
    sock = bind("127.0.0.1", 0)
    host, port = sock.getsockname()[:2]
    metrics = CollectorRegistry()
    thread = ServiceThread(settings, sock, metrics, backend_wrapper, customize_app)
    thread.start()
    try:
        thread.started.wait(timeout_s)
        if thread.error is not None:
            raise RuntimeError("the service did not start") from thread.error
        http_state = thread.http.server_state if thread.http is not None else None
        service = RunningService(f"http://{host}:{port}", host, port, metrics, thread.grpc_port, http_state)
        _wait(service, ready=wait_ready, timeout_s=timeout_s)
        yield service
    finally:
        thread.stop()
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
